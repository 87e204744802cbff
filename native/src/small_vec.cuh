// Device helpers of the small-batch (memory-bound) kernels in moe_small.cu and gemv.cu: 16-byte
// weight loads unpacked to fp32 and dot products against fp32 activations.
#pragma once

#include <cuda_bf16.h>
#include <cstdint>

namespace klc_small {

// Weights are read exactly once per call: ld.global.cs marks them evict-first, so the activations
// (read by every warp) stay in L1/L2.
__device__ __forceinline__ uint4 load_stream(const void *p) { return __ldcs(static_cast<const uint4 *>(p)); }

// Brings the line holding p into L2 (or L1) without a register or a wait: a load of it issued later
// hits the cache, so more reads are in flight than the registers could hold.
__device__ __forceinline__ void prefetch_l2(const void *p) { asm volatile("prefetch.global.L2 [%0];" ::"l"(p)); }
__device__ __forceinline__ void prefetch_l1(const void *p) { asm volatile("prefetch.global.L1 [%0];" ::"l"(p)); }

// The lanes of a warp request the 128-byte lines of [p, p + bytes) into L2 (a weight row that does not
// depend on the kernel before, asked for before pdl_wait).
__device__ __forceinline__ void prefetch_l2_span(const void *p, size_t bytes, int lane) {
  for (size_t off = (size_t)lane * 128; off < bytes; off += 32 * 128) prefetch_l2(static_cast<const char *>(p) + off);
}

// The lanes of a warp bring the 128-byte lines that [p, p + bytes) touches into L1 (a row's scales, needed as
// soon as its codes arrive).
__device__ __forceinline__ void prefetch_l1_span(const void *p, size_t bytes, int lane) {
  const uintptr_t a = reinterpret_cast<uintptr_t>(p);
  for (uintptr_t line = (a & ~static_cast<uintptr_t>(127)) + static_cast<uintptr_t>(lane) * 128; line < a + bytes; line += 32 * 128)
    prefetch_l1(reinterpret_cast<const void *>(line));
}

// A bf16 is the top half of an fp32: unpacking is a shift, exact.
__device__ __forceinline__ void unpack_bf16x8(const uint4 &v, float f[8]) {
  const uint32_t w[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    f[2 * i] = __uint_as_float(w[i] << 16);
    f[2 * i + 1] = __uint_as_float(w[i] & 0xffff0000u);
  }
}

// sum_i f[i] * x[i] over 8 fp32 activations at x (16-byte aligned), added to acc in index order.
__device__ __forceinline__ float dot8(const float f[8], const float *x, float acc) {
  const float4 a = *reinterpret_cast<const float4 *>(x), b = *reinterpret_cast<const float4 *>(x + 4);
  acc = fmaf(f[0], a.x, acc);
  acc = fmaf(f[1], a.y, acc);
  acc = fmaf(f[2], a.z, acc);
  acc = fmaf(f[3], a.w, acc);
  acc = fmaf(f[4], b.x, acc);
  acc = fmaf(f[5], b.y, acc);
  acc = fmaf(f[6], b.z, acc);
  return fmaf(f[7], b.w, acc);
}

// Sum over groups of `width` lanes (a power of two <= 32, groups aligned); every lane of a group gets it.
template <int width>
__device__ __forceinline__ float group_sum(float x) {
#pragma unroll
  for (int o = width / 2; o > 0; o >>= 1) x += __shfl_xor_sync(0xffffffffu, x, o);
  return x;
}

__host__ __device__ inline bool aligned16(const void *p) { return (reinterpret_cast<uintptr_t>(p) & 15u) == 0; }

}  // namespace klc_small
