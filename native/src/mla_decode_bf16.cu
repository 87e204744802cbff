// MLA decode attention on bf16 tensor cores, for bf16 latent caches in tensor-core mode: the same
// split-K flash-decoding as batch_decode.cu's kernel (whose partials and combine it shares), with
// m16n8k16 bf16 MMAs instead of TF32 ones. Why: the TF32 kernel widens every cached value to fp32
// and reaches about 60 TFLOP/s, so a step over a 1M-token cache is compute bound at a third of the
// copy bandwidth, and answers that share the repository's rows cannot gain from reading them once.
// Here the cached rows feed the MMAs as they are stored, the query is rounded to bf16 once, and the
// probabilities are rounded to bf16 for the value product (as FlashAttention and FlashMLA do); the
// softmax and every sum stay fp32.
//
// A CTA (split, sequence, head group) takes 32 query heads and walks NK-key blocks of its part of
// the cache, double-buffered with cp.async. 16 warps, so that each scheduler has four to switch
// between while one waits on a fragment load: for the scores, warp (m, half, part) holds its 16
// heads' query over a quarter of the D columns in registers and multiplies it with half the block's
// keys; the four partial score tiles are summed in shared memory by the softmax, which writes bf16
// probabilities; for the values (the first L columns of the keys), each warp owns L / 16 columns for
// all 32 heads.
#include <cuda_bf16.h>

#include <cmath>
#include <cstdlib>

#include "internal.h"
#include "pdl.cuh"
#include "mma_bf16.cuh"

namespace {

using bf16 = __nv_bfloat16;
using klc_mma::ldsm_x4;
using klc_mma::ldsm_x4_trans;
using klc_mma::mma_bf16;
using klc_mma::pack_bf16;

constexpr int HEADS = 32, WARPS = 16, THREADS = WARPS * 32;
constexpr int PARTS = 4;    // quarters of D in the score product; warps are (16 heads, half the keys, part)
constexpr int MAX_KS = 9;   // 16-column steps per part: D <= PARTS * MAX_KS * 16 = 576
constexpr int MAX_VT = 4;   // 8-column value tiles per warp: L <= WARPS * MAX_VT * 8 = 512
constexpr float LOG2E = 1.4426950408889634f, LN2 = 0.6931471805599453f;

// Shared rows padded by 16 bytes: a row is an odd number of 16-byte units (D and NK multiples of
// 16), so the 8 rows one ldmatrix reads fall in distinct banks.
__host__ __device__ constexpr int key_stride(int D) { return D + 8; }
template <int NK>
constexpr int SCORE_STRIDE = NK + 4;
template <int NK>
constexpr int PROB_STRIDE = NK + 8;

template <int NK>
size_t smem_bytes(int D) {
  return sizeof(bf16) * (2 * (size_t)NK * key_stride(D) + HEADS * PROB_STRIDE<NK>) +
         sizeof(float) * ((size_t)PARTS * HEADS * SCORE_STRIDE<NK> + 3 * HEADS);
}

template <int NK>
__global__ void __launch_bounds__(THREADS, 1) mla_decode_bf16_kernel(const __grid_constant__ klc::MlaDecodeParams p) {
  pdl_wait();
  pdl_trigger();
  extern __shared__ __align__(16) unsigned char smem[];
  constexpr int SS = SCORE_STRIDE<NK>, PS = PROB_STRIDE<NK>, NT = NK / 16;  // n-tiles of a warp's half of the keys
  const int D = p.D, L = p.L, H = p.H, SK = key_stride(D);
  const int split = blockIdx.x, b = blockIdx.y, h0 = blockIdx.z * HEADS;
  const int hn = min(HEADS, H - h0);
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, g = lane >> 2, t = lane & 3;
  const int k_begin = split * p.split_keys, k_end = min(p.length(b), k_begin + p.split_keys);
  bf16 *Ks = reinterpret_cast<bf16 *>(smem);                       // [2][NK][SK]
  bf16 *Pb = Ks + 2 * NK * SK;                                      // [HEADS][PS] probabilities
  float *Sp = reinterpret_cast<float *>(Pb + HEADS * PS);           // [PARTS][HEADS][SS] partial scores
  float *row_m = Sp + PARTS * HEADS * SS;                           // running max (log2 units), sum, rescale
  float *row_l = row_m + HEADS, *row_a = row_l + HEADS;
  auto partial = [&](int r) { return p.partial(b, h0 + r, split); };
  if (k_begin >= k_end) {
    if (tid < hn) p.empty_partial(b, h0 + tid, split);
    return;
  }
  const bf16 *cache = static_cast<const bf16 *>(p.cache[b]);
  const int pieces = D / 8;  // 16-byte pieces per row
  auto load_block = [&](int buf, int kb) {
    bf16 *dst = Ks + (size_t)buf * NK * SK;
    for (int e = tid; e < NK * pieces; e += THREADS) {
      const int r = e / pieces, c = (e - r * pieces) * 8;
      // Rows past the end repeat the last key: finite values whose probability is set to 0.
      klc_mma::cp_async16(dst + r * SK + c, cache + (size_t)min(kb + r, k_end - 1) * D + c);
    }
    klc_mma::cp_commit();
  };
  load_block(0, k_begin);

  // This warp's query fragments: heads m*16 + (g, g + 8) over its part's 16-column steps.
  const int m = warp & 1, half = (warp >> 1) & 1, part = warp >> 2;
  const int steps = D / 16, per_part = (steps + PARTS - 1) / PARTS;
  const int ks0 = part * per_part, ks_n = max(0, min(steps, ks0 + per_part) - ks0);
  unsigned qa[MAX_KS][4];
  {
    const int r0 = m * 16 + g, r1 = r0 + 8;
    const float *q0 = p.q + ((size_t)b * H + h0 + r0) * D, *q1 = p.q + ((size_t)b * H + h0 + r1) * D;
#pragma unroll
    for (int j = 0; j < MAX_KS; ++j) {
      const int c = (ks0 + j) * 16 + 2 * t;
      const bool in = j < ks_n;
      const bool a0 = in && r0 < hn, a1 = in && r1 < hn;
      qa[j][0] = a0 ? pack_bf16(q0[c], q0[c + 1]) : 0u;
      qa[j][1] = a1 ? pack_bf16(q1[c], q1[c + 1]) : 0u;
      qa[j][2] = a0 ? pack_bf16(q0[c + 8], q0[c + 9]) : 0u;
      qa[j][3] = a1 ? pack_bf16(q1[c + 8], q1[c + 9]) : 0u;
    }
  }
  if (tid < HEADS) {
    row_m[tid] = -INFINITY;
    row_l[tid] = 0.f;
  }
  const int vt_n = L / (8 * WARPS);  // value tiles per warp (L a multiple of 256: pairs of tiles)
  const int col0 = warp * (L / WARPS);
  float acc[2][MAX_VT][4];
#pragma unroll
  for (int i = 0; i < 2; ++i)
#pragma unroll
    for (int j = 0; j < MAX_VT; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e) acc[i][j][e] = 0.f;
  const float scale_log2 = p.scale * LOG2E;

  int buf = 0;
  for (int kb = k_begin; kb < k_end; kb += NK) {
    const bool more = kb + NK < k_end;
    if (more) {
      load_block(buf ^ 1, kb + NK);
      klc_mma::cp_wait<1>();
    } else {
      klc_mma::cp_wait<0>();
    }
    __syncthreads();
    const bf16 *Kb = Ks + (size_t)buf * NK * SK;
    {
      float c[NT][4];
#pragma unroll
      for (int n = 0; n < NT; ++n)
#pragma unroll
        for (int e = 0; e < 4; ++e) c[n][e] = 0.f;
#pragma unroll
      for (int j = 0; j < MAX_KS; ++j) {
        if (j >= ks_n) break;
        const int d0 = (ks0 + j) * 16;
#pragma unroll
        for (int n2 = 0; n2 < NT / 2; ++n2) {
          unsigned b0, b1, b2, b3;
          ldsm_x4(b0, b1, b2, b3, Kb + (half * NK / 2 + n2 * 16 + (lane & 7) + (lane >> 4) * 8) * SK + d0 + ((lane >> 3) & 1) * 8);
          mma_bf16(c[2 * n2], qa[j], b0, b1);
          mma_bf16(c[2 * n2 + 1], qa[j], b2, b3);
        }
      }
      float *dst = Sp + (part * HEADS + m * 16 + g) * SS + half * NK / 2 + 2 * t;
#pragma unroll
      for (int n = 0; n < NT; ++n) {
        *reinterpret_cast<float2 *>(dst + n * 8) = make_float2(c[n][0], c[n][1]);
        *reinterpret_cast<float2 *>(dst + 8 * SS + n * 8) = make_float2(c[n][2], c[n][3]);
      }
    }
    __syncthreads();
    {
      // Online softmax in log2 units: 16 threads per head, NK / 16 keys each.
      constexpr int PER = NK / 16;
      const int r = tid >> 4, k0 = (tid & 15) * PER;
      float v[PER], mx = -INFINITY;
#pragma unroll
      for (int e = 0; e < PER; ++e) {
        const int kl = k0 + e;
        float s = 0.f;
#pragma unroll
        for (int pp = 0; pp < PARTS; ++pp) s += Sp[(pp * HEADS + r) * SS + kl];
        v[e] = kb + kl < k_end ? s * scale_log2 : -INFINITY;
        mx = fmaxf(mx, v[e]);
      }
#pragma unroll
      for (int o = 8; o > 0; o >>= 1) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, o));
      const float m_old = row_m[r];
      const float m_new = fmaxf(m_old, mx);  // finite: the block's first key is inside the split
      float sum = 0.f;
#pragma unroll
      for (int e = 0; e < PER; e += 2) {
        // The value product sees the rounded probabilities, so the sum adds those.
        const __nv_bfloat162 pe = __floats2bfloat162_rn(exp2f(v[e] - m_new), exp2f(v[e + 1] - m_new));
        *reinterpret_cast<__nv_bfloat162 *>(Pb + r * PS + k0 + e) = pe;
        const float2 pf = __bfloat1622float2(pe);
        sum += pf.x + pf.y;
      }
#pragma unroll
      for (int o = 8; o > 0; o >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, o);
      __syncwarp();
      if ((tid & 15) == 0) {
        const float alpha = exp2f(m_old - m_new);
        row_m[r] = m_new;
        row_l[r] = row_l[r] * alpha + sum;
        row_a[r] = alpha;
      }
    }
    __syncthreads();
    {
#pragma unroll
      for (int i = 0; i < 2; ++i) {
        const float a_lo = row_a[i * 16 + g], a_hi = row_a[i * 16 + g + 8];
#pragma unroll
        for (int j = 0; j < MAX_VT; ++j) {
          acc[i][j][0] *= a_lo;
          acc[i][j][1] *= a_lo;
          acc[i][j][2] *= a_hi;
          acc[i][j][3] *= a_hi;
        }
      }
#pragma unroll
      for (int ks = 0; ks < NK / 16; ++ks) {
        unsigned pa[2][4];
#pragma unroll
        for (int i = 0; i < 2; ++i)
          ldsm_x4(pa[i][0], pa[i][1], pa[i][2], pa[i][3], Pb + (i * 16 + (lane & 15)) * PS + ks * 16 + (lane >> 4) * 8);
#pragma unroll
        for (int j2 = 0; j2 < MAX_VT / 2; ++j2) {
          if (2 * j2 >= vt_n) break;
          unsigned b0, b1, b2, b3;
          ldsm_x4_trans(b0, b1, b2, b3, Kb + (ks * 16 + (lane & 7) + ((lane >> 3) & 1) * 8) * SK + col0 + j2 * 16 + (lane >> 4) * 8);
#pragma unroll
          for (int i = 0; i < 2; ++i) {
            mma_bf16(acc[i][2 * j2], pa[i], b0, b1);
            mma_bf16(acc[i][2 * j2 + 1], pa[i], b2, b3);
          }
        }
      }
    }
    __syncthreads();
    buf ^= 1;
  }
#pragma unroll
  for (int i = 0; i < 2; ++i)
#pragma unroll
    for (int j = 0; j < MAX_VT; ++j) {
      if (j >= vt_n) break;
      const int col = col0 + j * 8 + 2 * t;
#pragma unroll
      for (int half = 0; half < 2; ++half) {
        const int r = i * 16 + g + half * 8;
        if (r < hn) *reinterpret_cast<float2 *>(partial(r) + col) = make_float2(acc[i][j][2 * half], acc[i][j][2 * half + 1]);
      }
    }
  if (tid < hn) {
    partial(tid)[L] = row_m[tid] * LN2;
    partial(tid)[L + 1] = row_l[tid];
  }
}

template <int NK>
int launch(klc_ctx *ctx, const klc::MlaDecodeParams &p, int B) {
  const size_t smem = smem_bytes<NK>(p.D);
  cudaError_t e = cudaFuncSetAttribute(mla_decode_bf16_kernel<NK>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem);
  if (e != cudaSuccess) return klc::fail_cuda(e, "configuring the bf16 MLA decode kernel");
  return klc::launched(klc::launch_pdl(ctx, mla_decode_bf16_kernel<NK>, dim3(p.splits, B, (p.H + HEADS - 1) / HEADS), THREADS, smem, p),
                       "the bf16 MLA decode attention");
}

}  // namespace

namespace klc {

int mla_decode_bf16_block(klc_ctx *ctx, int D, int L) {
  if (!ctx->tensor_cores || D % 16 || D > PARTS * MAX_KS * 16 || L % (16 * WARPS) || L > WARPS * MAX_VT * 8 || L > D) return 0;
  int optin = 0;
  cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, ctx->device);
  // 64-key blocks where they fit (Hopper); 32 on Ampere and Ada (99 to 163 KiB), or where
  // KLC_MLA_DECODE_BLOCK=32 asks for them (to check that form on a Hopper card).
  const char *block = std::getenv("KLC_MLA_DECODE_BLOCK");
  const bool small = block && std::atoi(block) == 32;
  if (!small && (size_t)optin >= smem_bytes<64>(D)) return 64;
  if ((size_t)optin >= smem_bytes<32>(D)) return 32;
  return 0;
}

int mla_decode_bf16(klc_ctx *ctx, const MlaDecodeParams &p, int B, int block) {
  return block == 64 ? launch<64>(ctx, p, B) : launch<32>(ctx, p, B);
}

}  // namespace klc
