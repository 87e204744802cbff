// The MoE experts for few (token, expert) pairs: decode, batched decode of a few sequences, short
// prompts. There the work is reading the chosen experts' bf16 weights once, so it runs as two
// GEMV-style kernels straight from the routing indices on the GPU, with no host synchronisation:
//   up:   one CTA per distinct chosen expert and block of 8 intermediate rows; a warp streams the
//         W1 and W3 rows once for every token that chose the expert and writes SiLU(g) * u (fp32);
//   down: one warp per output column streams that column's W2 row of every chosen expert once,
//         in ascending expert order, and adds w[t, s] * (W2_e h) into out[t] in registers, so the
//         combine needs no atomics and sums each token's experts in the reference's slot order.
// Activations and accumulation stay fp32 (as exact as the fp32 CUDA-core path), in both modes.
#include <cuda_bf16.h>

#include <cstdlib>
#include <cstring>

#include "internal.h"
#include "moe_pairs.cuh"
#include "pdl.cuh"
#include "small_vec.cuh"

namespace {

using bf16 = __nv_bfloat16;
using namespace klc_small;

constexpr int WARPS = 8, THREADS = 32 * WARPS;
constexpr int MAX_PAIRS = 256;   // shared-memory room for the (token, slot) pairs
constexpr int MAX_TOKENS = 32;   // the down kernel keeps token t's sum in lane t
constexpr int UP_TOKENS = 4;     // tokens of one expert per pass over its W1/W3 rows
constexpr int MAX_DOWN_VECS = 8; // 16-byte vectors of one W2 row per lane: I <= 2048

// Pairs up to this many (T * k) take this path; above it the expert-grouped GEMMs on tensor cores
// win. Measured on an H200 with top-8 of 256 (test/gpu/ops_check.py --small-batch): 456 against
// 527 us at 128 pairs, 854 against 779 us at 256 (test/gpu/results/speed_h200.md, milestone 5).
constexpr int SMALL_MAX_PAIRS = 128;
static_assert(SMALL_MAX_PAIRS <= MAX_PAIRS, "the kernels keep every pair in shared memory");

// h[p, i] = SiLU(W1_e[i] . x[t]) * (W3_e[i] . x[t]) for every pair p = t * k + s with idx[p] = e.
// blockIdx.y is a pair; only the first pair naming an expert works, for all pairs naming it. With a
// shared expert (s13, [2I, d]) the first CTA rows compute its rows h[n + t], UP_TOKENS tokens each (moe_pairs.cuh
// cta_row).
// At most 64 registers, so that 4 CTAs share an SM: one token's 8 experts x 128 row blocks then
// fill two whole waves on 132 SMs (at 80 registers, 3 per SM, the third wave ran 59% full).
template <bool WITH_SHARED>
__global__ void __launch_bounds__(THREADS, 4) moe_small_up_kernel(const float *__restrict__ x, const int *__restrict__ idx,
                                                                const bf16 *__restrict__ w13, const bf16 *__restrict__ s13,
                                                                float *__restrict__ h, int n, int k, int T, int d, int I) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, row = blockIdx.x * WARPS + warp;
  const CtaRow r = cta_row<WITH_SHARED, UP_TOKENS>(n, T);
  const bool shared = WITH_SHARED && r.shared;
  // The shared expert's rows are requested before waiting for the router, a routed expert's as soon as its index
  // is read, while warp 0 collects the pairs.
  if (shared && row < I) prefetch_gate_up(s13, (size_t)d * sizeof(bf16), 0, row, I, lane);
  pdl_wait();
  pdl_trigger();
  __shared__ int pairs[MAX_PAIRS];
  __shared__ int count, repeated;
  const int e = shared ? 0 : idx[r.me];
  if (!shared && row < I) prefetch_gate_up(w13, (size_t)d * sizeof(bf16), e, row, I, lane);
  if (warp == 0) collect_pairs(idx, r, e, n, lane, pairs, count, repeated);
  __syncthreads();
  if (repeated || row >= I) return;
  const bf16 *wg = (shared ? s13 : w13) + ((size_t)e * 2 * I + row) * d;
  const bf16 *wu = wg + (size_t)I * d;
  const int nv = d / 8;
  for (int p0 = 0; p0 < count; p0 += UP_TOKENS) {
    const int np = min(UP_TOKENS, count - p0);
    const float *xr[UP_TOKENS];
#pragma unroll
    for (int j = 0; j < UP_TOKENS; ++j) xr[j] = x + (size_t)token_of<WITH_SHARED>(pairs[p0 + min(j, np - 1)], n, k) * d;
    float ag[UP_TOKENS] = {}, au[UP_TOKENS] = {};
#pragma unroll 3
    for (int v = lane; v < nv; v += 32) {
      float fg[8], fu[8];
      unpack_bf16x8(load_stream(wg + (size_t)v * 8), fg);
      unpack_bf16x8(load_stream(wu + (size_t)v * 8), fu);
#pragma unroll
      for (int j = 0; j < UP_TOKENS; ++j) {
        if (j < np) {
          ag[j] = dot8(fg, xr[j] + v * 8, ag[j]);
          au[j] = dot8(fu, xr[j] + v * 8, au[j]);
        }
      }
    }
#pragma unroll
    for (int j = 0; j < UP_TOKENS; ++j) {
      if (j >= np) break;
      const float g = group_sum<32>(ag[j]), u = group_sum<32>(au[j]);
      if (lane == 0) h[(size_t)pairs[p0 + j] * I + row] = g / (1.f + expf(-g)) * u;
    }
  }
}

// out[t, c] += sum_s w[t, s] * (W2_{idx[t, s]}[c] . h[t * k + s]) for the warp's column c. With a shared
// expert (s2, [d, I]) it is one more expert after the routed ones, of weight 1 and h rows n + t, and
// out[t, c] is written rather than added to: the kernel then computes the whole MoE block.
template <int VECS, bool WITH_SHARED>
__global__ void __launch_bounds__(THREADS) moe_small_down_kernel(const float *__restrict__ h, const int *__restrict__ idx,
                                                                  const float *__restrict__ wt, const bf16 *__restrict__ w2,
                                                                  const bf16 *__restrict__ s2, float *__restrict__ out, int n, int k,
                                                                  int T, int d, int I) {
  // The shared expert's row of this warp's column does not depend on the router: requested before waiting.
  if constexpr (WITH_SHARED) {
    const int c = blockIdx.x * WARPS + (threadIdx.x >> 5);
    if (c < d) prefetch_l2_span(s2 + (size_t)c * I, (size_t)I * sizeof(bf16), threadIdx.x & 31);
  }
  pdl_wait();
  pdl_trigger();
  __shared__ int s_idx[MAX_PAIRS], order[MAX_PAIRS];
  const int m = WITH_SHARED ? n + T : n;
  sort_pairs<THREADS>(idx, n, m, s_idx, order);
  const int lane = threadIdx.x & 31, col = blockIdx.x * WARPS + (threadIdx.x >> 5);
  if (col >= d) return;
  const int nv = I / 8;
  auto load = [&](int e, uint4 *dst) {
    const bf16 *row = WITH_SHARED && e == SHARED_EXPERT ? s2 + (size_t)col * I : w2 + ((size_t)e * d + col) * I;
#pragma unroll
    for (int i = 0; i < VECS; ++i) {
      const int v = lane + 32 * i;
      if (v < nv) dst[i] = load_stream(row + (size_t)v * 8);
    }
  };
  // The expert after next is requested into L2 (as in moe_small_wq.cu's column kernel).
  auto prefetch = [&](int e) {
    const bf16 *row = WITH_SHARED && e == SHARED_EXPERT ? s2 + (size_t)col * I : w2 + ((size_t)e * d + col) * I;
    prefetch_l2_span(row, (size_t)I * sizeof(bf16), lane);
  };
  float acc = 0.f;  // lane t: token t's sum, its experts added in ascending order, the shared one last
  uint4 cur[VECS] = {}, next[VECS] = {};
  load(s_idx[order[0]], cur);
  for (int p = 0; p < m;) {
    const int q = next_expert_at(s_idx, order, m, p);
    if (q < m) {
      load(s_idx[order[q]], next);  // in flight while this expert's dots run
      const int q2 = next_expert_at(s_idx, order, m, q);
      if (q2 < m) prefetch(s_idx[order[q2]]);
    }
    for (int s = p; s < q; ++s) {
      const int pair = order[s];
      const float *hr = h + (size_t)pair * I;
      float part = 0.f;
#pragma unroll
      for (int i = 0; i < VECS; ++i) {
        const int v = lane + 32 * i;
        if (v < nv) {
          float f[8];
          unpack_bf16x8(cur[i], f);
          part = dot8(f, hr + v * 8, part);
        }
      }
      const float y = group_sum<32>(part);
      if (lane == token_of<WITH_SHARED>(pair, n, k)) acc = !WITH_SHARED || pair < n ? fmaf(wt[pair], y, acc) : acc + y;
    }
#pragma unroll
    for (int i = 0; i < VECS; ++i) cur[i] = next[i];
    p = q;
  }
  if (lane < T) {
    float *o = out + (size_t)lane * d + col;
    *o = WITH_SHARED ? acc : *o + acc;
  }
}

// The down projections by expert (KLC_MOE_DOWN=experts), as moe_small_wq.cu's kernel of that name: a CTA per block
// of 8 * CPW columns and chosen expert reads that expert's W2 rows of the block once (a warp CPW rows, all in
// flight), writes every pair's y[p, c] into ys, and the block's last CTA adds each token's terms in this file's
// column kernel's order (moe_pairs.cuh down_by_expert): the same bits.
template <int VECS, int CPW, bool WITH_SHARED>
__global__ void __launch_bounds__(THREADS) moe_small_down_expert_kernel(const float *__restrict__ h, const int *__restrict__ idx,
                                                                         const float *__restrict__ wt, const bf16 *__restrict__ w2,
                                                                         const bf16 *__restrict__ s2, float *ys, float *__restrict__ out,
                                                                         int *arrivals, int n, int k, int T, int d, int I) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nv = I / 8, c0 = blockIdx.x * WARPS * CPW;
  const CtaRow cta = cta_row<WITH_SHARED, DOWN_SHARED_TOKENS>(n, T);
  const bool shared = WITH_SHARED && cta.shared;
  uint4 rows[CPW][VECS] = {};
  auto load = [&](int e) {
    const bf16 *base = shared ? s2 : w2 + (size_t)e * d * I;
#pragma unroll
    for (int j = 0; j < CPW; ++j) {
      const int col = c0 + warp + WARPS * j;
      if (col >= d) break;
#pragma unroll
      for (int i = 0; i < VECS; ++i) {
        const int v = lane + 32 * i;
        if (v < nv) rows[j][i] = load_stream(base + (size_t)col * I + (size_t)v * 8);
      }
    }
  };
  auto part = [&](int j, int, int, const float *hr) {
    float acc = 0.f;
#pragma unroll
    for (int i = 0; i < VECS; ++i) {
      const int v = lane + 32 * i;
      if (v < nv) {
        float f[8];
        unpack_bf16x8(rows[j][i], f);
        acc = dot8(f, hr + v * 8, acc);
      }
    }
    return acc;
  };
  down_by_expert<CPW, WARPS, MAX_PAIRS, WITH_SHARED>(load, part, cta, h, idx, wt, ys, out, arrivals, n, k, T, d, I);
}

using klc::launched;
using klc::launch_pdl;

template <bool WITH_SHARED>
int moe_small_launch(klc_ctx *ctx, const float *x, const int *idx, const float *w, const bf16 *w13, const bf16 *w2, const bf16 *s13,
                     const bf16 *s2, float *out, const klc::MoeRooms &room, int T, int d, int I, int k) {
  const int n = T * k;
  float *h = room.gu;
  const dim3 up_grid((I + WARPS - 1) / WARPS, n + shared_slices<WITH_SHARED, UP_TOKENS>(T));
  int rc = launched(launch_pdl(ctx, moe_small_up_kernel<WITH_SHARED>, up_grid, THREADS, 0, x, idx, w13, s13, h, n, k, T, d, I),
                    "the MoE gate/up projections (small batch)");
  if (rc) return rc;
  // By expert a warp keeps 2 rows of bf16 W2 in flight for I <= 1024 (as many bytes as the quantized kernel's 4), else 1.
  const bool wide = I > 32 * 8 * 4;
  const int cols = WARPS * (wide ? 1 : 2), blocks = (d + cols - 1) / cols;
  int *arrivals = nullptr;
  if ((rc = klc::moe_down_arrivals(ctx, T, blocks, &arrivals))) return rc;
  if (arrivals) {
    const dim3 grid(blocks, n + shared_slices<WITH_SHARED, DOWN_SHARED_TOKENS>(T));
    const cudaError_t e =
        wide ? launch_pdl(ctx, moe_small_down_expert_kernel<MAX_DOWN_VECS, 1, WITH_SHARED>, grid, THREADS, 0, h, idx, w, w2, s2, room.y, out,
                          arrivals, n, k, T, d, I)
             : launch_pdl(ctx, moe_small_down_expert_kernel<4, 2, WITH_SHARED>, grid, THREADS, 0, h, idx, w, w2, s2, room.y, out, arrivals, n, k,
                          T, d, I);
    return launched(e, "the MoE down projections (small batch, by expert)");
  }
  const dim3 grid((d + WARPS - 1) / WARPS);
  const cudaError_t e =
      !wide ? launch_pdl(ctx, moe_small_down_kernel<4, WITH_SHARED>, grid, THREADS, 0, h, idx, w, w2, s2, out, n, k, T, d, I)
                      : launch_pdl(ctx, moe_small_down_kernel<MAX_DOWN_VECS, WITH_SHARED>, grid, THREADS, 0, h, idx, w, w2, s2, out, n, k, T, d, I);
  return launched(e, "the MoE down projections (small batch)");
}

}  // namespace

namespace klc {

bool small_batch_enabled() {
  const char *v = std::getenv("KLC_SMALL_BATCH");
  return !(v && v[0] == '0');
}

// By expert from two rows on: the column kernel reads every pair's h row once per warp (at 8 rows ~600 MB from L2
// a layer), the kernel by expert once per CTA, and on an H100 it was 5% (INT8) and 12% (INT4 g32) faster at 8 rows
// and 2% slower (INT8) at one (test/gpu/results/round-h100-2026-12-08m, blockspeed).
int moe_down_arrivals(klc_ctx *ctx, int T, int blocks, int **out) {
  *out = nullptr;
  const char *v = std::getenv("KLC_MOE_DOWN");
  const bool forced_experts = v && std::strcmp(v, "experts") == 0, forced_columns = v && std::strcmp(v, "columns") == 0;
  const bool experts = forced_experts || (!forced_columns && T >= 2);
  if (!experts || blocks >= KLC_ARRIVALS) return KLC_OK;
  int *all = nullptr;
  const int rc = arrival_counters(ctx, &all);
  if (rc == KLC_OK) *out = all + 1;  // [0] is the router's
  return rc;
}

bool moe_small_wanted(int T, int k, int d, int I, const void *x, const void *w13, const void *w2, const void *h) {
  return small_batch_enabled() && T * k <= SMALL_MAX_PAIRS && T <= MAX_TOKENS && d % 8 == 0 && I % 8 == 0 &&
         I <= 32 * 8 * MAX_DOWN_VECS && aligned16(x) && aligned16(w13) && aligned16(w2) && aligned16(h);
}

int moe_small(klc_ctx *ctx, const float *x, const int *idx, const float *w, const void *w13, const void *w2, const void *s13,
              const void *s2, float *out, const MoeRooms &room, int T, int d, int I, int k) {
  const bf16 *up = static_cast<const bf16 *>(w13), *down = static_cast<const bf16 *>(w2);
  const bf16 *sup = static_cast<const bf16 *>(s13), *sdown = static_cast<const bf16 *>(s2);
  return sup ? moe_small_launch<true>(ctx, x, idx, w, up, down, sup, sdown, out, room, T, d, I, k)
             : moe_small_launch<false>(ctx, x, idx, w, up, down, sup, sdown, out, room, T, d, I, k);
}

}  // namespace klc
