// Quantization at load of weights that are made on the device (dummy weights): a bf16 matrix into
// klc_wq's symmetric INT4/INT8 codes with group or per-row scales, or E4M3 bytes with per-row
// scales, with the arithmetic of the host quantizer (src/engine/model/quant/matrix.ts quantize):
// scale = max |x| / ((qmax − qmin) / 2) in double (qmax = −qmin = 448 for E4M3), at least 2^−23,
// rounded to fp32 and then, for bf16 scales, to bf16 (both to nearest even); v = clamp(x / scale,
// qmin, qmax) in double; code = round-half-even(v), or the E4M3 byte nearest to v, ties to the even
// mantissa (encodeFp8E4M3 of src/engine/model/quant/fp8.ts). The codes and scales are therefore
// bit for bit the host's, and a dummy model quantized here equals the reference backend's.
// Without it a 48B dummy model quantized at load would go through the host: minutes of JavaScript.
#include <cstdint>

#include "internal.h"
#include "wq.cuh"

namespace {

using klc_wq_dev::Codes;
using klc_wq_dev::bits_of;

constexpr double E4M3_MAX = 448.0;

// The E4M3 byte nearest to v (|v| <= 448), ties to the even mantissa; NaN as 0x7f. Every step is
// exact in double: below 2^-6 the codes are the multiples of 2^-9 (code 8 is 2^-6 itself);
// above, 8 mantissa steps per binade of 2^e, and a mantissa rounding up to 16 is the next
// binade's first code. The sign is that of v < 0, so −0 (which the host's "+ 0" turns into +0)
// gets code 0 as it does there.
__device__ __forceinline__ uint32_t e4m3_nearest(double v) {
  if (v != v) return 0x7fu;
  const double a = fabs(v);
  uint32_t code;
  if (a < 0x1p-6) {
    code = static_cast<uint32_t>(rint(a * 0x1p9));
  } else {
    int e;
    frexp(a, &e);  // a = f · 2^e with f in [0.5, 1): a's binade is 2^(e − 1)
    code = static_cast<uint32_t>((e - 1 + 7) * 8 + static_cast<int>(rint(ldexp(a, 3 - (e - 1)))) - 8);
  }
  return (v < 0 ? 0x80u : 0u) | code;
}

__device__ __forceinline__ float bf16_value(uint16_t b) { return __uint_as_float(static_cast<uint32_t>(b) << 16); }

__device__ __forceinline__ uint16_t bf16_nearest_even(float f) {
  const uint32_t v = __float_as_uint(f);
  return static_cast<uint16_t>((v + 0x7fffu + ((v >> 16) & 1u)) >> 16);
}

// One warp per (row, group): the warp's largest |x|, then each lane packs whole words.
template <Codes C>
__global__ void wq_quantize_kernel(const uint16_t *__restrict__ w, int N, int K, int group, int32_t *__restrict__ packed,
                                   void *__restrict__ scales, int scales_f32) {
  constexpr int BITS = bits_of<C>;
  constexpr int PER_WORD = 32 / BITS;
  constexpr double QMIN = C == Codes::E4M3 ? -E4M3_MAX : -(1 << (BITS - 1)), QMAX = C == Codes::E4M3 ? E4M3_MAX : (1 << (BITS - 1)) - 1;
  const int groups = K / group;
  const size_t item = ((size_t)blockIdx.x * blockDim.x + threadIdx.x) >> 5;
  const int lane = threadIdx.x & 31;
  if (item >= (size_t)N * groups) return;
  const int row = static_cast<int>(item / groups), g = static_cast<int>(item % groups);
  const uint16_t *src = w + (size_t)row * K + (size_t)g * group;
  float amax = 0.f;
  for (int c = lane; c < group; c += 32) amax = fmaxf(amax, fabsf(bf16_value(src[c])));
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, o));
  const double wide = fmax(static_cast<double>(amax) / ((QMAX - QMIN) / 2.0), 0x1p-23);
  float scale = __double2float_rn(wide);
  if (!scales_f32) {
    const uint16_t b = bf16_nearest_even(scale);
    scale = bf16_value(b);
    if (lane == 0) static_cast<uint16_t *>(scales)[item] = b;
  } else if (lane == 0) {
    static_cast<float *>(scales)[item] = scale;
  }
  int32_t *dst = packed + ((size_t)row * K + (size_t)g * group) / PER_WORD;
  for (int wd = lane; wd < group / PER_WORD; wd += 32) {
    uint32_t word = 0;
#pragma unroll
    for (int j = 0; j < PER_WORD; ++j) {
      const double q = fmin(QMAX, fmax(QMIN, static_cast<double>(bf16_value(src[wd * PER_WORD + j])) / static_cast<double>(scale)));
      uint32_t code;
      if constexpr (C == Codes::E4M3) code = e4m3_nearest(q);
      else code = static_cast<uint32_t>(static_cast<int>(rint(q)) - static_cast<int>(QMIN)) & ((1u << BITS) - 1u);
      word |= code << (BITS * j);
    }
    dst[wd] = static_cast<int32_t>(word);
  }
}

}  // namespace

extern "C" {

KLC_API int klc_wq_quantize_bf16(klc_ctx *ctx, const void *w, int N, int K, int bits, int group, int codes, int32_t *packed, void *scales,
                                 int scales_f32) {
  if (!w || !packed || !scales || (bits != 4 && bits != 8) || N < 1 || K < 1 || group < 1 || K % group != 0 ||
      group % (32 / bits) != 0)
    return klc::fail(KLC_E_ARG, "klc_wq_quantize_bf16: bad pointers, bits (4 or 8), or a group that does not divide K into whole words");
  if (codes != KLC_WQ_INT && !(codes == KLC_WQ_E4M3 && bits == 8 && group == K))
    return klc::fail(KLC_E_ARG, "klc_wq_quantize_bf16: codes must be KLC_WQ_INT, or KLC_WQ_E4M3 with bits 8 and one scale per row (group = K)");
  if (int rc = klc::use_device(ctx)) return rc;
  const size_t threads = (size_t)N * (K / group) * 32;
  const int block = 256;
  const size_t blocks = (threads + block - 1) / block;
  if (blocks > 0x7fffffffu) return klc::fail(KLC_E_ARG, "klc_wq_quantize_bf16: the matrix is too large for one launch");
  const auto *src = static_cast<const uint16_t *>(w);
  if (codes == KLC_WQ_E4M3)
    wq_quantize_kernel<Codes::E4M3><<<(unsigned)blocks, block, 0, ctx->stream>>>(src, N, K, group, packed, scales, scales_f32);
  else if (bits == 4)
    wq_quantize_kernel<Codes::Int4><<<(unsigned)blocks, block, 0, ctx->stream>>>(src, N, K, group, packed, scales, scales_f32);
  else
    wq_quantize_kernel<Codes::Int8><<<(unsigned)blocks, block, 0, ctx->stream>>>(src, N, K, group, packed, scales, scales_f32);
  const cudaError_t e = cudaGetLastError();
  return e == cudaSuccess ? KLC_OK : klc::fail_cuda(e, "quantizing weights on the device");
}

}  // extern "C"
