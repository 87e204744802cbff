// The last CTA to arrive: kernels whose CTAs each write a part of a result and whose last CTA (of the grid, or of
// a tile) combines the parts, without a second launch. Counters are zero between launches: the last CTA resets its own.
#pragma once

namespace klc_small {

// Called by every thread of the CTA after its part is written; true in the CTA that arrives as the
// `expected`th at *counter, once the other CTAs' writes are visible to it (read them with __ldcg: L1 is not coherent).
__device__ __forceinline__ bool arrived_last(int *counter, int expected) {
  __shared__ int last;
  __threadfence();
  __syncthreads();
  if (threadIdx.x == 0) last = atomicAdd(counter, 1) == expected - 1;
  __syncthreads();
  if (!last) return false;
  __threadfence();
  if (threadIdx.x == 0) *counter = 0;
  return true;
}

}  // namespace klc_small
