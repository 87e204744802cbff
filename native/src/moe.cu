// The MoE layer (spec 4): the sigmoid top-k router and the experts (few pairs: moe_small.cu; tensor-core
// mode: tc_ops.cu; else a token sort by expert, grouped GEMMs of gemm_f32.cuh and a weighted combine), and
// the SwiGLU activation, whose kernel the dense MLP (klc_silu_mul) and the experts' CUDA-core path share.
#include <cuda_bf16.h>

#include <algorithm>
#include <climits>
#include <string>

#include "arrivals.cuh"
#include "gemm_f32.cuh"
#include "internal.h"
#include "pdl.cuh"
#include "small_vec.cuh"

namespace {

using bf16 = __nv_bfloat16;
using namespace klc_ops;

// h[t, i] = SiLU(gu[t, i]) * gu[t, I + i]: the gate and up projections come from one GEMM.
__global__ void silu_mul_kernel(const float *gu, float *h, int rows, int I) {
  pdl_wait();
  pdl_trigger();
  const size_t n = (size_t)rows * I;
  for (size_t e = blockIdx.x * (size_t)blockDim.x + threadIdx.x; e < n; e += (size_t)gridDim.x * blockDim.x) {
    const size_t r = e / I, i = e % I;
    h[e] = siluf_(gu[r * 2 * I + i]) * gu[r * 2 * I + I + i];
  }
}

// MoE (spec 4): sigmoid router, choice on score + correction bias, weights from the unbiased
// scores of the chosen experts, renormalised, times the scaling factor. One warp per token: lane l
// scores experts l, l + 32, ... once and keeps them in registers with the best one not yet chosen;
// each of the k rounds takes the best of the lanes' bests with a warp argmax (ties to the lower
// index), and only the lane that gave it looks for its next best. (Every lane rescanning every round
// cost ~19 us a decode step's layer on an H100; a thread per token doing k * E serial steps, half a
// millisecond a step.)
constexpr int ROUTE_WARPS = 4;
constexpr int ROUTE_MAX_K = 16;

// The router's logits computed in the same launch (klc_moe_router, decode): CTA c computes the logits of experts
// 2c and 2c + 1 for the T <= ROUTER_ROWS rows, four warps each splitting d; the last CTA to finish routes row t
// with warp t.
constexpr int ROUTER_WARPS = 8, ROUTER_SPLIT = 4, ROUTER_COLS = ROUTER_WARPS / ROUTER_SPLIT, ROUTER_ROWS = KLC_MOE_BLOCK_MAX_ROWS;
static_assert(ROUTER_ROWS <= ROUTER_WARPS, "the last CTA routes row t with warp t");

struct RouterArgs {
  const float *x;  // [T, d]
  const void *w;   // [E, d], bf16 or fp32 (w_f32)
  int w_f32, d;
  float *logits;   // [T, E], written
  int *arrivals;   // zero between launches
  // klc_moe_router_norm (h not null, x null): the rows are RMSNorm(h + a) * norm_w, computed by every CTA; the
  // last CTA writes h + a to h and the normed rows to y.
  float *h;
  const float *a, *norm_w;
  float eps;
  float *y;
};

// 1 / rms(h[t] + a[t]) of rows t < T into inv (d % 8 == 0, rows 16-byte aligned), every CTA the same bits: the
// CTA's threads take the rows' float4s together (a thread's of every row requested at once), and the warps' sums
// are joined in warp order.
__device__ void router_inv_rms(const RouterArgs &r, int T, int lane, int warp, float *inv) {
  __shared__ float ss_part[ROUTER_WARPS][ROUTER_ROWS];
  const int n4 = r.d / 4;
  float ss[ROUTER_ROWS] = {};
  for (int c = threadIdx.x; c < n4; c += 32 * ROUTER_WARPS) {
#pragma unroll
    for (int t = 0; t < ROUTER_ROWS; ++t) {
      if (t >= T) break;
      const float4 hv = reinterpret_cast<const float4 *>(r.h + (size_t)t * r.d)[c], av = reinterpret_cast<const float4 *>(r.a + (size_t)t * r.d)[c];
      const float v0 = hv.x + av.x, v1 = hv.y + av.y, v2 = hv.z + av.z, v3 = hv.w + av.w;
      ss[t] += v0 * v0 + v1 * v1 + v2 * v2 + v3 * v3;
    }
  }
#pragma unroll
  for (int t = 0; t < ROUTER_ROWS; ++t) {
    const float v = warp_sum(ss[t]);
    if (lane == 0) ss_part[warp][t] = v;
  }
  __syncthreads();
  if ((int)threadIdx.x < T) {
    float sum = 0.f;
    for (int q = 0; q < ROUTER_WARPS; ++q) sum += ss_part[q][threadIdx.x];
    inv[threadIdx.x] = rsqrtf(sum / r.d + r.eps);
  }
  __syncthreads();
}

// Eight consecutive weights of a router row (16-byte aligned) as fp32.
__device__ __forceinline__ void router_w8(const bf16 *w, int c, float f[8]) { klc_small::unpack_bf16x8(*reinterpret_cast<const uint4 *>(w + c), f); }
__device__ __forceinline__ void router_w8(const float *w, int c, float f[8]) {
  const float4 a = *reinterpret_cast<const float4 *>(w + c), b = *reinterpret_cast<const float4 *>(w + c + 4);
  f[0] = a.x, f[1] = a.y, f[2] = a.z, f[3] = a.w, f[4] = b.x, f[5] = b.y, f[6] = b.z, f[7] = b.w;
}

// The normed rows' values at columns c .. c + 7 of row t, as the last CTA writes them to y: norm_w * ((h + a) * inv).
__device__ __forceinline__ void normed8(const RouterArgs &r, int t, int c, float inv, float v[8]) {
  const float4 *h4 = reinterpret_cast<const float4 *>(r.h + (size_t)t * r.d + c), *a4 = reinterpret_cast<const float4 *>(r.a + (size_t)t * r.d + c);
  const float4 *g4 = reinterpret_cast<const float4 *>(r.norm_w + c);
  const float4 h0 = h4[0], h1 = h4[1], a0 = a4[0], a1 = a4[1], g0 = g4[0], g1 = g4[1];
  v[0] = g0.x * ((h0.x + a0.x) * inv), v[1] = g0.y * ((h0.y + a0.y) * inv), v[2] = g0.z * ((h0.z + a0.z) * inv), v[3] = g0.w * ((h0.w + a0.w) * inv);
  v[4] = g1.x * ((h1.x + a1.x) * inv), v[5] = g1.y * ((h1.y + a1.y) * inv), v[6] = g1.z * ((h1.z + a1.z) * inv), v[7] = g1.w * ((h1.w + a1.w) * inv);
}

// This CTA's logits; true in the CTA that arrives last, once every CTA's logits are written. A warp takes runs of 8
// columns of its expert's row (16-byte loads; ROUTER_SPLIT warps an expert), every run's loads issued together.
template <typename WT>
__device__ bool router_logits(const RouterArgs &r, int T, int E, int lane, int warp) {
  __shared__ float part[ROUTER_WARPS][ROUTER_ROWS];
  __shared__ float inv[ROUTER_ROWS];
  if (r.h) router_inv_rms(r, T, lane, warp, inv);
  const int col = blockIdx.x * ROUTER_COLS + warp / ROUTER_SPLIT, quarter = warp % ROUTER_SPLIT, n8 = r.d / 8;
  float acc[ROUTER_ROWS] = {};
  if (col < E) {
    const WT *w = static_cast<const WT *>(r.w) + (size_t)col * r.d;
    if (r.h) {
#pragma unroll 3
      for (int c8 = quarter * 32 + lane; c8 < n8; c8 += 32 * ROUTER_SPLIT) {
        float wv[8];
        router_w8(w, c8 * 8, wv);
#pragma unroll
        for (int t = 0; t < ROUTER_ROWS; ++t) {
          if (t >= T) break;
          float v[8];
          normed8(r, t, c8 * 8, inv[t], v);
          acc[t] = klc_small::dot8(wv, v, acc[t]);
        }
      }
    } else {
#pragma unroll 3
      for (int c8 = quarter * 32 + lane; c8 < n8; c8 += 32 * ROUTER_SPLIT) {
        float wv[8];
        router_w8(w, c8 * 8, wv);
#pragma unroll
        for (int t = 0; t < ROUTER_ROWS; ++t) {
          if (t >= T) break;
          acc[t] = klc_small::dot8(wv, r.x + (size_t)t * r.d + c8 * 8, acc[t]);
        }
      }
    }
  }
#pragma unroll
  for (int t = 0; t < ROUTER_ROWS; ++t) {
    const float v = warp_sum(acc[t]);
    if (lane == 0) part[warp][t] = v;
  }
  __syncthreads();
  if ((int)threadIdx.x < ROUTER_COLS * T) {
    const int cc = threadIdx.x / T, t = threadIdx.x % T, e = blockIdx.x * ROUTER_COLS + cc;
    float sum = 0.f;
    for (int q = 0; q < ROUTER_SPLIT; ++q) sum += part[cc * ROUTER_SPLIT + q][t];
    if (e < E) r.logits[(size_t)t * E + e] = sum;
  }
  if (!klc_small::arrived_last(r.arrivals, gridDim.x)) return false;
  // Every CTA has read h: the residual and the normed rows the experts take, as klc_add_rmsnorm writes them.
  if (r.h) {
    const int n4 = r.d / 4;
#pragma unroll 6
    for (int i = threadIdx.x; i < T * n4; i += blockDim.x) {
      const int t = i / n4, c = i % n4;
      const float4 hv = reinterpret_cast<const float4 *>(r.h)[i], av = reinterpret_cast<const float4 *>(r.a)[i];
      const float4 g = reinterpret_cast<const float4 *>(r.norm_w)[c];
      const float4 v = make_float4(hv.x + av.x, hv.y + av.y, hv.z + av.z, hv.w + av.w);
      reinterpret_cast<float4 *>(r.h)[i] = v;
      reinterpret_cast<float4 *>(r.y)[i] = make_float4(g.x * (v.x * inv[t]), g.y * (v.y * inv[t]), g.z * (v.z * inv[t]), g.w * (v.w * inv[t]));
    }
  }
  return true;
}

// FUSED: the logits are computed first (router_logits), and the last CTA routes every row.
template <int PER_LANE, bool FUSED>  // E <= 32 * PER_LANE
__global__ void __launch_bounds__(FUSED ? 32 * ROUTER_WARPS : 32 * ROUTE_WARPS, 1)
    moe_route_kernel(const float *logits, const float *bias, int *idx, float *wout, int T, int E, int k, int renorm, float scaling,
                     RouterArgs router) {
  pdl_wait();
  pdl_trigger();
  constexpr int WARPS = FUSED ? ROUTER_WARPS : ROUTE_WARPS;
  __shared__ int s_chosen[WARPS][ROUTE_MAX_K];
  __shared__ float s_score[WARPS][ROUTE_MAX_K];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if constexpr (FUSED) {
    if (!(router.w_f32 ? router_logits<float>(router, T, E, lane, warp) : router_logits<__nv_bfloat16>(router, T, E, lane, warp))) return;
  }
  const int t = FUSED ? warp : blockIdx.x * ROUTE_WARPS + warp;
  if (t >= T) return;
  const float *lg = logits + (size_t)t * E;
  // Bit j of `taken` marks expert lane + 32 j as chosen (or past E).
  float score[PER_LANE];
  unsigned taken = 0;
#pragma unroll
  for (int j = 0; j < PER_LANE; ++j) {
    const int e = lane + 32 * j;
    score[j] = e < E ? sigmoidf_(lg[e]) + bias[e] : 0.f;
    if (e >= E) taken |= 1u << j;
  }
  int best = INT_MAX;  // this lane's best expert not yet chosen, INT_MAX when none is left
  float bv = -INFINITY;
  auto rescan = [&] {
    best = INT_MAX;
    bv = -INFINITY;
#pragma unroll
    for (int j = 0; j < PER_LANE; ++j) {
      if (taken >> j & 1u) continue;
      if (best == INT_MAX || score[j] > bv) {  // strict: ties keep the lower index (j ascends with e)
        bv = score[j];
        best = lane + 32 * j;
      }
    }
  };
  rescan();
  int mine = 0;  // lane s < k: the expert chosen in round s
  for (int s = 0; s < k; ++s) {
    int wi = best;
    float wv = bv;
    for (int off = 16; off > 0; off >>= 1) {
      const float ov = __shfl_xor_sync(0xffffffffu, wv, off);
      const int oi = __shfl_xor_sync(0xffffffffu, wi, off);
      if (oi != INT_MAX && (wi == INT_MAX || ov > wv || (ov == wv && oi < wi))) {
        wv = ov;
        wi = oi;
      }
    }
    if (lane == s) mine = wi;
    if ((wi & 31) == lane) {
      taken |= 1u << (wi >> 5);
      rescan();
    }
  }
  // Reported in ascending expert order, as the reference does: the chosen experts are distinct,
  // so each one's place is the number of smaller ones.
  int place = 0;
  for (int s = 0; s < k; ++s) place += __shfl_sync(0xffffffffu, mine, s) < mine;
  if (lane < k) {
    s_chosen[warp][place] = mine;
    s_score[warp][place] = sigmoidf_(lg[mine]);
  }
  __syncwarp();
  float sum = 0.f;
  for (int s = 0; s < k; ++s) sum += s_score[warp][s];
  const float norm = renorm ? sum + 1e-20f : 1.f;
  if (lane < k) {
    idx[(size_t)t * k + lane] = s_chosen[warp][lane];
    wout[(size_t)t * k + lane] = s_score[warp][lane] / norm * scaling;
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

size_t align256(size_t b) { return (b + 255) & ~(size_t)255; }

int moe_router(klc_ctx *ctx, RouterArgs r, const float *bias, int32_t *idx, float *w, int T, int E, int k, int renorm, float scaling,
               const char *name) {
  int rc = klc::use_device(ctx);
  if (rc) return rc;
  if (!r.w || !bias || !r.logits || !idx || !w || T < 1 || T > ROUTER_ROWS || r.d < 1 || E < 1 || E > 32 * 8 || k < 1 || k > ROUTE_MAX_K || k > E)
    return klc::fail(KLC_E_ARG, std::string(name) + ": bad pointers or shape (1.." + std::to_string(ROUTER_ROWS) +
                               " rows, at most 256 experts, top-k at most 16)");
  // Rows are read in runs of 8 values with 16-byte loads.
  const bool aligned = klc_small::aligned16(r.w) && klc_small::aligned16(r.x ? r.x : r.h) && (!r.a || klc_small::aligned16(r.a)) &&
                       (!r.norm_w || klc_small::aligned16(r.norm_w)) && (!r.y || klc_small::aligned16(r.y));
  if (r.d % 8 != 0 || !aligned)
    return klc::fail(KLC_E_ARG, std::string(name) + ": d must be a multiple of 8 and the rows and weights 16-byte aligned");
  if ((rc = klc::arrival_counters(ctx, &r.arrivals))) return rc;
  const int blocks = (E + ROUTER_COLS - 1) / ROUTER_COLS;
  return launched(klc::launch_pdl(ctx, moe_route_kernel<8, true>, blocks, 32 * ROUTER_WARPS, 0, r.logits, bias, idx, w, T, E, k, renorm, scaling, r),
                  "the MoE router (logits and top-k in one launch)");
}

}  // namespace

using namespace klc;

extern "C" {

int klc_silu_mul(klc_ctx *ctx, const float *gu, float *h, int rows, int I) {
  int rc = use_device(ctx);
  if (rc) return rc;
  if (!gu || !h || rows < 1 || I < 1) return fail(KLC_E_ARG, "klc_silu_mul: bad pointers or shape");
  return launched(launch_pdl(ctx, silu_mul_kernel, blocks_for((size_t)rows * I, 256), 256, 0, gu, h, rows, I), "the SwiGLU activation");
}

int klc_moe_route(klc_ctx *ctx, const float *logits, const float *bias, int32_t *idx, float *w, int T, int E, int k, int renorm,
                  float scaling) {
  int rc = use_device(ctx);
  if (rc) return rc;
  if (!logits || !bias || !idx || !w || T < 1 || E < 1 || E > 32 * 32 || k < 1 || k > ROUTE_MAX_K || k > E)
    return fail(KLC_E_ARG, "klc_moe_route: bad pointers or shape (at most 1024 experts, top-k at most 16)");
  const int blocks = (T + ROUTE_WARPS - 1) / ROUTE_WARPS, threads = 32 * ROUTE_WARPS;
  const RouterArgs none{};
  const cudaError_t e = E <= 32 * 8
                            ? launch_pdl(ctx, moe_route_kernel<8, false>, blocks, threads, 0, logits, bias, idx, w, T, E, k, renorm, scaling, none)
                            : launch_pdl(ctx, moe_route_kernel<32, false>, blocks, threads, 0, logits, bias, idx, w, T, E, k, renorm, scaling, none);
  return launched(e, "the MoE router");
}

int klc_moe_router(klc_ctx *ctx, const float *x, const void *w_router, int w_f32, const float *bias, float *logits, int32_t *idx, float *w,
                   int T, int d, int E, int k, int renorm, float scaling) {
  if (!x) return fail(KLC_E_ARG, "klc_moe_router: x is null");
  return moe_router(ctx, RouterArgs{x, w_router, w_f32, d, logits}, bias, idx, w, T, E, k, renorm, scaling, "klc_moe_router");
}

int klc_moe_router_norm(klc_ctx *ctx, float *h, const float *a, const float *norm_w, float eps, float *y, const void *w_router, int w_f32,
                        const float *bias, float *logits, int32_t *idx, float *w, int T, int d, int E, int k, int renorm, float scaling) {
  if (!h || !a || !norm_w || !y) return fail(KLC_E_ARG, "klc_moe_router_norm: h, a, norm_w and y must be given");
  const RouterArgs r{nullptr, w_router, w_f32, d, logits, nullptr, h, a, norm_w, eps, y};
  return moe_router(ctx, r, bias, idx, w, T, E, k, renorm, scaling, "klc_moe_router_norm");
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

int klc_moe_block(klc_ctx *ctx, const float *x, const int32_t *idx, const float *w, const void *w13, const void *w2, const void *shared_w13,
                  const void *shared_w2, float *out, void *ws, size_t ws_bytes, int T, int d, int I, int E, int k) {
  int rc = use_device(ctx);
  if (rc) return rc;
  if (!x || !idx || !w || !w13 || !w2 || !shared_w13 || !shared_w2 || !out || !ws || T < 1 || T > KLC_MOE_BLOCK_MAX_ROWS || d < 1 || I < 1 ||
      E < 1 || k < 1)
    return fail(KLC_E_ARG, "klc_moe_block: bad pointers or shape (1.." + std::to_string(KLC_MOE_BLOCK_MAX_ROWS) + " rows)");
  if (ws_bytes < klc_moe_workspace_bytes(T, d, I, E, k)) return fail(KLC_E_ARG, "klc_moe_block: workspace smaller than klc_moe_workspace_bytes()");
  const MoeRooms room = moe_rooms(ws, T * k, E, I);
  if (moe_small_wanted(T, k, d, I, x, w13, w2, room.gu) && moe_small_wanted(T, k, d, I, x, shared_w13, shared_w2, room.gu))
    return moe_small(ctx, x, idx, w, w13, w2, shared_w13, shared_w2, out, room, T, d, I, k);
  // The shared expert alone writes out (its gate/up rows and SwiGLU in the workspace), then the routed experts add to it.
  float *gu = room.gu, *hs = room.gu + (size_t)T * 2 * I;
  if ((rc = klc_linear(ctx, x, d, shared_w13, gu, 2 * I, T, 2 * I, d, 1, 0, 0, 0, 0, 0)) || (rc = klc_silu_mul(ctx, gu, hs, T, I)) ||
      (rc = klc_linear(ctx, hs, I, shared_w2, out, d, T, d, I, 1, 0, 0, 0, 0, 0)))
    return rc;
  return klc_moe_experts(ctx, x, idx, w, w13, w2, out, ws, ws_bytes, T, d, I, E, k, 0);
}

}  // extern "C"

namespace klc {

MoeRooms moe_rooms(void *ws, int n, int E, int I) {
  const size_t rows = n + (size_t)BM * std::min(E, n);
  char *p = static_cast<char *>(ws);
  p += align256(sizeof(int) * (3 * (size_t)(E + 1) + 2 * (size_t)n));
  void **ptrs = reinterpret_cast<void **>(p);
  p += align256(sizeof(void *) * 6 * (size_t)E);
  float *gu = reinterpret_cast<float *>(p);
  p += align256(sizeof(float) * rows * 2 * I);
  float *h = reinterpret_cast<float *>(p);
  p += align256(sizeof(float) * rows * I);
  return {ptrs, gu, h, reinterpret_cast<float *>(p)};
}

int arrival_counters(klc_ctx *ctx, int **out) {
  if (!ctx->arrivals) {
    cudaError_t e = cudaMalloc(&ctx->arrivals, KLC_ARRIVALS * sizeof(int));
    if (e == cudaSuccess) e = cudaMemsetAsync(ctx->arrivals, 0, KLC_ARRIVALS * sizeof(int), ctx->stream);
    if (e != cudaSuccess) {
      if (ctx->arrivals) cudaFree(ctx->arrivals);
      ctx->arrivals = nullptr;
      return fail_cuda(e, "allocating the arrival counters of the MoE router and experts");
    }
  }
  *out = ctx->arrivals;
  return KLC_OK;
}

int moe_experts(klc_ctx *ctx, const float *x, const int32_t *idx, const float *w, const void *w13, const void *w2, float *out, void *ws,
                int T, int d, int I, int E, int k, int w_f32, const MoeGroups &groups) {
  int rc = KLC_OK;
  const int n = T * k;
  char *p = static_cast<char *>(ws);
  int *off = reinterpret_cast<int *>(p), *tiles = off + (E + 1), *cursor = tiles + (E + 1), *pos = cursor + (E + 1),
      *tok = pos + n;
  const MoeRooms room = moe_rooms(ws, n, E, I);
  void **ptrs = room.ptrs;
  float *gu = room.gu, *hbuf = room.h, *ybuf = room.y;
  // Few pairs (decode): the chosen experts' weights are read once, straight from idx on the GPU.
  if (!w_f32 && !groups.load && !groups.w13 && moe_small_wanted(T, k, d, I, x, w13, w2, gu))
    return moe_small(ctx, x, idx, w, w13, w2, nullptr, nullptr, out, room, T, d, I, k);
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
