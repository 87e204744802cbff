// The (token, slot) pairs of a small batch grouped by expert, for the down kernels of moe_small.cu
// and moe_small_wq.cu: order[] lists the pairs by (expert, pair), each expert's pairs side by side
// and experts ascending; run u (of `runs` distinct experts) is order[first[u] .. first[u + 1]).
// Knowing the runs up front lets a warp request the rows of several experts before it uses the
// first: one after the other, a decode step's 8 experts cost 8 memory round trips per warp.
#pragma once

namespace klc_small {

template <int MAX_PAIRS, int THREADS>
struct ExpertRuns {
  static_assert(MAX_PAIRS <= THREADS, "one thread per pair finds the run starts");
  int idx[MAX_PAIRS], order[MAX_PAIRS], first[MAX_PAIRS + 1];
  int warp_runs[THREADS / 32];
  int runs;

  // Called by every thread of the block with the same n (<= MAX_PAIRS) pairs' experts.
  __device__ void build(const int *pair_expert, int n) {
    for (int j = threadIdx.x; j < n; j += THREADS) idx[j] = pair_expert[j];
    __syncthreads();
    for (int j = threadIdx.x; j < n; j += THREADS) {
      const int e = idx[j];
      int pos = 0;
      for (int q = 0; q < n; ++q) {
        const int f = idx[q];
        pos += f < e || (f == e && q < j);
      }
      order[pos] = j;
    }
    __syncthreads();
    const int j = threadIdx.x, lane = j & 31, warp = j >> 5;
    const bool starts = j < n && (j == 0 || idx[order[j]] != idx[order[j - 1]]);
    const unsigned starting = __ballot_sync(0xffffffffu, starts);
    if (lane == 0) warp_runs[warp] = __popc(starting);
    __syncthreads();
    int before = 0;
    for (int w = 0; w < warp; ++w) before += warp_runs[w];
    if (starts) first[before + __popc(starting & ((1u << lane) - 1u))] = j;
    if (j == THREADS - 1) {
      runs = before + warp_runs[warp];
      first[runs] = n;
    }
    __syncthreads();
  }

  __device__ int expert(int u) const { return idx[order[first[u]]]; }
};

}  // namespace klc_small
