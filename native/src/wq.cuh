// Device helpers for weight-only quantized matrices (klc_wq, compressed-tensors pack-quantized):
// scales, zero points and runs of 8 consecutive codes of a row turned into fp32 weights
// fp32((q − z) · s), the same numbers the reference backend dequantizes to.
#pragma once

#include <cuda_bf16.h>
#include <cstdint>

#include "klc_native.h"

namespace klc_wq_dev {

__device__ __forceinline__ float scale_at(const klc_wq &w, size_t i) {
  return w.scales_f32 ? __ldg(static_cast<const float *>(w.scales) + i)
                      : __uint_as_float(static_cast<uint32_t>(__ldg(static_cast<const uint16_t *>(w.scales) + i)) << 16);
}

// The stored zero point (z + 2^(bits-1)) of `row`, group g; 2^(bits-1) when symmetric.
template <int BITS>
__device__ __forceinline__ int stored_zero(const klc_wq &w, int row, int g, int groups) {
  constexpr int PER_WORD = 32 / BITS;
  if (!w.zero_points) return 1 << (BITS - 1);
  const uint32_t word = static_cast<uint32_t>(__ldg(w.zero_points + (size_t)(row / PER_WORD) * groups + g));
  return static_cast<int>((word >> (BITS * (row % PER_WORD))) & ((1u << BITS) - 1u));
}

// Eight consecutive codes: one word at 4 bits, two at 8.
template <int BITS>
struct Raw8;
template <>
struct Raw8<4> {
  uint32_t a;
};
template <>
struct Raw8<8> {
  uint32_t a, b;
};

// Codes 8u .. 8u + 7 of the row that starts at word `row` (K a multiple of 8; evict-first loads, read once).
template <int BITS>
__device__ __forceinline__ Raw8<BITS> load8(const int32_t *row, int u);
template <>
__device__ __forceinline__ Raw8<4> load8<4>(const int32_t *row, int u) {
  return {static_cast<uint32_t>(__ldcs(row + u))};
}
template <>
__device__ __forceinline__ Raw8<8> load8<8>(const int32_t *row, int u) {
  const int2 v = __ldcs(reinterpret_cast<const int2 *>(row) + u);
  return {static_cast<uint32_t>(v.x), static_cast<uint32_t>(v.y)};
}

// f[i] = fp32((code_i − z) · s), with z the stored zero point (both offset by 2^(bits-1)).
template <int BITS>
__device__ __forceinline__ void decode8(const Raw8<BITS> &r, int z, float s, float f[8]);
template <>
__device__ __forceinline__ void decode8<4>(const Raw8<4> &r, int z, float s, float f[8]) {
#pragma unroll
  for (int i = 0; i < 8; ++i) f[i] = static_cast<float>(static_cast<int>((r.a >> (4 * i)) & 15u) - z) * s;
}
template <>
__device__ __forceinline__ void decode8<8>(const Raw8<8> &r, int z, float s, float f[8]) {
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    f[i] = static_cast<float>(static_cast<int>((r.a >> (8 * i)) & 255u) - z) * s;
    f[4 + i] = static_cast<float>(static_cast<int>((r.b >> (8 * i)) & 255u) - z) * s;
  }
}

}  // namespace klc_wq_dev
