// Quantized weights (klc_wq) dequantized into a dense bf16 or fp32 matrix, for the GEMMs of prefill's
// dense layers (each weight used by every row of the slice, so the pass costs little against cuBLAS
// on the result) and of exact mode. The routed experts in tensor-core mode read their codes inside
// their own GEMMs instead (moe_wq_gemm.cu): there each expert serves ~1/32 of the rows, and this pass
// cost more than the GEMMs. One thread per stored word; any K and group (the last group of a row may be short).
// FP8 E4M3 codes dequantize to fp32(e4m3) · s, the reference's values.
#include <cuda_bf16.h>

#include <cstdint>
#include <string>

#include "internal.h"
#include "wq.cuh"

namespace {

using namespace klc_wq_dev;

// The fp32 value of code j of a word (after any zero point), before the scale.
template <Codes C>
__device__ __forceinline__ float code_value(uint32_t word, int j, const klc_wq &w, int row, int g, int groups) {
  constexpr int BITS = bits_of<C>;
  const uint32_t code = (word >> (BITS * j)) & ((1u << BITS) - 1u);
  if constexpr (C == Codes::E4M3) return e4m3x2_over_256(code << 8).x * 256.f;
  else return static_cast<float>(static_cast<int>(code) - stored_zero<BITS>(w, row, g, groups));
}

template <Codes C>
__global__ void wq_dequant_kernel(klc_wq w, int row0, int rows, void *out, int out_f32) {
  constexpr int PER_WORD = 32 / bits_of<C>;
  const int words = (w.K + PER_WORD - 1) / PER_WORD, groups = (w.K + w.group - 1) / w.group;
  const size_t total = (size_t)rows * words;
  for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += (size_t)gridDim.x * blockDim.x) {
    const int r = static_cast<int>(i / words), wi = static_cast<int>(i % words), row = row0 + r;
    const uint32_t word = static_cast<uint32_t>(__ldcs(w.w_packed + (size_t)row * words + wi));
#pragma unroll
    for (int j = 0; j < PER_WORD; ++j) {
      const int c = wi * PER_WORD + j;
      if (c >= w.K) break;
      const int g = c / w.group;
      const float v = code_value<C>(word, j, w, row, g, groups) * scale_at(w, (size_t)row * groups + g);
      const size_t o = (size_t)r * w.K + c;
      if (out_f32) static_cast<float *>(out)[o] = v;
      else static_cast<__nv_bfloat16 *>(out)[o] = __float2bfloat16_rn(v);
    }
  }
}

}  // namespace

namespace klc {

bool wq_codes_ok(const klc_wq &w) {
  return (w.codes == KLC_WQ_INT && (w.bits == 4 || w.bits == 8)) || (w.codes == KLC_WQ_E4M3 && w.bits == 8 && !w.zero_points);
}

int wq_check_codes(const klc_wq &w, const char *what) {
  if (wq_codes_ok(w)) return KLC_OK;
  return fail(KLC_E_ARG, std::string(what) + ": codes " + std::to_string(w.codes) + " at " + std::to_string(w.bits) +
                             " bits are not read here; the kinds are KLC_WQ_INT at 4 or 8 bits, and KLC_WQ_E4M3 at 8 bits without zero points");
}

int wq_dequant(klc_ctx *ctx, const klc_wq &w, int row0, int rows, void *out, int out_f32) {
  if (int rc = wq_check_codes(w, "klc_wq_dequant")) return rc;
  if (!w.w_packed || !w.scales || !out || w.N < 1 || w.K < 1 || w.group < 1 || row0 < 0 || rows < 1 || row0 + rows > w.N)
    return fail(KLC_E_ARG, "klc_wq_dequant: bad pointers or rows");
  const size_t words = (size_t)rows * ((w.K + 32 / w.bits - 1) / (32 / w.bits));
  const int threads = 256;
  size_t blocks = (words + threads - 1) / threads;
  if (blocks > 65535 * 16) blocks = 65535 * 16;
  using klc_wq_dev::Codes;
  switch (klc_wq_dev::codes_of(w)) {
    case Codes::Int4: wq_dequant_kernel<Codes::Int4><<<(int)blocks, threads, 0, ctx->stream>>>(w, row0, rows, out, out_f32); break;
    case Codes::Int8: wq_dequant_kernel<Codes::Int8><<<(int)blocks, threads, 0, ctx->stream>>>(w, row0, rows, out, out_f32); break;
    case Codes::E4M3: wq_dequant_kernel<Codes::E4M3><<<(int)blocks, threads, 0, ctx->stream>>>(w, row0, rows, out, out_f32); break;
  }
  const cudaError_t e = cudaGetLastError();
  return e == cudaSuccess ? KLC_OK : fail_cuda(e, "dequantizing a quantized weight");
}

}  // namespace klc

extern "C" {

KLC_API int klc_wq_dequant(klc_ctx *ctx, const klc_wq *w, int row0, int rows, void *out, int out_f32) {
  if (!w) return klc::fail(KLC_E_ARG, "klc_wq_dequant: the weight is required");
  if (int rc = klc::use_device(ctx)) return rc;
  return klc::wq_dequant(ctx, *w, row0, rows, out, out_f32);
}

}  // extern "C"
