// The grouped MoE projections of moe_wq_gemm.cu on Hopper's warpgroup MMA (wgmma, sm_90a): the same rows,
// tiles and fused SwiGLU, for quantized experts (codes dequantized into shared memory) and bf16 ones
// (copied there). Why: the mma.sync kernel's warps each read their B fragments from shared memory
// for 32 rows only, so shared-memory bandwidth held it near an eighth of the tensor peak; a wgmma
// reads the weight tile once for the warpgroup's 64 rows, straight from shared memory, and runs
// while the threads dequantize the next step.
//
// A CTA is two warpgroups on one 64-row tile of an expert's rows against 256 weight rows, 128 per
// warpgroup (m64n128k16, both operands K-major in the 128-byte swizzle):
//   up:   each warpgroup's 128 rows are 64 gate rows and the matching 64 up rows, so that a thread
//         holds the gate and up sums of the same outputs and SwiGLU runs on its accumulators;
//   down: 256 output columns, fp32 rows for the combine.
// Per 64-wide step of K: X by cp.async, three stages (issued two steps ahead); quantized weights
// fetched into registers two steps ahead (two sets, alternating) and dequantized into the other of
// two weight stages while the step's products run; bf16 weights by cp.async with X, three stages.
// One CTA an SM: the registers the deeper prefetch takes are worth more than a second CTA.
//
// Built only for sm_90a (tools/build-native.mjs passes KLC_MOE_WGMMA=1 with that target); other builds
// get moe_wgmma_ready() == false.
#include <cuda_bf16.h>

#include <cstdint>
#include <cstdlib>

#include "internal.h"
#include "moe_tiles.cuh"

#if KLC_MOE_WGMMA
#if defined(__CUDA_ARCH__) && !defined(__CUDA_ARCH_FEAT_SM90_ALL)
#error "moe_wgmma.cu with KLC_MOE_WGMMA=1 must be compiled for sm_90a only (-gencode arch=compute_90a,code=sm_90a)"
#endif
#include "wgmma.cuh"

namespace {

using namespace klc_moe_tiles;
using namespace klc_wgmma;
using klc_mma::cp_async16;
using klc_mma::cp_commit;
using klc_mma::cp_wait;
using klc_mma::smem_addr;

constexpr int THREADS = 256;  // two warpgroups
constexpr int BN = 256;       // weight rows of a CTA, 128 per warpgroup
constexpr int X_STAGES = 3;
constexpr int X_BYTES = BM * BK * 2, W_BYTES = BN * BK * 2;
template <bool RAW>
constexpr int W_STAGES = RAW ? 3 : 2;
template <bool RAW>
constexpr int SMEM = X_STAGES * X_BYTES + W_STAGES<RAW> * W_BYTES + 1024;  // + room to align to 1024 bytes
static_assert(X_BYTES % 1024 == 0 && W_BYTES % 1024 == 0, "stages must keep 1024-byte swizzle atoms aligned");

template <Codes C, bool UP, bool RAW>
__global__ void __launch_bounds__(THREADS, 1) moe_wgmma_kernel(const Args a) {
  extern __shared__ unsigned char smem_raw[];
  const int t = blockIdx.y;
  if (t >= __ldg(a.tiles + a.E)) return;
  const int e = expert_of_tile(a.tiles, a.E, t);
  const unsigned raw = smem_addr(smem_raw), base = (raw + 1023) & ~1023u;
  uint4 *const smem = reinterpret_cast<uint4 *>(smem_raw + (base - raw));
  auto xs = [&](int s) { return smem + s * (X_BYTES / 16); };
  auto ws = [&](int s) { return smem + (X_STAGES * X_BYTES + s * W_BYTES) / 16; };
  auto x_addr = [&](int s) { return base + s * X_BYTES; };
  auto w_addr = [&](int s) { return base + X_STAGES * X_BYTES + s * W_BYTES; };

  const size_t r0 = (size_t)t * BM;
  const int n0 = blockIdx.x * (UP ? BN / 2 : BN);
  const int tid = threadIdx.x, wg = tid >> 7, K = a.K, KT = K / BK;
  // Weight row lr of the CTA's tile in the stacked matrix. Up: warpgroup g's rows are gate rows
  // n0 + 64g .. + 63, then the up rows of the same outputs.
  auto global_row = [&](int lr) -> size_t {
    if (!UP) return (size_t)e * a.d + n0 + lr;
    const int g = lr >> 7, j = lr & 127;
    return (size_t)e * 2 * a.I + (j < 64 ? 0 : a.I) + n0 + 64 * g + (j & 63);
  };
  // Codes of steps of one parity each: set (kt + 1) & 1 is dequantized during step kt, then refilled.
  WeightChunks<C, BN, THREADS> even(tid, global_row), odd(tid, global_row);
  // Step kt's X (and bf16 weights) into their stages: one cp.async group per call, empty past the end,
  // so that every thread counts the same groups.
  auto copy = [&](int kt) {
    if (kt < KT) {
#pragma unroll
      for (int j = 0; j < BM * 8 / THREADS; ++j) {
        const int c = tid + j * THREADS, row = c >> 3, ch = c & 7;
        cp_async16(&xs(kt % X_STAGES)[swz(row, ch)], a.x + (r0 + row) * K + kt * BK + ch * 8);
      }
      if constexpr (RAW) {
#pragma unroll
        for (int j = 0; j < BN * 8 / THREADS; ++j) {
          const int c = tid + j * THREADS, row = c >> 3, ch = c & 7;
          cp_async16(&ws(kt % 3)[swz(row, ch)], a.wb + global_row(row) * K + kt * BK + ch * 8);
        }
      }
    }
    cp_commit();
  };

  float acc[64];
#pragma unroll
  for (int i = 0; i < 64; ++i) acc[i] = 0.f;
  copy(0);
  copy(1);
  if constexpr (!RAW) {
    even.fetch(a.w, K, 0);
    even.put(ws(0));
    if (KT > 1) odd.fetch(a.w, K, 1);
    if (KT > 2) even.fetch(a.w, K, 2);
  }
  // Step kt; `next` holds the codes of step kt + 1.
  auto step = [&](int kt, WeightChunks<C, BN, THREADS> &next) {
    // Step kt's X (and weights) have landed and are visible to the tensor cores; every warpgroup
    // is done with step kt - 1, whose stages the copies below and the next put overwrite.
    cp_wait<1>();
    fence_async_smem();
    __syncthreads();
    copy(kt + 2);
    const int sw = RAW ? kt % 3 : kt & 1;
    hold(acc);
    wg_fence();
#pragma unroll
    for (int kk = 0; kk < BK / 16; ++kk)
      wgmma_ss(acc, desc(x_addr(kt % X_STAGES) + kk * 32), desc(w_addr(sw) + wg * 128 * 128 + kk * 32));
    wg_commit();
    if constexpr (!RAW) {
      if (kt + 1 < KT) {
        next.put(ws((kt + 1) & 1));
        if (kt + 3 < KT) next.fetch(a.w, K, kt + 3);
      }
    }
    wg_wait<0>();
    hold(acc);
  };
  for (int kt = 0; kt < KT; kt += 2) {
    step(kt, odd);
    if (kt + 1 < KT) step(kt + 1, even);
  }

  // Accumulator element 4n + e of warp w (of its warpgroup): row 16w + lane / 4 + 8 (e >> 1), column
  // 8n + 2 (lane % 4) + (e & 1) of the warpgroup's 128.
  const int lane = tid & 31, w = (tid >> 5) & 3;
#pragma unroll
  for (int half = 0; half < 2; ++half) {
    const size_t row = r0 + 16 * w + (lane >> 2) + 8 * half;
    if constexpr (UP) {
#pragma unroll
      for (int n = 0; n < 8; ++n) {
        const int col = n0 + 64 * wg + 8 * n + 2 * (lane & 3);
        float h[2];
#pragma unroll
        for (int i = 0; i < 2; ++i) {
          const float g = acc[4 * n + 2 * half + i], u = acc[4 * (n + 8) + 2 * half + i];
          h[i] = g / (1.f + expf(-g)) * u;
        }
        *reinterpret_cast<unsigned *>(static_cast<bf16 *>(a.out) + row * a.I + col) = pack_bf16(h[0], h[1]);
      }
    } else {
#pragma unroll
      for (int n = 0; n < 16; ++n) {
        const int col = n0 + 128 * wg + 8 * n + 2 * (lane & 3);
        *reinterpret_cast<float2 *>(static_cast<float *>(a.out) + row * a.d + col) = make_float2(acc[4 * n + 2 * half], acc[4 * n + 2 * half + 1]);
      }
    }
  }
}

template <Codes C, bool UP, bool RAW>
cudaError_t launch_kernel(klc_ctx *ctx, const Args &a, int max_tiles) {
  auto *kernel = moe_wgmma_kernel<C, UP, RAW>;
  const cudaError_t e = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, SMEM<RAW>);
  if (e != cudaSuccess) return e;
  kernel<<<dim3(UP ? a.I / (BN / 2) : a.d / BN, max_tiles), THREADS, SMEM<RAW>, ctx->stream>>>(a);
  return cudaGetLastError();
}

template <bool UP>
int launch(klc_ctx *ctx, const Args &a, int max_tiles) {
  cudaError_t err = cudaSuccess;
  if (a.wb) {
    err = launch_kernel<Codes::Int8, UP, true>(ctx, a, max_tiles);
  } else {
    switch (codes_of(a.w)) {
      case Codes::Int4: err = launch_kernel<Codes::Int4, UP, false>(ctx, a, max_tiles); break;
      case Codes::Int8: err = launch_kernel<Codes::Int8, UP, false>(ctx, a, max_tiles); break;
      case Codes::E4M3: err = launch_kernel<Codes::E4M3, UP, false>(ctx, a, max_tiles); break;
    }
  }
  return err == cudaSuccess ? KLC_OK : klc::fail_cuda(err, UP ? "the MoE gate/up projections (Hopper grouped)" : "the MoE down projections (Hopper grouped)");
}

}  // namespace

namespace klc {

bool moe_wgmma_ready(klc_ctx *ctx, int d, int I) {
  // KLC_MOE_WGMMA=0 keeps Hopper on the mma.sync kernels (to compare, or to rule these out).
  const char *v = getenv("KLC_MOE_WGMMA");
  if ((v && v[0] == '0') || I % (BN / 2) || d % BN) return false;
  int major = 0, minor = 0;
  if (cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, ctx->device) != cudaSuccess ||
      cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, ctx->device) != cudaSuccess) {
    cudaGetLastError();
    return false;
  }
  return major == 9 && minor == 0;
}

int moe_wgmma(klc_ctx *ctx, const Args &up, const Args &down, int max_tiles) {
  const int rc = launch<true>(ctx, up, max_tiles);
  return rc ? rc : launch<false>(ctx, down, max_tiles);
}

}  // namespace klc

#else

namespace klc {

bool moe_wgmma_ready(klc_ctx *, int, int) { return false; }

int moe_wgmma(klc_ctx *, const klc_moe_tiles::Args &, const klc_moe_tiles::Args &, int) {
  return fail(KLC_E_ARG, "the Hopper MoE kernels are not in this build (built without sm_90 in --archs)");
}

}  // namespace klc

#endif
