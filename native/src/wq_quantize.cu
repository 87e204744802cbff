// Quantization at load of weights that are made on the device (dummy weights): a bf16 matrix into
// klc_wq's symmetric INT4/INT8 codes with group or per-row scales, with the arithmetic of the host
// quantizer (src/engine/model/quant/matrix.ts quantize): scale = max |x| / ((qmax − qmin) / 2) in
// double, at least 2^−23, rounded to fp32 and then, for bf16 scales, to bf16 (both to nearest even);
// code = round-half-even(clamp(x / scale, qmin, qmax)) in double. The codes and scales are therefore
// bit for bit the host's, and a dummy model quantized here equals the reference backend's.
// Without it a 48B dummy model quantized at load would go through the host: minutes of JavaScript.
#include <cstdint>

#include "internal.h"

namespace {

__device__ __forceinline__ float bf16_value(uint16_t b) { return __uint_as_float(static_cast<uint32_t>(b) << 16); }

__device__ __forceinline__ uint16_t bf16_nearest_even(float f) {
  const uint32_t v = __float_as_uint(f);
  return static_cast<uint16_t>((v + 0x7fffu + ((v >> 16) & 1u)) >> 16);
}

// One warp per (row, group): the warp's largest |x|, then each lane packs whole words.
template <int BITS>
__global__ void wq_quantize_kernel(const uint16_t *__restrict__ w, int N, int K, int group, int32_t *__restrict__ packed,
                                   void *__restrict__ scales, int scales_f32) {
  constexpr int PER_WORD = 32 / BITS;
  constexpr int QMIN = -(1 << (BITS - 1)), QMAX = (1 << (BITS - 1)) - 1;
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
      const double q = fmin(static_cast<double>(QMAX), fmax(static_cast<double>(QMIN), static_cast<double>(bf16_value(src[wd * PER_WORD + j])) / static_cast<double>(scale)));
      const int code = static_cast<int>(rint(q));
      word |= (static_cast<uint32_t>(code - QMIN) & ((1u << BITS) - 1u)) << (BITS * j);
    }
    dst[wd] = static_cast<int32_t>(word);
  }
}

}  // namespace

extern "C" {

KLC_API int klc_wq_quantize_bf16(klc_ctx *ctx, const void *w, int N, int K, int bits, int group, int32_t *packed, void *scales,
                                 int scales_f32) {
  if (!w || !packed || !scales || (bits != 4 && bits != 8) || N < 1 || K < 1 || group < 1 || K % group != 0 ||
      group % (32 / bits) != 0)
    return klc::fail(KLC_E_ARG, "klc_wq_quantize_bf16: bad pointers, bits (4 or 8), or a group that does not divide K into whole words");
  if (int rc = klc::use_device(ctx)) return rc;
  const size_t threads = (size_t)N * (K / group) * 32;
  const int block = 256;
  const size_t blocks = (threads + block - 1) / block;
  if (blocks > 0x7fffffffu) return klc::fail(KLC_E_ARG, "klc_wq_quantize_bf16: the matrix is too large for one launch");
  if (bits == 4)
    wq_quantize_kernel<4><<<(unsigned)blocks, block, 0, ctx->stream>>>(static_cast<const uint16_t *>(w), N, K, group, packed, scales, scales_f32);
  else
    wq_quantize_kernel<8><<<(unsigned)blocks, block, 0, ctx->stream>>>(static_cast<const uint16_t *>(w), N, K, group, packed, scales, scales_f32);
  const cudaError_t e = cudaGetLastError();
  return e == cudaSuccess ? KLC_OK : klc::fail_cuda(e, "quantizing weights on the device");
}

}  // extern "C"
