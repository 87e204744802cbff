// MLA over the latent cache (spec 3): appending normalised latent rows (a call's rows, or one row
// per cache for a decode step), and attention in the absorbed form, split over the key range with
// the splits' partial softmax sums joined after (klc_mla_splits, klc_mla_workspace_bytes).
#include <cuda_bf16.h>

#include <cfloat>
#include <string>

#include "internal.h"
#include "pdl.cuh"
#include "mla_cache.cuh"
#include "ops_common.cuh"

namespace {

using bf16 = __nv_bfloat16;
using namespace klc_ops;

// Appends MLA latent rows (spec 3): cache row r = [RMSNorm(ckv[r, :L]) * w ; ckv[r, L:D]], rounded
// to the cache's type. The norm's sums and products are rmsnorm_kernel's (norm.cu), in the same order, so
// the fp32 form stores exactly what klc_rmsnorm and klc_copy2d would.
template <typename CT>
__device__ void append_latent_row(const float *xr, const float *w, CT *yr, int D, int L, float eps) {
  const float inv = rsqrtf(block_sum(row_squares(xr, L)) / L + eps);
  for (int c0 = threadIdx.x; c0 < D; c0 += NORM_PER * (int)blockDim.x) {
    float v[NORM_PER], g[NORM_PER];
    load_tile(xr, c0, D, v);
    load_tile(w, c0, L, g);
#pragma unroll
    for (int i = 0; i < NORM_PER; ++i) {
      const int c = c0 + i * (int)blockDim.x;
      if (c < D) klc::cache_store(yr + c, c < L ? g[i] * (v[i] * inv) : v[i]);
    }
  }
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
  pdl_wait();
  pdl_trigger();
  const int b = blockIdx.x;
  append_latent_row(ckv + (size_t)b * D, w, static_cast<CT *>(to.cache[b]) + (size_t)pos[b] * D, D, L, eps);
}

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

using klc::launched;

}  // namespace

using namespace klc;

extern "C" {

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
  const cudaError_t e = cache_type == KLC_CACHE_BF16 ? launch_pdl(ctx, mla_append_at_kernel<bf16>, B, 256, 0, ckv, w, to, positions, D, L, eps)
                                                     : launch_pdl(ctx, mla_append_at_kernel<float>, B, 256, 0, ckv, w, to, positions, D, L, eps);
  return launched(e, "appending the decode step's MLA latent rows");
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

}  // extern "C"
