// The routed experts of a prefill slice (many (token, expert) pairs) on quantized experts (klc_wq:
// INT4, INT8, E4M3) in tensor-core mode: one launch per projection for every expert, each reading the
// codes straight from the checkpoint layout. bf16 experts can take the same kernels without the
// dequantization (KLC_MOE_BF16_GEMM=1, instead of cuBLAS per run of equal row counts after a host
// wait for the group sizes); not yet the default. The way before this (still taken when KLC_MOE_WQ_GEMM=0
// or the shapes do not fit these tiles) dequantized every expert of the layer into a bf16 buffer, 32
// at a time, and ran cuBLAS on it: per 4,096-token slice of the 48B model at INT8 that moved ~9 GB
// per layer (codes read, bf16 written, bf16 read again) and waited on the host for the group sizes.
//
// The rows are those klc_moe_experts gathers: grouped by expert in whole tiles of 64 (padded rows
// hold whatever was there and are never combined). A CTA computes a 64-row tile of one expert
// against BN = 128 weight rows (or 256, KLC_MOE_WQ_TILE=256):
//   up:   BN / 2 gate rows n0 .. and the matching up rows I + n0 .., so that SwiGLU runs on the
//         accumulators and h leaves as bf16 (the old path's fp32 gate/up rows never exist);
//   down: BN output columns, fp32 rows for the combine.
// Per 64-wide step of K, X comes by cp.async and the codes by plain loads issued a step ahead; each
// thread turns its 16 bytes of codes into bf16((q − z) · s) (the values klc_wq_dequant writes) in
// shared memory, and 8 warps (2 along the rows, 4 along the weights) run m16n8k16 MMAs with fp32
// accumulation. Two buffers of X and weights: 48 KiB of shared memory at BN 128, 80 KiB at 256.
#include <cuda_bf16.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>

#include "internal.h"
#include "mma_bf16.cuh"
#include "moe_tiles.cuh"
#include "small_vec.cuh"
#include "wq.cuh"

namespace {

using namespace klc_mma;
using namespace klc_moe_tiles;

constexpr int THREADS = 256; // 8 warps: 2 along the rows, 4 along the weights
// The weight rows of a CTA: 4 warps along them, NT n8 tiles each.
template <int NT>
constexpr int block_n = 4 * NT * 8;
// Shared memory of a CTA: two steps of X and of the dequantized weights.
template <int NT>
constexpr size_t smem_bytes = 2 * (size_t)(BM + block_n<NT>) * BK * 2;

// NT n8 tiles of weight rows per warp: 4 (128 rows a CTA, 48 KiB, 2 CTAs an SM) or 8 (256 rows, 80 KiB: each
// X fragment and X tile serves twice the weights, one CTA an SM).
// RAW: bf16 experts (a.wb), copied to shared memory by cp.async beside X; C is then not used.
template <Codes C, bool UP, int NT, bool RAW = false>
__global__ void __launch_bounds__(THREADS, NT == 4 ? 2 : 1) moe_wq_gemm_kernel(const Args a) {
  constexpr int BN = block_n<NT>;
  extern __shared__ __align__(128) uint4 smem[];
  auto xs = [&](int buf) { return smem + buf * (BM * 8); };
  auto ws = [&](int buf) { return smem + 2 * BM * 8 + buf * (BN * 8); };

  const int t = blockIdx.y;
  if (t >= __ldg(a.tiles + a.E)) return;
  const int e = expert_of_tile(a.tiles, a.E, t);
  const size_t r0 = (size_t)t * BM;
  const int n0 = blockIdx.x * (UP ? BN / 2 : BN);
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, wm = warp & 1, wn = warp >> 1;
  const int K = a.K;
  // Weight row lr of the CTA's tile in the stacked matrix.
  auto global_row = [&](int lr) -> size_t {
    return UP ? (size_t)e * 2 * a.I + (lr < BN / 2 ? n0 + lr : a.I + n0 + lr - BN / 2) : (size_t)e * a.d + n0 + lr;
  };
  // Quantized weights: a step's codes are loaded a step ahead into registers and dequantized into shared
  // memory after the step before is multiplied (bf16 weights come with X instead).
  WeightChunks<C, BN, THREADS> chunks(tid, global_row);
  auto fetch = [&](int kt) {
    if constexpr (!RAW) chunks.fetch(a.w, K, kt);
  };
  auto put = [&](int buf) {
    if constexpr (!RAW) chunks.put(ws(buf));
  };
  auto copy_x = [&](int kt, int buf) {
#pragma unroll
    for (int j = 0; j < BM * 8 / THREADS; ++j) {
      const int c = tid + j * THREADS, row = c >> 3, ch = c & 7;
      cp_async16(&xs(buf)[swz(row, ch)], a.x + (r0 + row) * K + kt * BK + ch * 8);
    }
    if constexpr (RAW) {
#pragma unroll
      for (int j = 0; j < BN * 8 / THREADS; ++j) {
        const int c = tid + j * THREADS, row = c >> 3, ch = c & 7;
        cp_async16(&ws(buf)[swz(row, ch)], a.wb + global_row(row) * K + kt * BK + ch * 8);
      }
    }
    cp_commit();
  };

  float acc[2][NT][4] = {};
  const int KT = K / BK;
  copy_x(0, 0);
  fetch(0);
  put(0);
  for (int kt = 0; kt < KT; ++kt) {
    const int buf = kt & 1;
    if (kt + 1 < KT) {
      copy_x(kt + 1, buf ^ 1);
      fetch(kt + 1);
      cp_wait<1>();
    } else {
      cp_wait<0>();
    }
    __syncthreads();
#pragma unroll
    for (int kk = 0; kk < BK / 16; ++kk) {
      unsigned af[2][4];
#pragma unroll
      for (int mi = 0; mi < 2; ++mi) {
        const int row = wm * 32 + mi * 16 + (lane & 15);
        ldsm_x4(af[mi][0], af[mi][1], af[mi][2], af[mi][3], &xs(buf)[swz(row, 2 * kk + (lane >> 4))]);
      }
#pragma unroll
      for (int jp = 0; jp < NT / 2; ++jp) {
        // Up: the warp's first NT / 2 n8 tiles are gate columns, the others the up columns of the same outputs.
        constexpr int HALF = NT / 2;
        const int base = UP ? (2 * jp < HALF ? wn * HALF * 8 + 2 * jp * 8 : BN / 2 + wn * HALF * 8 + (2 * jp - HALF) * 8) : wn * NT * 8 + 2 * jp * 8;
        const int row = base + (lane & 7) + ((lane >> 4) << 3);
        unsigned b0, b1, b2, b3;
        ldsm_x4(b0, b1, b2, b3, &ws(buf)[swz(row, 2 * kk + ((lane >> 3) & 1))]);
#pragma unroll
        for (int mi = 0; mi < 2; ++mi) {
          mma_bf16(acc[mi][2 * jp], af[mi], b0, b1);
          mma_bf16(acc[mi][2 * jp + 1], af[mi], b2, b3);
        }
      }
    }
    if (kt + 1 < KT) put(buf ^ 1);
    __syncthreads();
  }

#pragma unroll
  for (int mi = 0; mi < 2; ++mi) {
#pragma unroll
    for (int half = 0; half < 2; ++half) {
      const size_t row = r0 + wm * 32 + mi * 16 + (lane >> 2) + half * 8;
      if constexpr (UP) {
#pragma unroll
        for (int j = 0; j < NT / 2; ++j) {
          const int col = n0 + wn * (NT / 2) * 8 + j * 8 + 2 * (lane & 3);
          float h[2];
#pragma unroll
          for (int i = 0; i < 2; ++i) {
            const float g = acc[mi][j][2 * half + i], u = acc[mi][j + NT / 2][2 * half + i];
            h[i] = g / (1.f + expf(-g)) * u;
          }
          *reinterpret_cast<unsigned *>(static_cast<bf16 *>(a.out) + row * a.I + col) = pack_bf16(h[0], h[1]);
        }
      } else {
#pragma unroll
        for (int j = 0; j < NT; ++j) {
          const int col = n0 + wn * NT * 8 + j * 8 + 2 * (lane & 3);
          *reinterpret_cast<float2 *>(static_cast<float *>(a.out) + row * a.d + col) = make_float2(acc[mi][j][2 * half], acc[mi][j][2 * half + 1]);
        }
      }
    }
  }
}

template <Codes C, bool UP, int NT, bool RAW = false>
cudaError_t launch_kernel(klc_ctx *ctx, const Args &a, int max_tiles) {
  constexpr int BN = block_n<NT>;
  auto *kernel = moe_wq_gemm_kernel<C, UP, NT, RAW>;
  if (smem_bytes<NT> > 48 * 1024) {
    // Past 48 KiB a kernel must opt in; once per process is enough, so a repeat costs one attribute call.
    const cudaError_t e = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem_bytes<NT>);
    if (e != cudaSuccess) return e;
  }
  kernel<<<dim3(UP ? a.I / (BN / 2) : a.d / BN, max_tiles), THREADS, smem_bytes<NT>, ctx->stream>>>(a);
  return cudaGetLastError();
}

template <bool UP, int NT>
int launch(klc_ctx *ctx, const Args &a, int max_tiles) {
  cudaError_t err = cudaSuccess;
  if (a.wb) {
    err = launch_kernel<Codes::Int8, UP, NT, true>(ctx, a, max_tiles);
    return err == cudaSuccess ? KLC_OK : klc::fail_cuda(err, UP ? "the MoE gate/up projections (grouped)" : "the MoE down projections (grouped)");
  }
  switch (codes_of(a.w)) {
    case Codes::Int4: err = launch_kernel<Codes::Int4, UP, NT>(ctx, a, max_tiles); break;
    case Codes::Int8: err = launch_kernel<Codes::Int8, UP, NT>(ctx, a, max_tiles); break;
    case Codes::E4M3: err = launch_kernel<Codes::E4M3, UP, NT>(ctx, a, max_tiles); break;
  }
  return err == cudaSuccess ? KLC_OK : klc::fail_cuda(err, UP ? "the quantized MoE gate/up projections (grouped)" : "the quantized MoE down projections (grouped)");
}

// KLC_MOE_WQ_TILE=256 takes the 256-row weight tiles where the shapes allow; 128-row ones otherwise.
int weight_tile() {
  const char *v = getenv("KLC_MOE_WQ_TILE");
  return v && atoi(v) == 256 ? 256 : 128;
}

// A chunk of codes lies in one group and one step, and every row starts on a 16-byte boundary.
bool fits(const klc_wq &w, int K) {
  const int codes = 128 / w.bits;
  return klc::wq_codes_ok(w) && w.K == K && K % BK == 0 && w.group % codes == 0 && K % w.group == 0 &&
         klc_small::aligned16(w.w_packed);
}

}  // namespace

namespace klc {

bool moe_wq_gemm_wanted(const klc_wq &w13, const klc_wq &w2, int d, int I) {
  const char *v = getenv("KLC_MOE_WQ_GEMM");
  if (v && v[0] == '0') return false;
  return I % (block_n<4> / 2) == 0 && d % block_n<4> == 0 && fits(w13, d) && fits(w2, I);
}

bool moe_bf16_gemm_wanted(const void *w13, const void *w2, int d, int I) {
  const char *v = getenv("KLC_MOE_BF16_GEMM");
  return v && v[0] == '1' && I % (block_n<4> / 2) == 0 && I % BK == 0 && d % block_n<4> == 0 && d % BK == 0 && klc_small::aligned16(w13) &&
         klc_small::aligned16(w2);
}

int moe_wq_gemm(klc_ctx *ctx, const MoeTc &m) {
  const int n = m.T * m.k, max_tiles = (n + BM - 1) / BM + std::min(m.E, n);
  if (max_tiles > 65535) return fail(KLC_E_ARG, "the MoE: too many tokens in one call; pass fewer rows");
  if (m.tile != BM) return fail(KLC_E_ARG, "the grouped MoE kernels take row tiles of 64 (klc_moe_experts' tiles changed)");
  // Quantized experts (m.groups' klc_wq) or bf16 ones (m.w13, m.w2).
  const bool codes = m.groups.w13 != nullptr;
  const klc_wq none{};
  const Args up{static_cast<const bf16 *>(m.xs), m.tiles, codes ? *m.groups.w13 : none, codes ? nullptr : static_cast<const bf16 *>(m.w13), m.hs, m.d,
                m.E, m.I, m.d};
  const Args down{static_cast<const bf16 *>(m.hs), m.tiles, codes ? *m.groups.w2 : none, codes ? nullptr : static_cast<const bf16 *>(m.w2), m.ys, m.I,
                  m.E, m.I, m.d};
  if (moe_wgmma_ready(ctx, m.d, m.I)) return moe_wgmma(ctx, up, down, max_tiles);
  const bool wide = weight_tile() == 256;
  int rc = wide && m.I % (block_n<8> / 2) == 0 ? launch<true, 8>(ctx, up, max_tiles) : launch<true, 4>(ctx, up, max_tiles);
  if (rc) return rc;
  return wide && m.d % block_n<8> == 0 ? launch<false, 8>(ctx, down, max_tiles) : launch<false, 4>(ctx, down, max_tiles);
}

}  // namespace klc
