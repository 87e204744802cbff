// Device helpers the layer-op units share (elementwise.cu, norm.cu, linear.cu, conv.cu,
// kda_recurrent.cu, mla.cu, moe.cu): activations, weight reads of either type, warp and block sums,
// grid sizes. Inline in a named namespace, so a unit that uses only some of them compiles cleanly.
#pragma once

#include <cuda_bf16.h>

#include <cstddef>

namespace klc_ops {

__device__ __forceinline__ float sigmoidf_(float x) { return 1.f / (1.f + expf(-x)); }
__device__ __forceinline__ float siluf_(float x) { return x / (1.f + expf(-x)); }

__device__ __forceinline__ float wval(const __nv_bfloat16 *w, size_t i) { return __bfloat162float(w[i]); }
__device__ __forceinline__ float wval(const float *w, size_t i) { return w[i]; }

__device__ __forceinline__ float warp_sum(float x) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) x += __shfl_xor_sync(0xffffffffu, x, o);
  return x;
}

// Sum over a block of up to 1024 threads; every thread gets the result.
__device__ inline float block_sum(float x) {
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

inline int blocks_for(size_t n, int threads) {
  size_t b = (n + threads - 1) / threads;
  return (int)(b > 65535 * 16 ? 65535 * 16 : (b < 1 ? 1 : b));
}

}  // namespace klc_ops
