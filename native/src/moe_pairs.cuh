// The (token, slot) pairs of the small-batch MoE kernels (moe_small.cu, moe_small_wq.cu): which ones a CTA of
// the up kernels (and of the down kernels by expert) works for, and the order in which the down kernels add them.
#pragma once

#include <climits>

#include "arrivals.cuh"
#include "pdl.cuh"
#include "small_vec.cuh"

namespace klc_small {

// The shared expert's key among the routed experts' indices: after every one of them.
constexpr int SHARED_EXPERT = INT_MAX;

// The token of h's row p: routed pairs p = t * k + s come first, then the shared expert's row n + t of token t.
template <bool WITH_SHARED>
__device__ __forceinline__ int token_of(int p, int n, int k) { return !WITH_SHARED || p < n ? p / k : p - n; }

// What a CTA row (blockIdx.y) of the small-batch kernels works for: routed pair `me`, or (shared) the shared expert's
// rows n + t for tokens t in [t0, t1).
struct CtaRow {
  int me, t0, t1;
  bool shared;
};

// With the shared expert, its rows come first, PER tokens to a CTA row, then one CTA row per routed pair: a CTA of
// the shared expert works for up to PER tokens where a routed expert's works for about one, and when they came
// last (one CTA row for every token) they were the kernels' tail at 8 rows.
template <bool WITH_SHARED, int PER>
__host__ __device__ constexpr int shared_slices(int T) { return WITH_SHARED ? (T + PER - 1) / PER : 0; }

template <bool WITH_SHARED, int PER>
__device__ __forceinline__ CtaRow cta_row(int n, int T) {
  const int y = blockIdx.y, slices = shared_slices<WITH_SHARED, PER>(T);
  if (y < slices) return {n, y * PER, min(T, (y + 1) * PER), true};
  return {y - slices, 0, 0, false};
}

// The gate and up rows `row` of expert e in a stacked W13 ([E * 2I] rows of row_bytes), requested into L2 by the
// warp's lanes: they do not depend on which pairs chose the expert.
__device__ __forceinline__ void prefetch_gate_up(const void *w13, size_t row_bytes, int e, int row, int I, int lane) {
  const char *gate = static_cast<const char *>(w13) + ((size_t)e * 2 * I + row) * row_bytes;
  prefetch_l2_span(gate, row_bytes, lane);
  prefetch_l2_span(gate + (size_t)I * row_bytes, row_bytes, lane);
}

// Run by warp 0 of the CTA of row r (routed: idx[r.me] = e): pairs gets every pair j >= r.me that chose e, count
// their number, repeated whether a pair before r.me chose e too (that pair's CTA does the work). A CTA of the
// shared expert takes its rows n + t of tokens t in [r.t0, r.t1).
__device__ __forceinline__ void collect_pairs(const int *idx, const CtaRow &r, int e, int n, int lane, int *pairs, int &count, int &repeated) {
  if (r.shared) {
    for (int t = r.t0 + lane; t < r.t1; t += 32) pairs[t - r.t0] = n + t;
    if (lane == 0) {
      count = r.t1 - r.t0;
      repeated = 0;
    }
    return;
  }
  const int me = r.me;
  int c = 0;
  bool earlier = false;
  for (int base = 0; base < n; base += 32) {
    const int j = base + lane;
    const bool same = j < n && idx[j] == e;
    earlier |= same && j < me;
    const unsigned later = __ballot_sync(0xffffffffu, same && j >= me);
    if (same && j >= me) pairs[c + __popc(later & ((1u << lane) - 1u))] = j;
    c += __popc(later);
  }
  earlier = __any_sync(0xffffffffu, earlier);
  if (lane == 0) {
    count = c;
    repeated = earlier;
  }
}

// Run by the whole CTA (THREADS threads): s_idx[j] the expert of pair j (SHARED_EXPERT for the m - n shared
// expert rows after the routed pairs), and order[] the m pairs by (expert, pair): each expert's pairs side by
// side, experts ascending.
template <int THREADS>
__device__ __forceinline__ void sort_pairs(const int *idx, int n, int m, int *s_idx, int *order) {
  for (int j = threadIdx.x; j < m; j += THREADS) s_idx[j] = j < n ? idx[j] : SHARED_EXPERT;
  __syncthreads();
  for (int j = threadIdx.x; j < m; j += THREADS) {
    const int e = s_idx[j];
    int pos = 0;
    for (int q = 0; q < m; ++q) {
      const int f = s_idx[q];
      pos += f < e || (f == e && q < j);
    }
    order[pos] = j;
  }
  __syncthreads();
}

// The first position after p in order[] (sort_pairs) whose pair chose another expert than p's: where the down
// kernels by column find the next expert to read.
__device__ __forceinline__ int next_expert_at(const int *s_idx, const int *order, int m, int p) {
  const int e = s_idx[order[p]];
  int q = p + 1;
  while (q < m && s_idx[order[q]] == e) ++q;
  return q;
}

// Run by the whole CTA (THREADS threads) of a down kernel by expert that arrived last for columns [c0, c0 + cols):
// out[t, c] gets token t's terms ys[pair, c] added in the column kernels' order — its routed pairs by (expert, slot),
// each times wt[pair], then (WITH_SHARED) its shared expert row n + t — and is written (WITH_SHARED) or added to.
// order is shared memory for n ints. ys is read with __ldcg: other CTAs wrote it (arrivals.cuh).
template <bool WITH_SHARED, int THREADS>
__device__ __forceinline__ void combine_columns(const int *idx, const float *wt, const float *ys, float *out, int n, int k, int T, int d,
                                                int c0, int cols, int *order) {
  for (int q = threadIdx.x; q < n; q += THREADS) {
    const int t = q / k, s = q % k, es = idx[q];
    int rank = 0;
    for (int r = 0; r < k; ++r) {
      const int er = idx[t * k + r];
      rank += er < es || (er == es && r < s);
    }
    order[t * k + rank] = s;
  }
  __syncthreads();
  for (int item = threadIdx.x; item < cols * T; item += THREADS) {
    const int t = item / cols, col = c0 + item % cols;
    float acc = 0.f;
    for (int r = 0; r < k; ++r) {
      const int pair = t * k + order[t * k + r];
      acc = fmaf(wt[pair], __ldcg(ys + (size_t)pair * d + col), acc);
    }
    float *o = out + (size_t)t * d + col;
    *o = WITH_SHARED ? acc + __ldcg(ys + (size_t)(n + t) * d + col) : *o + acc;
  }
}

// The shared expert's tokens per CTA row of the down kernels by expert: one, as a routed pair's.
constexpr int DOWN_SHARED_TOKENS = 1;

// The frame of the down kernels by expert (moe_small.cu, moe_small_wq.cu), run by the whole CTA (WARPS warps) for
// column block blockIdx.x (COLS = WARPS * CPW columns, warp w's j-th column c0 + w + WARPS * j) and CTA row r
// (cta_row<WITH_SHARED, DOWN_SHARED_TOKENS>; grid n + shared_slices high). load(e) requests expert e's rows of the
// warp's columns into the caller's registers (the shared expert's, e = 0, before waiting for the router); part(j, col, e, hr) is this lane's
// share of W2_e[col] . hr for the warp's j-th column. Each pair's sum goes to ys[pair, col]; the block's CTA that
// arrives last writes (WITH_SHARED) or adds to out: combine_columns.
template <int CPW, int WARPS, int MAX_PAIRS, bool WITH_SHARED, class Load, class Part>
__device__ __forceinline__ void down_by_expert(Load load, Part part, const CtaRow &r, const float *h, const int *idx, const float *wt, float *ys,
                                               float *out, int *arrivals, int n, int k, int T, int d, int I) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, c0 = blockIdx.x * WARPS * CPW;
  const bool shared = WITH_SHARED && r.shared;
  if (shared) load(0);
  pdl_wait();
  pdl_trigger();
  __shared__ int pairs[MAX_PAIRS];
  __shared__ int count, repeated;
  const int e = shared ? 0 : idx[r.me];
  if (!shared) load(e);
  if (warp == 0) collect_pairs(idx, r, e, n, lane, pairs, count, repeated);
  __syncthreads();
  if (!repeated) {
#pragma unroll
    for (int j = 0; j < CPW; ++j) {
      const int col = c0 + warp + WARPS * j;
      if (col >= d) break;
      for (int p = 0; p < count; ++p) {
        const float y = group_sum<32>(part(j, col, e, h + (size_t)pairs[p] * I));
        if (lane == 0) ys[(size_t)pairs[p] * d + col] = y;
      }
    }
  }
  if (!arrived_last(arrivals + blockIdx.x, gridDim.y)) return;
  __shared__ int order[MAX_PAIRS];
  combine_columns<WITH_SHARED, 32 * WARPS>(idx, wt, ys, out, n, k, T, d, c0, min(WARPS * CPW, d - c0), order);
}

}  // namespace klc_small
