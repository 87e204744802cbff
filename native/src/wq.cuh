// Device helpers for weight-only quantized matrices (klc_wq, compressed-tensors pack-quantized, or
// FP8 E4M3 bytes): scales, zero points, and runs of 8 consecutive codes of a row decoded to (q − z) or
// e4m3(q) in fp32 and multiplied with activations, the run's sum scaled once.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cstdint>

#include "klc_native.h"

namespace klc_wq_dev {

// What a klc_wq's codes are; kernels are instantiated per kind.
enum class Codes { Int4, Int8, E4M3 };
template <Codes C>
constexpr int bits_of = C == Codes::Int4 ? 4 : 8;

// The kind of w's codes (bits and codes checked by the caller).
inline Codes codes_of(const klc_wq &w) { return w.codes == KLC_WQ_E4M3 ? Codes::E4M3 : w.bits == 4 ? Codes::Int4 : Codes::Int8; }

// Two E4M3 bytes held as the high bytes of a word's 16-bit halves (byte << 8) as fp32 values
// times 2^-8, exactly and without a table: the sign stays and the 4 exponent and 3 mantissa bits
// move down one bit into f16's fields, whose exponent bias (15 against 7) is the 2^-8; E4M3
// subnormals land on f16 subnormals with the same factor. Lane .x is the low half.
__device__ __forceinline__ float2 e4m3x2_over_256(uint32_t high_bytes) {
  const uint32_t h = (high_bytes & 0x80008000u) | ((high_bytes >> 1) & 0x3f803f80u);
  return __half22float2(__halves2half2(__ushort_as_half(static_cast<unsigned short>(h & 0xffffu)),
                                       __ushort_as_half(static_cast<unsigned short>(h >> 16))));
}

// The four E4M3 codes of a word (lowest byte first) as fp32 values times 2^-8.
__device__ __forceinline__ void e4m3x4_over_256(uint32_t word, float f[4]) {
  const float2 lo = e4m3x2_over_256(__byte_perm(word, 0u, 0x1404u)), hi = e4m3x2_over_256(__byte_perm(word, 0u, 0x3424u));
  f[0] = lo.x, f[1] = lo.y, f[2] = hi.x, f[3] = hi.y;
}

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

// Which group codes [8u, 8u + 8) of a row lie in (w.group % 8 == 0, so a run never straddles two): a shift where
// the group is the whole row or a power of two, a division only for other group sizes. The small-batch kernels
// are bound by their instructions per run, and an integer division costs as many as the run's multiply-adds.
struct RunGroups {
  int shift, per;
  __device__ explicit RunGroups(const klc_wq &w) {
    per = w.group / 8;
    shift = w.group >= w.K ? 31 : (per & (per - 1)) == 0 ? __popc(per - 1) : -1;
  }
  __device__ int operator()(int u) const { return shift >= 0 ? u >> shift : u / per; }
};

// gs[i] = the group of the lane's run lane + 32 i, for each of the UNITS runs a lane takes of a row of w.
template <int UNITS>
__device__ __forceinline__ void lane_groups(const klc_wq &w, int lane, int gs[UNITS]) {
  const RunGroups group_of(w);
#pragma unroll
  for (int i = 0; i < UNITS; ++i) gs[i] = group_of(lane + 32 * i);
}

// What a run's codes are multiplied by once decoded: the group's scale (times 2^8 for E4M3, whose decode is
// the value times 2^-8) and, for integer codes, 2^23 + the stored zero point as an fp32 (exact below 2^23).
struct RunScale {
  float s, bias;
};
template <Codes C>
__device__ __forceinline__ RunScale run_scale(const klc_wq &w, int row, int g, int groups) {
  const float s = scale_at(w, (size_t)row * groups + g);
  if constexpr (C == Codes::E4M3) return {s * 256.f, 0.f};
  else return {s, __uint_as_float(0x4B000000u | static_cast<uint32_t>(stored_zero<bits_of<C>>(w, row, g, groups)))};
}

// f[i] = q_i − z exactly (integer codes: the code put under 2^23's exponent is the float 2^23 + q, less bias =
// 2^23 + z), or e4m3(q_i) · 2^-8 (bias unused): two instructions a code, no integer-to-float conversion (a
// quarter-rate instruction).
template <Codes C>
__device__ __forceinline__ void codes8(const Raw8<bits_of<C>> &r, float bias, float f[8]);
template <>
__device__ __forceinline__ void codes8<Codes::Int4>(const Raw8<4> &r, float bias, float f[8]) {
  const uint32_t even = r.a & 0x0F0F0F0Fu, odd = (r.a >> 4) & 0x0F0F0F0Fu;
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    f[2 * i] = __uint_as_float(__byte_perm(even, 0x4B000000u, 0x7440u + i)) - bias;
    f[2 * i + 1] = __uint_as_float(__byte_perm(odd, 0x4B000000u, 0x7440u + i)) - bias;
  }
}
template <>
__device__ __forceinline__ void codes8<Codes::Int8>(const Raw8<8> &r, float bias, float f[8]) {
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    f[i] = __uint_as_float(__byte_perm(r.a, 0x4B000000u, 0x7440u + i)) - bias;
    f[4 + i] = __uint_as_float(__byte_perm(r.b, 0x4B000000u, 0x7440u + i)) - bias;
  }
}
template <>
__device__ __forceinline__ void codes8<Codes::E4M3>(const Raw8<8> &r, float, float f[8]) {
  e4m3x4_over_256(r.a, f);
  e4m3x4_over_256(r.b, f + 4);
}

}  // namespace klc_wq_dev
