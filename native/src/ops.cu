// The layer operations of the Kimi Linear model around the KDA kernels (spec sections 2-5):
// embedding gather, RMSNorm, residual add, dense and grouped (MoE) linear layers with bf16
// weights, the short causal conv with its carried tails, the fp32 KDA recurrence for any head
// size, the gated output norm, MLA latents and flash-style attention over the latent cache, and
// the MoE router. Activations are fp32 [rows, cols] row-major; weights are bf16 [out, in].
#include <cuda_bf16.h>

#include <algorithm>
#include <cfloat>
#include <climits>
#include <string>

#include "internal.h"
#include "mla_cache.cuh"

namespace {

using bf16 = __nv_bfloat16;

__device__ __forceinline__ float sigmoidf_(float x) { return 1.f / (1.f + expf(-x)); }
__device__ __forceinline__ float siluf_(float x) { return x / (1.f + expf(-x)); }
__device__ __forceinline__ float softplusf_(float x) { return x > 20.f ? x : log1pf(expf(x)); }

__device__ __forceinline__ float wval(const bf16 *w, size_t i) { return __bfloat162float(w[i]); }
__device__ __forceinline__ float wval(const float *w, size_t i) { return w[i]; }

__device__ __forceinline__ float warp_sum(float x) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) x += __shfl_xor_sync(0xffffffffu, x, o);
  return x;
}

// Sum over a block of up to 1024 threads; every thread gets the result.
__device__ float block_sum(float x) {
  __shared__ float part[32];
  __shared__ float total;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  x = warp_sum(x);
  __syncthreads();
  if (lane == 0) part[warp] = x;
  __syncthreads();
  if (warp == 0) {
    float y = lane < (int)((blockDim.x + 31) / 32) ? part[lane] : 0.f;
    y = warp_sum(y);
    if (lane == 0) total = y;
  }
  __syncthreads();
  return total;
}

template <typename WT>
__global__ void embed_kernel(const WT *table, const int *ids, float *out, int d) {
  const int t = blockIdx.x;
  const size_t row = (size_t)ids[t] * d;
  for (int c = threadIdx.x; c < d; c += blockDim.x) out[(size_t)t * d + c] = wval(table, row + c);
}

__global__ void rmsnorm_kernel(const float *x, int ldx, const float *w, float *y, int ldy, int D, float eps) {
  const float *xr = x + (size_t)blockIdx.x * ldx;
  float *yr = y + (size_t)blockIdx.x * ldy;
  float ss = 0.f;
  for (int c = threadIdx.x; c < D; c += blockDim.x) ss += xr[c] * xr[c];
  const float inv = rsqrtf(block_sum(ss) / D + eps);
  for (int c = threadIdx.x; c < D; c += blockDim.x) yr[c] = w[c] * (xr[c] * inv);
}

// add_kernel then rmsnorm_kernel, fused: each thread adds the columns it later normalises, so the
// sums and products are the same operations in the same order as the two kernels.
__global__ void add_rmsnorm_kernel(float *h, const float *x, const float *w, float *y, int D, float eps) {
  float *hr = h + (size_t)blockIdx.x * D;
  const float *xr = x + (size_t)blockIdx.x * D;
  float *yr = y + (size_t)blockIdx.x * D;
  float ss = 0.f;
  for (int c = threadIdx.x; c < D; c += blockDim.x) {
    const float v = hr[c] + xr[c];
    hr[c] = v;
    ss += v * v;
  }
  const float inv = rsqrtf(block_sum(ss) / D + eps);
  for (int c = threadIdx.x; c < D; c += blockDim.x) yr[c] = w[c] * (hr[c] * inv);
}

// Appends MLA latent rows (spec 3): cache row r = [RMSNorm(ckv[r, :L]) * w ; ckv[r, L:D]], rounded
// to the cache's type. The norm's sums and products are rmsnorm_kernel's, in the same order, so
// the fp32 form stores exactly what klc_rmsnorm and klc_copy2d would.
template <typename CT>
__device__ void append_latent_row(const float *xr, const float *w, CT *yr, int D, int L, float eps) {
  float ss = 0.f;
  for (int c = threadIdx.x; c < L; c += blockDim.x) ss += xr[c] * xr[c];
  const float inv = rsqrtf(block_sum(ss) / L + eps);
  for (int c = threadIdx.x; c < D; c += blockDim.x) klc::cache_store(yr + c, c < L ? w[c] * (xr[c] * inv) : xr[c]);
}

template <typename CT>
__global__ void mla_append_kernel(const float *ckv, const float *w, CT *cache, int D, int L, float eps) {
  append_latent_row(ckv + (size_t)blockIdx.x * D, w, cache + (size_t)blockIdx.x * D, D, L, eps);
}

struct AppendTargets {
  void *cache[KLC_MAX_DECODE_BATCH];
};

template <typename CT>
__global__ void mla_append_at_kernel(const float *ckv, const float *w, const __grid_constant__ AppendTargets to, const int32_t *pos,
                                     int D, int L, float eps) {
  const int b = blockIdx.x;
  append_latent_row(ckv + (size_t)b * D, w, static_cast<CT *>(to.cache[b]) + (size_t)pos[b] * D, D, L, eps);
}

__global__ void add_kernel(float *h, const float *x, size_t n) {
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) h[i] += x[i];
}

__global__ void copy2d_kernel(const float *src, int lds, float *dst, int ldd, int rows, int cols) {
  const size_t n = (size_t)rows * cols;
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
    const size_t r = i / cols, c = i % cols;
    dst[r * ldd + c] = src[r * lds + c];
  }
}

// h[t, i] = SiLU(gu[t, i]) * gu[t, I + i]: the gate and up projections come from one GEMM.
__global__ void silu_mul_kernel(const float *gu, float *h, int rows, int I) {
  const size_t n = (size_t)rows * I;
  for (size_t e = blockIdx.x * (size_t)blockDim.x + threadIdx.x; e < n; e += (size_t)gridDim.x * blockDim.x) {
    const size_t r = e / I, i = e % I;
    h[e] = siluf_(gu[r * 2 * I + i]) * gu[r * 2 * I + I + i];
  }
}

// ---------------------------------------------------------------------------------------------
// Linear layers: Y[M, N] (+)= X[M, K] · W[N, K]ᵀ, X fp32, W bf16, fp32 accumulation. A 64x64
// output tile per CTA, 4x4 per thread. Weights are bf16, or fp32 where the checkpoint stores fp32. Three ways to pick the rows: plain (optionally batched
// by blockIdx.z with strides), gathered (X row r is row rows[r]), and grouped: the rows are
// sorted by expert, group e owns rows [off[e], off[e+1]) and multiplies its own W + e * sw.
constexpr int BM = 64, BN = 64, BK = 16, GEMM_THREADS = 256;

struct GemmArgs {
  const float *x;
  int ldx;
  const int *gather;  // optional: X row of output row r is gather[r]
  const void *w;      // bf16 or fp32, by the kernel's template argument
  long long sw;       // per batch (plain) or per group (grouped) weight stride, in elements
  float *y;
  int ldy;
  int M, N, K;
  long long sx, sy;   // per batch strides of x and y (plain mode)
  int accumulate;
  const int *group_off;    // grouped mode: [groups + 1] row offsets
  const int *tile_start;   // grouped mode: [groups + 1] first row tile of each group
  int groups;
};

template <typename WT>
__global__ void __launch_bounds__(GEMM_THREADS) gemm_kernel(GemmArgs a) {
  __shared__ float As[BK][BM + 4];
  __shared__ float Ws[BK][BN + 4];
  int row0, row1;
  const WT *w = static_cast<const WT *>(a.w);
  const float *x = a.x;
  float *y = a.y;
  if (a.group_off) {
    const int tile = blockIdx.y;
    if (tile >= a.tile_start[a.groups]) return;
    int lo = 0, hi = a.groups - 1;  // the group whose tile range holds `tile`
    while (lo < hi) {
      const int mid = (lo + hi + 1) >> 1;
      if (a.tile_start[mid] <= tile) lo = mid; else hi = mid - 1;
    }
    row0 = a.group_off[lo] + (tile - a.tile_start[lo]) * BM;
    row1 = min(row0 + BM, a.group_off[lo + 1]);
    w += (size_t)lo * a.sw;
  } else {
    row0 = blockIdx.y * BM;
    row1 = min(row0 + BM, a.M);
    w += (size_t)blockIdx.z * a.sw;
    x += (size_t)blockIdx.z * a.sx;
    y += (size_t)blockIdx.z * a.sy;
  }
  const int col0 = blockIdx.x * BN;
  const int tid = threadIdx.x, tr = tid / 16, tc = tid % 16;
  float acc[4][4] = {};
  for (int k0 = 0; k0 < a.K; k0 += BK) {
    for (int e = tid; e < BM * BK; e += GEMM_THREADS) {
      const int r = e / BK, kk = e % BK;
      const int gr = row0 + r, gk = k0 + kk;
      float v = 0.f;
      if (gr < row1 && gk < a.K) {
        const int xr = a.gather ? a.gather[gr] : gr;
        v = x[(size_t)xr * a.ldx + gk];
      }
      As[kk][r] = v;
    }
    for (int e = tid; e < BN * BK; e += GEMM_THREADS) {
      const int c = e / BK, kk = e % BK;
      const int gc = col0 + c, gk = k0 + kk;
      Ws[kk][c] = (gc < a.N && gk < a.K) ? wval(w, (size_t)gc * a.K + gk) : 0.f;
    }
    __syncthreads();
#pragma unroll
    for (int kk = 0; kk < BK; ++kk) {
      float xa[4], wb[4];
#pragma unroll
      for (int i = 0; i < 4; ++i) xa[i] = As[kk][tr + 16 * i];
#pragma unroll
      for (int j = 0; j < 4; ++j) wb[j] = Ws[kk][tc + 16 * j];
#pragma unroll
      for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j) acc[i][j] = fmaf(xa[i], wb[j], acc[i][j]);
    }
    __syncthreads();
  }
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const int gr = row0 + tr + 16 * i;
    if (gr >= row1) continue;
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const int gc = col0 + tc + 16 * j;
      if (gc >= a.N) continue;
      float *dst = y + (size_t)gr * a.ldy + gc;
      *dst = a.accumulate ? *dst + acc[i][j] : acc[i][j];
    }
  }
}

// Few rows (decode): one warp per output column streams its weight row once for all rows.
constexpr int GEMV_MAX_ROWS = 4;
template <typename WT>
__global__ void gemv_kernel(GemmArgs a) {
  const int warps = blockDim.x / 32;
  const int col = blockIdx.x * warps + (threadIdx.x >> 5);
  const int lane = threadIdx.x & 31;
  if (col >= a.N) return;
  const WT *w = static_cast<const WT *>(a.w) + (size_t)blockIdx.z * a.sw + (size_t)col * a.K;
  const float *x = a.x + (size_t)blockIdx.z * a.sx;
  float *y = a.y + (size_t)blockIdx.z * a.sy;
  float acc[GEMV_MAX_ROWS] = {};
  for (int k = lane; k < a.K; k += 32) {
    const float wv = wval(w, k);
#pragma unroll
    for (int r = 0; r < GEMV_MAX_ROWS; ++r)
      if (r < a.M) acc[r] = fmaf(x[(size_t)r * a.ldx + k], wv, acc[r]);
  }
#pragma unroll
  for (int r = 0; r < GEMV_MAX_ROWS; ++r) {
    if (r >= a.M) break;
    const float s = warp_sum(acc[r]);
    if (lane == 0) {
      float *dst = y + (size_t)r * a.ldy + col;
      *dst = a.accumulate ? *dst + s : s;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Short causal depthwise conv + SiLU over C channels (q, k and v projections side by side),
// one thread per channel. tail [C, W-1] holds the inputs before x (oldest first) and is advanced.
// Channel c belongs to stream s = c / split and is written to out + s * T * split.
// One thread per (token, channel): output t reads the raw inputs t-W+1..t, taking those before this
// call from tail, so every token runs at once (a thread per channel walking the tokens left the GPU
// mostly idle: 20 ms per KDA layer at 32k tokens). The tail moves on in short_conv_tail_kernel.
__global__ void short_conv_kernel(const float *x, const float *w, const float *tail, float *yf, bf16 *yb, int T, int C, int W,
                                  int split) {
  const size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= (size_t)T * C) return;
  const int t = (int)(i / C), c = (int)(i % C);
  const int keep = W - 1;
  const float *wc = w + (size_t)c * W;
  // Same arithmetic order as the recurrent form: the current tap first, then the oldest input on.
  float acc = wc[keep] * x[i];
  for (int j = 0; j < keep; ++j) {
    const int p = t - keep + j;
    acc = fmaf(wc[j], p >= 0 ? x[(size_t)p * C + c] : tail[(size_t)c * keep + p + keep], acc);
  }
  const float v = siluf_(acc);
  const int s = c / split, cc = c % split;
  const size_t o = (size_t)s * T * split + (size_t)t * split + cc;
  if (yf) yf[o] = v;
  if (yb) yb[o] = __float2bfloat16(v);
}

// tail[c, :] becomes the last W-1 inputs, of this call or (when T < W-1) partly still the old tail:
// entry j reads entry j+T, which a lower j never overwrites.
__global__ void short_conv_tail_kernel(const float *x, float *tail, int T, int C, int keep) {
  const int c = blockIdx.x * blockDim.x + threadIdx.x;
  if (c >= C) return;
  for (int j = 0; j < keep; ++j) {
    const int p = T - keep + j;
    tail[(size_t)c * keep + j] = p >= 0 ? x[(size_t)p * C + c] : tail[(size_t)c * keep + p + keep];
  }
}

// ---------------------------------------------------------------------------------------------
// KDA token recurrence in fp32 for any K, V <= 128 (spec 2.1 steps 4-8): one warp per
// (head, 32 value columns); lane j keeps its state column S[:, j] in registers across tokens.
constexpr int KMAX = 128;
__global__ void __launch_bounds__(32) kda_recurrent_kernel(klc_kda_args a) {
  const int h = blockIdx.x, lane = threadIdx.x, b = blockIdx.z;
  const int j = blockIdx.y * 32 + lane;
  const int H = a.H, K = a.K, V = a.V;
  __shared__ float sq[KMAX], sk[KMAX], sa[KMAX];
  const float *q = static_cast<const float *>(a.q);
  const float *k = static_cast<const float *>(a.k);
  const float *v = static_cast<const float *>(a.v);
  float *o = static_cast<float *>(a.o);
  float *S = a.state + ((size_t)b * H + h) * K * V;
  float s[KMAX];
#pragma unroll
  for (int c = 0; c < KMAX; ++c) s[c] = (c < K && j < V) ? S[(size_t)c * V + j] : 0.f;
  const float neg_a = a.raw_gates ? -expf(a.A_log[h]) : 0.f;
  for (int t = 0; t < a.T; ++t) {
    const size_t base = ((size_t)(b * a.T + t) * H + h);
    float nq = 0.f, nk = 0.f;
    for (int c = lane; c < K; c += 32) {
      const float qv = q[base * K + c], kv = k[base * K + c];
      sq[c] = qv;
      sk[c] = kv;
      nq += qv * qv;
      nk += kv * kv;
      float g = a.g[base * K + c];
      if (a.raw_gates) g = neg_a * softplusf_(g + a.dt_bias[h * K + c]);
      sa[c] = expf(g);
    }
    nq = warp_sum(nq);
    nk = warp_sum(nk);
    const float iq = (a.l2norm_qk ? rsqrtf(nq + 1e-6f) : 1.f) * a.scale;
    const float ik = a.l2norm_qk ? rsqrtf(nk + 1e-6f) : 1.f;
    float beta = a.beta[base];
    if (a.raw_gates) beta = sigmoidf_(beta);
    __syncwarp();
    float u = 0.f;
#pragma unroll
    for (int c = 0; c < KMAX; ++c) {
      if (c < K) {
        s[c] *= sa[c];
        u = fmaf(s[c], sk[c] * ik, u);
      }
    }
    u = (j < V ? v[base * V + j] : 0.f) - u;
    const float bu = beta * u;
    float out = 0.f;
#pragma unroll
    for (int c = 0; c < KMAX; ++c) {
      if (c < K) {
        s[c] = fmaf(sk[c] * ik, bu, s[c]);
        out = fmaf(s[c], sq[c] * iq, out);
      }
    }
    if (j < V) o[base * V + j] = out;
    __syncwarp();
  }
  if (j < V)
#pragma unroll
    for (int c = 0; c < KMAX; ++c)
      if (c < K) S[(size_t)c * V + j] = s[c];
}

// KDA output norm (fla FusedRMSNormGated, sigmoid): one block per (token, head) vector.
__global__ void gated_rmsnorm_kernel(const void *o, int o_bf16, const float *gate, const float *w, float *y, int D, float eps) {
  const size_t r = blockIdx.x;
  auto val = [&](int c) {
    return o_bf16 ? __bfloat162float(static_cast<const bf16 *>(o)[r * D + c]) : static_cast<const float *>(o)[r * D + c];
  };
  float ss = 0.f;
  for (int c = threadIdx.x; c < D; c += blockDim.x) {
    const float x = val(c);
    ss += x * x;
  }
  const float inv = rsqrtf(block_sum(ss) / D + eps);
  for (int c = threadIdx.x; c < D; c += blockDim.x) y[r * D + c] = val(c) * inv * w[c] * sigmoidf_(gate[r * D + c]);
}

// ---------------------------------------------------------------------------------------------
// MLA attention over the latent cache (spec 3, absorbed form, used for prefill and decode).
// Row r = (token t = r / H, head h = r % H) has query q[r] = [W_UKᵀ q_nope ; q_pe] of width D =
// L + rope; key j is cache row j (its first L values double as the value). Row r sees keys
// j < start + t + 1. A CTA takes 16 rows and walks 16-key blocks of one split of the key range,
// with an online softmax; partial (max, sum, acc[L]) per split are joined by mla_combine.
// The T x T score matrix never exists: only a 16 x 16 block at a time.
constexpr int MR = 16, MK = 16, MLA_THREADS = 256, MLA_LMAX = 512;

template <typename CT>
__global__ void __launch_bounds__(MLA_THREADS) mla_attn_kernel(const float *q, const CT *cache, float *ws, int rows, int H,
                                                               int start, int D, int L, float scale, int split_keys) {
  extern __shared__ float sm[];
  float *Qs = sm;                 // [MR][D]
  float *Ks = Qs + MR * D;        // [MK][D + 1]
  const int tid = threadIdx.x, i = tid / MK, jj = tid % MK;
  const int r0 = blockIdx.x * MR;
  const int split = blockIdx.y, splits = gridDim.y;
  const int rlast = min(r0 + MR, rows) - 1;
  const int kend_tile = start + rlast / H + 1;  // keys any row of this tile may see
  const int k_begin = split * split_keys;
  const int k_end = min(kend_tile, k_begin + split_keys);
  const int r = r0 + i;
  const int my_end = r < rows ? start + r / H + 1 : 0;
  for (int e = tid; e < MR * D; e += MLA_THREADS) {
    const int ri = e / D, c = e % D;
    Qs[e] = (r0 + ri < rows) ? q[(size_t)(r0 + ri) * D + c] : 0.f;
  }
  float m = -FLT_MAX, l = 0.f;
  float acc[MLA_LMAX / MK];
#pragma unroll
  for (int x = 0; x < MLA_LMAX / MK; ++x) acc[x] = 0.f;
  const int KD1 = D + 1;
  for (int k0 = k_begin; k0 < k_end; k0 += MK) {
    __syncthreads();
    for (int e = tid; e < MK * D; e += MLA_THREADS) {
      const int kj = e / D, c = e % D;
      Ks[kj * KD1 + c] = (k0 + kj < k_end) ? klc::cache_f32(cache[(size_t)(k0 + kj) * D + c]) : 0.f;
    }
    __syncthreads();
    const int key = k0 + jj;
    float sc = -FLT_MAX;
    if (key < my_end && key < k_end) {
      float d = 0.f;
      const float *qr = Qs + i * D, *kr = Ks + jj * KD1;
      for (int c = 0; c < D; ++c) d = fmaf(qr[c], kr[c], d);
      sc = d * scale;
    }
    // The 16 threads of row i are one half-warp: reduce the block max and sum within it.
    float bm = sc;
#pragma unroll
    for (int o = 8; o > 0; o >>= 1) bm = fmaxf(bm, __shfl_xor_sync(0xffffffffu, bm, o));
    const float mn = fmaxf(m, bm);
    const float p = sc > -FLT_MAX ? expf(sc - mn) : 0.f;
    const float rescale = m > -FLT_MAX ? expf(m - mn) : (mn > -FLT_MAX ? 0.f : 1.f);
    float ps = p;
#pragma unroll
    for (int o = 8; o > 0; o >>= 1) ps += __shfl_xor_sync(0xffffffffu, ps, o);
    l = l * rescale + ps;
    m = mn;
    // acc[c] for c = jj + 16 x: sum over this block's keys of p_key * key[c]
    float pk[MK];
#pragma unroll
    for (int s = 0; s < MK; ++s) pk[s] = __shfl_sync(0xffffffffu, p, (threadIdx.x & 16) + s);
#pragma unroll
    for (int x = 0; x < MLA_LMAX / MK; ++x) {
      const int c = jj + MK * x;
      if (c < L) {
        float sacc = acc[x] * rescale;
#pragma unroll
        for (int s = 0; s < MK; ++s) sacc = fmaf(pk[s], Ks[s * KD1 + c], sacc);
        acc[x] = sacc;
      }
    }
  }
  if (r >= rows) return;
  float *out = ws + ((size_t)split * rows + r) * (L + 2);
#pragma unroll
  for (int x = 0; x < MLA_LMAX / MK; ++x) {
    const int c = jj + MK * x;
    if (c < L) out[c] = acc[x];
  }
  if (jj == 0) {
    out[L] = m;
    out[L + 1] = l;
  }
  (void)splits;
}

__global__ void mla_combine_kernel(const float *ws, float *ctx, int rows, int L, int splits) {
  const int r = blockIdx.x;
  float M = -FLT_MAX;
  for (int s = 0; s < splits; ++s) M = fmaxf(M, ws[((size_t)s * rows + r) * (L + 2) + L]);
  float denom = 0.f;
  for (int s = 0; s < splits; ++s) {
    const float *p = ws + ((size_t)s * rows + r) * (L + 2);
    if (p[L + 1] > 0.f) denom += expf(p[L] - M) * p[L + 1];
  }
  for (int c = threadIdx.x; c < L; c += blockDim.x) {
    float num = 0.f;
    for (int s = 0; s < splits; ++s) {
      const float *p = ws + ((size_t)s * rows + r) * (L + 2);
      if (p[L + 1] > 0.f) num += expf(p[L] - M) * p[c];
    }
    ctx[(size_t)r * L + c] = num / denom;
  }
}

// ---------------------------------------------------------------------------------------------
// MoE (spec 4): sigmoid router, choice on score + correction bias, weights from the unbiased
// scores of the chosen experts, renormalised, times the scaling factor. One warp per token: every
// lane scores E / 32 experts once and keeps them in registers; each of the k rounds takes the best
// expert not yet chosen with a warp argmax (ties to the lower index). A thread per token doing
// k * E serial steps cost half a millisecond per decode step.
constexpr int ROUTE_WARPS = 4;
constexpr int ROUTE_PER_LANE = 32;  // E <= 1024

__global__ void __launch_bounds__(32 * ROUTE_WARPS) moe_route_kernel(const float *logits, const float *bias, int *idx, float *wout,
                                                                     int T, int E, int k, int renorm, float scaling) {
  const int lane = threadIdx.x & 31;
  const int t = blockIdx.x * ROUTE_WARPS + (threadIdx.x >> 5);
  if (t >= T) return;
  const float *lg = logits + (size_t)t * E;
  // Lane keeps experts e = lane + 32 * j; bit j of `taken` marks one already chosen (or past E).
  float score[ROUTE_PER_LANE];
  unsigned taken = 0;
#pragma unroll
  for (int j = 0; j < ROUTE_PER_LANE; ++j) {
    const int e = lane + 32 * j;
    score[j] = e < E ? sigmoidf_(lg[e]) + bias[e] : 0.f;
    if (e >= E) taken |= 1u << j;
  }
  int chosen[16];
  for (int s = 0; s < k; ++s) {
    int best = INT_MAX;
    float bv = -INFINITY;
#pragma unroll
    for (int j = 0; j < ROUTE_PER_LANE; ++j) {
      if (taken >> j & 1u) continue;
      if (best == INT_MAX || score[j] > bv) {  // strict: ties keep the lower index (j ascends with e)
        bv = score[j];
        best = lane + 32 * j;
      }
    }
    for (int off = 16; off > 0; off >>= 1) {
      const float ov = __shfl_xor_sync(0xffffffffu, bv, off);
      const int oi = __shfl_xor_sync(0xffffffffu, best, off);
      if (oi != INT_MAX && (best == INT_MAX || ov > bv || (ov == bv && oi < best))) {
        bv = ov;
        best = oi;
      }
    }
    chosen[s] = best;
    if ((best & 31) == lane) taken |= 1u << (best >> 5);
  }
  for (int a = 1; a < k; ++a)  // ascending expert order, as the reference reports them
    for (int b = a; b > 0 && chosen[b - 1] > chosen[b]; --b) {
      const int tmp = chosen[b];
      chosen[b] = chosen[b - 1];
      chosen[b - 1] = tmp;
    }
  float sum = 0.f;
  for (int s = 0; s < k; ++s) sum += sigmoidf_(lg[chosen[s]]);
  const float norm = renorm ? sum + 1e-20f : 1.f;
  for (int s = lane; s < k; s += 32) {
    idx[(size_t)t * k + s] = chosen[s];
    wout[(size_t)t * k + s] = sigmoidf_(lg[chosen[s]]) / norm * scaling;
  }
}

// Sorts the T*k (token, slot) pairs by expert: off[E+1] row offsets, tiles[E+1] first 64-row
// tile per expert, pos[t*k+s] the sorted row of each pair, tok[row] its token. One block.
__global__ void moe_sort_kernel(const int *idx, int n, int E, int *off, int *tiles, int *cursor, int *pos, int *tok, int k) {
  for (int e = threadIdx.x; e < E; e += blockDim.x) cursor[e] = 0;
  __syncthreads();
  for (int i = threadIdx.x; i < n; i += blockDim.x) atomicAdd(&cursor[idx[i]], 1);
  __syncthreads();
  if (threadIdx.x == 0) {
    int o = 0, tl = 0;
    for (int e = 0; e < E; ++e) {
      off[e] = o;
      tiles[e] = tl;
      o += cursor[e];
      tl += (cursor[e] + BM - 1) / BM;
      cursor[e] = off[e];
    }
    off[E] = o;
    tiles[E] = tl;
  }
  __syncthreads();
  for (int i = threadIdx.x; i < n; i += blockDim.x) {
    const int p = atomicAdd(&cursor[idx[i]], 1);
    pos[i] = p;
    tok[p] = i / k;
  }
}

// out[t] += sum_s w[t, s] * y[pos[t, s]] (slots in ascending expert order).
__global__ void moe_combine_kernel(const float *y, const int *pos, const float *w, float *out, int d, int k) {
  const int t = blockIdx.x;
  for (int c = threadIdx.x; c < d; c += blockDim.x) {
    float s = 0.f;
    for (int j = 0; j < k; ++j) s = fmaf(w[(size_t)t * k + j], y[(size_t)pos[t * k + j] * d + c], s);
    out[(size_t)t * d + c] += s;
  }
}

using klc::launched;

int blocks_for(size_t n, int threads) {
  size_t b = (n + threads - 1) / threads;
  return (int)(b > 65535 * 16 ? 65535 * 16 : (b < 1 ? 1 : b));
}

size_t align256(size_t b) { return (b + 255) & ~(size_t)255; }

}  // namespace

using namespace klc;

extern "C" {

int klc_embed(klc_ctx *ctx, const void *table, const int32_t *ids, float *out, int T, int d, int table_f32) {
  int rc = use_device(ctx);
  if (rc) return rc;
  if (!table || !ids || !out || T < 1 || d < 1) return fail(KLC_E_ARG, "klc_embed: null pointer or empty shape");
  if (table_f32) embed_kernel<<<T, 256, 0, ctx->stream>>>(static_cast<const float *>(table), ids, out, d);
  else embed_kernel<<<T, 256, 0, ctx->stream>>>(static_cast<const bf16 *>(table), ids, out, d);
  return launched("the embedding gather");
}

int klc_rmsnorm(klc_ctx *ctx, const float *x, int ldx, const float *w, float *y, int ldy, int rows, int D, float eps) {
  int rc = use_device(ctx);
  if (rc) return rc;
  if (!x || !w || !y || rows < 1 || D < 1 || ldx < D || ldy < D) return fail(KLC_E_ARG, "klc_rmsnorm: bad pointers or shape");
  rmsnorm_kernel<<<rows, 256, 0, ctx->stream>>>(x, ldx, w, y, ldy, D, eps);
  return launched("RMSNorm");
}

int klc_add_rmsnorm(klc_ctx *ctx, float *h, const float *x, const float *w, float *y, int rows, int D, float eps) {
  int rc = use_device(ctx);
  if (rc) return rc;
  if (!h || !x || !w || !y || rows < 1 || D < 1) return fail(KLC_E_ARG, "klc_add_rmsnorm: bad pointers or shape");
  add_rmsnorm_kernel<<<rows, 256, 0, ctx->stream>>>(h, x, w, y, D, eps);
  return launched("the residual add and RMSNorm");
}

int klc_add(klc_ctx *ctx, float *h, const float *x, size_t n) {
  int rc = use_device(ctx);
  if (rc) return rc;
  if (!h || !x) return fail(KLC_E_ARG, "klc_add: null pointer");
  add_kernel<<<blocks_for(n, 256), 256, 0, ctx->stream>>>(h, x, n);
  return launched("the residual add");
}

int klc_copy2d(klc_ctx *ctx, const float *src, int lds, float *dst, int ldd, int rows, int cols) {
  int rc = use_device(ctx);
  if (rc) return rc;
  if (!src || !dst || rows < 0 || cols < 0 || lds < cols || ldd < cols) return fail(KLC_E_ARG, "klc_copy2d: bad pointers or shape");
  if (rows == 0 || cols == 0) return KLC_OK;
  copy2d_kernel<<<blocks_for((size_t)rows * cols, 256), 256, 0, ctx->stream>>>(src, lds, dst, ldd, rows, cols);
  return launched("a strided copy");
}

int klc_copy(klc_ctx *ctx, void *dst, const void *src, size_t bytes) {
  int rc = use_device(ctx);
  if (rc) return rc;
  cudaError_t e = cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, ctx->stream);
  return e == cudaSuccess ? KLC_OK : fail_cuda(e, "copying on the GPU");
}

int klc_silu_mul(klc_ctx *ctx, const float *gu, float *h, int rows, int I) {
  int rc = use_device(ctx);
  if (rc) return rc;
  if (!gu || !h || rows < 1 || I < 1) return fail(KLC_E_ARG, "klc_silu_mul: bad pointers or shape");
  silu_mul_kernel<<<blocks_for((size_t)rows * I, 256), 256, 0, ctx->stream>>>(gu, h, rows, I);
  return launched("the SwiGLU activation");
}

int klc_linear(klc_ctx *ctx, const float *x, int ldx, const void *w, float *y, int ldy, int M, int N, int K, int batch,
               long long sx, long long sw, long long sy, int accumulate, int w_f32) {
  int rc = use_device(ctx);
  if (rc) return rc;
  if (!x || !w || !y || M < 1 || N < 1 || K < 1 || batch < 1 || batch > 65535 || ldx < K || ldy < N)
    return fail(KLC_E_ARG, "klc_linear: bad pointers or shape (M=" + std::to_string(M) + " N=" + std::to_string(N) +
                               " K=" + std::to_string(K) + ")");
  if (gemv_wanted(x, ldx, sx, w, sw, M, K, w_f32)) return gemv(ctx, x, ldx, sx, w, sw, y, ldy, sy, M, N, K, batch, accumulate, w_f32);
  if (ctx->tensor_cores && !w_f32) return tc_linear(ctx, x, ldx, w, y, ldy, M, N, K, batch, sx, sw, sy, accumulate);
  GemmArgs a{x, ldx, nullptr, w, sw, y, ldy, M, N, K, sx, sy, accumulate, nullptr, nullptr, 0};
  if (M <= GEMV_MAX_ROWS) {
    const dim3 grid((N + 7) / 8, 1, batch);
    if (w_f32) gemv_kernel<float><<<grid, 256, 0, ctx->stream>>>(a);
    else gemv_kernel<bf16><<<grid, 256, 0, ctx->stream>>>(a);
  } else {
    const int mt = (M + BM - 1) / BM;
    if (mt > 65535) return fail(KLC_E_ARG, "klc_linear: more than 4 million rows in one call");
    const dim3 grid((N + BN - 1) / BN, mt, batch);
    if (w_f32) gemm_kernel<float><<<grid, GEMM_THREADS, 0, ctx->stream>>>(a);
    else gemm_kernel<bf16><<<grid, GEMM_THREADS, 0, ctx->stream>>>(a);
  }
  return launched("a linear layer");
}

int klc_short_conv(klc_ctx *ctx, const float *x, const float *w, float *tail, float *y_f32, void *y_bf16, int T, int C, int W,
                   int split) {
  int rc = use_device(ctx);
  if (rc) return rc;
  if (!x || !w || !tail || (!y_f32 && !y_bf16) || T < 1 || C < 1 || W < 1 || W > 8 || split < 1 || C % split)
    return fail(KLC_E_ARG, "klc_short_conv: bad pointers or shape (kernel sizes 1..8, C a multiple of split)");
  short_conv_kernel<<<blocks_for((size_t)T * C, 256), 256, 0, ctx->stream>>>(x, w, tail, y_f32, static_cast<bf16 *>(y_bf16), T, C, W,
                                                                              split);
  if ((rc = launched("the short convolution"))) return rc;
  if (W == 1) return KLC_OK;
  short_conv_tail_kernel<<<(C + 127) / 128, 128, 0, ctx->stream>>>(x, tail, T, C, W - 1);
  return launched("the short convolution's state");
}

int klc_kda_recurrent_f32(klc_ctx *ctx, const klc_kda_args *a) {
  int rc = use_device(ctx);
  if (rc) return rc;
  if (!a || a->K < 1 || a->K > KMAX || a->V < 1 || a->B < 1 || a->H < 1 || a->T < 1 || a->B > 65535 || a->V > 32 * 65535)
    return fail(KLC_E_ARG, "KDA recurrence: needs 1 <= K <= 128, V >= 1, B, H, T >= 1");
  if (!a->q || !a->k || !a->v || !a->g || !a->beta || !a->state || !a->o)
    return fail(KLC_E_ARG, "KDA recurrence: q, k, v, g, beta, state and o must all be set");
  if (a->raw_gates && (!a->A_log || !a->dt_bias)) return fail(KLC_E_ARG, "KDA recurrence: raw_gates needs A_log and dt_bias");
  kda_recurrent_kernel<<<dim3(a->H, (a->V + 31) / 32, a->B), 32, 0, ctx->stream>>>(*a);
  return launched("the KDA recurrence");
}

int klc_gated_rmsnorm(klc_ctx *ctx, const void *o, int o_bf16, const float *gate, const float *w, float *y, int rows, int D,
                      float eps) {
  int rc = use_device(ctx);
  if (rc) return rc;
  if (!o || !gate || !w || !y || rows < 1 || D < 1) return fail(KLC_E_ARG, "klc_gated_rmsnorm: bad pointers or shape");
  gated_rmsnorm_kernel<<<rows, D >= 128 ? 128 : 32, 0, ctx->stream>>>(o, o_bf16, gate, w, y, D, eps);
  return launched("the gated output norm");
}

size_t klc_mla_workspace_bytes(int rows, int L, int splits) { return (size_t)splits * rows * (L + 2) * sizeof(float); }

int klc_mla_splits(klc_ctx *ctx, int rows, int total_keys) {
  int sms = 0;
  cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, ctx ? ctx->device : 0);
  const int tiles = (rows + MR - 1) / MR;
  int s = (2 * (sms > 0 ? sms : 100) + tiles - 1) / tiles;
  const int by_keys = (total_keys + 255) / 256;
  if (s > by_keys) s = by_keys;
  if (s > 64) s = 64;
  return s < 1 ? 1 : s;
}

int klc_mla_append_latents(klc_ctx *ctx, const float *ckv, const float *w, void *cache, int cache_type, int rows, int D, int L,
                           float eps) {
  int rc = use_device(ctx);
  if (rc) return rc;
  if ((rc = check_cache_type(cache_type, "klc_mla_append_latents"))) return rc;
  if (!ckv || !w || !cache || rows < 0 || L < 1 || D < L) return fail(KLC_E_ARG, "klc_mla_append_latents: bad pointers or shape");
  if (rows == 0) return KLC_OK;
  if (cache_type == KLC_CACHE_BF16) mla_append_kernel<<<rows, 256, 0, ctx->stream>>>(ckv, w, static_cast<bf16 *>(cache), D, L, eps);
  else mla_append_kernel<<<rows, 256, 0, ctx->stream>>>(ckv, w, static_cast<float *>(cache), D, L, eps);
  return launched("appending MLA latent rows");
}

int klc_mla_append_at(klc_ctx *ctx, const float *ckv, const float *w, const void *const *caches, int cache_type,
                      const int32_t *positions, int B, int D, int L, float eps) {
  int rc = use_device(ctx);
  if (rc) return rc;
  if ((rc = check_cache_type(cache_type, "klc_mla_append_at"))) return rc;
  if (!ckv || !w || !caches || !positions || B < 1 || B > KLC_MAX_DECODE_BATCH || L < 1 || D < L)
    return fail(KLC_E_ARG, "klc_mla_append_at: bad pointers or shape (1 <= B <= " + std::to_string(KLC_MAX_DECODE_BATCH) + ")");
  AppendTargets to{};
  for (int b = 0; b < B; ++b) {
    if (!caches[b]) return fail(KLC_E_ARG, "klc_mla_append_at: the cache of sequence " + std::to_string(b) + " is null");
    to.cache[b] = const_cast<void *>(caches[b]);
  }
  if (cache_type == KLC_CACHE_BF16) mla_append_at_kernel<bf16><<<B, 256, 0, ctx->stream>>>(ckv, w, to, positions, D, L, eps);
  else mla_append_at_kernel<float><<<B, 256, 0, ctx->stream>>>(ckv, w, to, positions, D, L, eps);
  return launched("appending the decode step's MLA latent rows");
}

int klc_mla_attention(klc_ctx *ctx, const float *q, const void *cache, int cache_type, float *out, float *ws, size_t ws_bytes,
                      int T, int H, int start, int D, int L, float scale, int splits) {
  int rc = use_device(ctx);
  if (rc) return rc;
  if ((rc = check_cache_type(cache_type, "klc_mla_attention"))) return rc;
  const int rows = T * H;
  if (!q || !cache || !out || !ws || T < 1 || H < 1 || start < 0 || L < 1 || L > MLA_LMAX || D < L || splits < 1 ||
      splits > 65535)
    return fail(KLC_E_ARG, "klc_mla_attention: bad pointers or shape (latent width at most 512)");
  if (ws_bytes < klc_mla_workspace_bytes(rows, L, splits))
    return fail(KLC_E_ARG, "klc_mla_attention: workspace smaller than klc_mla_workspace_bytes()");
  if (tc_mla_wanted(ctx, T)) return tc_mla(ctx, q, cache, cache_type, out, ws, T, H, start, D, L, scale);
  const int total = start + T;
  const int split_keys = ((total + splits - 1) / splits + MK - 1) / MK * MK;
  const size_t smem = sizeof(float) * (MR * D + MK * (D + 1));
  const dim3 grid((rows + MR - 1) / MR, splits);
  cudaError_t e;
  if (cache_type == KLC_CACHE_BF16) {
    e = cudaFuncSetAttribute(mla_attn_kernel<bf16>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem);
    if (e == cudaSuccess)
      mla_attn_kernel<<<grid, MLA_THREADS, smem, ctx->stream>>>(q, static_cast<const bf16 *>(cache), ws, rows, H, start, D, L, scale,
                                                               split_keys);
  } else {
    e = cudaFuncSetAttribute(mla_attn_kernel<float>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem);
    if (e == cudaSuccess)
      mla_attn_kernel<<<grid, MLA_THREADS, smem, ctx->stream>>>(q, static_cast<const float *>(cache), ws, rows, H, start, D, L, scale,
                                                               split_keys);
  }
  if (e != cudaSuccess) return fail_cuda(e, "configuring the MLA attention kernel");
  if ((rc = launched("the MLA attention"))) return rc;
  mla_combine_kernel<<<rows, 128, 0, ctx->stream>>>(ws, out, rows, L, splits);
  return launched("the MLA split combine");
}

int klc_moe_route(klc_ctx *ctx, const float *logits, const float *bias, int32_t *idx, float *w, int T, int E, int k, int renorm,
                  float scaling) {
  int rc = use_device(ctx);
  if (rc) return rc;
  if (!logits || !bias || !idx || !w || T < 1 || E < 1 || E > 32 * ROUTE_PER_LANE || k < 1 || k > 16 || k > E)
    return fail(KLC_E_ARG, "klc_moe_route: bad pointers or shape (at most 1024 experts, top-k at most 16)");
  moe_route_kernel<<<(T + ROUTE_WARPS - 1) / ROUTE_WARPS, 32 * ROUTE_WARPS, 0, ctx->stream>>>(logits, bias, idx, w, T, E, k, renorm,
                                                                                              scaling);
  return launched("the MoE router");
}

size_t klc_moe_workspace_bytes(int T, int d, int I, int E, int k) {
  const size_t n = (size_t)T * k;
  // Row buffers hold every expert's rows padded to whole 64-row tiles (the tensor-core path), at
  // most n + 64 * min(E, n) rows; then 6 pointers per expert for the batched GEMMs.
  const size_t rows = n + (size_t)BM * std::min<size_t>(E, n);
  return align256(sizeof(int) * (3 * (size_t)(E + 1) + 2 * n)) + align256(sizeof(void *) * 6 * (size_t)E) +
         align256(sizeof(float) * rows * 2 * I) + align256(sizeof(float) * rows * I) + align256(sizeof(float) * rows * d);
}

int klc_moe_experts(klc_ctx *ctx, const float *x, const int32_t *idx, const float *w, const void *w13, const void *w2, float *out,
                    void *ws, size_t ws_bytes, int T, int d, int I, int E, int k, int w_f32) {
  int rc = use_device(ctx);
  if (rc) return rc;
  if (!x || !idx || !w || !w13 || !w2 || !out || !ws || T < 1 || d < 1 || I < 1 || E < 1 || k < 1)
    return fail(KLC_E_ARG, "klc_moe_experts: bad pointers or shape");
  if (ws_bytes < klc_moe_workspace_bytes(T, d, I, E, k))
    return fail(KLC_E_ARG, "klc_moe_experts: workspace smaller than klc_moe_workspace_bytes()");
  return klc::moe_experts(ctx, x, idx, w, w13, w2, out, ws, T, d, I, E, k, w_f32, MoeGroups{E, nullptr, nullptr});
}

}  // extern "C"

namespace klc {

int moe_experts(klc_ctx *ctx, const float *x, const int32_t *idx, const float *w, const void *w13, const void *w2, float *out, void *ws,
                int T, int d, int I, int E, int k, int w_f32, const MoeGroups &groups) {
  int rc = KLC_OK;
  const int n = T * k;
  const size_t rows = n + (size_t)BM * std::min(E, n);
  char *p = static_cast<char *>(ws);
  int *off = reinterpret_cast<int *>(p), *tiles = off + (E + 1), *cursor = tiles + (E + 1), *pos = cursor + (E + 1),
      *tok = pos + n;
  p += align256(sizeof(int) * (3 * (size_t)(E + 1) + 2 * n));
  void **ptrs = reinterpret_cast<void **>(p);
  p += align256(sizeof(void *) * 6 * (size_t)E);
  float *gu = reinterpret_cast<float *>(p);
  p += align256(sizeof(float) * rows * 2 * I);
  float *hbuf = reinterpret_cast<float *>(p);
  p += align256(sizeof(float) * rows * I);
  float *ybuf = reinterpret_cast<float *>(p);
  // Few pairs (decode): the chosen experts' weights are read once, straight from idx on the GPU.
  if (!w_f32 && !groups.load && !groups.w13 && moe_small_wanted(T, k, d, I, x, w13, w2, gu)) return moe_small(ctx, x, idx, w, w13, w2, out, gu, T, d, I, k);
  moe_sort_kernel<<<1, 1024, 0, ctx->stream>>>(idx, n, E, off, tiles, cursor, pos, tok, k);
  if ((rc = launched("the MoE token sort"))) return rc;
  if (!w_f32 && ctx->tensor_cores) {
    // The bf16 copies fit in the fp32 buffers they stand for: gathered rows in ybuf (free until
    // the down projections), SwiGLU outputs in hbuf.
    const MoeTc m{x, idx, w, off, tiles, pos, tok, w13, w2, gu, ybuf, hbuf, ybuf, ptrs, out, T, k, d, I, E, BM, groups};
    return tc_moe(ctx, m);
  }
  if (groups.load || groups.w13) return fail(KLC_E_ARG, "quantized MoE experts loaded by groups or read as codes run only on tensor cores");
  // At most n / 64 + E row tiles exist; surplus CTAs leave at once.
  const int max_tiles = (n + BM - 1) / BM + E;
  if (max_tiles > 65535) return fail(KLC_E_ARG, "klc_moe_experts: too many tokens in one call; pass fewer rows");
  GemmArgs up{x, d, tok, w13, (long long)2 * I * d, gu, 2 * I, n, 2 * I, d, 0, 0, 0, off, tiles, E};
  const dim3 grid_up((2 * I + BN - 1) / BN, max_tiles), grid_down((d + BN - 1) / BN, max_tiles);
  if (w_f32) gemm_kernel<float><<<grid_up, GEMM_THREADS, 0, ctx->stream>>>(up);
  else gemm_kernel<bf16><<<grid_up, GEMM_THREADS, 0, ctx->stream>>>(up);
  if ((rc = launched("the MoE gate/up projections"))) return rc;
  silu_mul_kernel<<<blocks_for((size_t)n * I, 256), 256, 0, ctx->stream>>>(gu, hbuf, n, I);
  GemmArgs down{hbuf, I, nullptr, w2, (long long)d * I, ybuf, d, n, d, I, 0, 0, 0, off, tiles, E};
  if (w_f32) gemm_kernel<float><<<grid_down, GEMM_THREADS, 0, ctx->stream>>>(down);
  else gemm_kernel<bf16><<<grid_down, GEMM_THREADS, 0, ctx->stream>>>(down);
  if ((rc = launched("the MoE down projections"))) return rc;
  moe_combine_kernel<<<T, 256, 0, ctx->stream>>>(ybuf, pos, w, out, d, k);
  return launched("the MoE combine");
}

}  // namespace klc
