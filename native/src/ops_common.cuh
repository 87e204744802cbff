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

// The norms (norm.cu, the MLA latent append in mla.cu) read a row in tiles of NORM_PER values a
// thread, thread t taking columns t, t + blockDim.x, ... as a plain strided loop does (so its sums
// keep that loop's order), and issue a tile's loads before using the first: a loop that uses each
// value as it arrives waits on memory once per value, ~10 us for one 2,304-wide row at decode.
constexpr int NORM_PER = 16;

// v[i] = row[c0 + i * blockDim.x], 0 past D.
__device__ __forceinline__ void load_tile(const float *row, int c0, int D, float v[NORM_PER]) {
#pragma unroll
  for (int i = 0; i < NORM_PER; ++i) {
    const int c = c0 + i * (int)blockDim.x;
    v[i] = c < D ? row[c] : 0.f;
  }
}

// ss + v[0]^2 + v[1]^2 + ... in that order (the zeros past D add nothing).
__device__ __forceinline__ float add_squares(const float v[NORM_PER], float ss) {
#pragma unroll
  for (int i = 0; i < NORM_PER; ++i) ss += v[i] * v[i];
  return ss;
}

// The sum of squares of row[0 .. D) by this thread's columns, ascending (block_sum joins the threads).
__device__ __forceinline__ float row_squares(const float *row, int D) {
  float ss = 0.f;
  for (int c0 = threadIdx.x; c0 < D; c0 += NORM_PER * (int)blockDim.x) {
    float v[NORM_PER];
    load_tile(row, c0, D, v);
    ss = add_squares(v, ss);
  }
  return ss;
}

// y[c] = w[c] * (row[c] * inv) for this thread's columns: the norms' second pass.
__device__ __forceinline__ void scale_row(const float *row, const float *w, float inv, float *y, int D) {
  for (int c0 = threadIdx.x; c0 < D; c0 += NORM_PER * (int)blockDim.x) {
    float v[NORM_PER], g[NORM_PER];
    load_tile(row, c0, D, v);
    load_tile(w, c0, D, g);
#pragma unroll
    for (int i = 0; i < NORM_PER; ++i) {
      const int c = c0 + i * (int)blockDim.x;
      if (c < D) y[c] = g[i] * (v[i] * inv);
    }
  }
}

inline int blocks_for(size_t n, int threads) {
  size_t b = (n + threads - 1) / threads;
  return (int)(b > 65535 * 16 ? 65535 * 16 : (b < 1 ? 1 : b));
}

}  // namespace klc_ops
