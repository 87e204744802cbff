// Quantized weights (klc_wq) dequantized into a dense bf16 or fp32 matrix, for the GEMMs of prefill:
// there every weight is used by many rows, so one pass that writes the dense rows and the existing
// GEMMs (cuBLAS on tensor cores in tensor-core mode) are faster than reading codes inside a GEMM
// written here. One thread per stored word; any K and group (the last group of a row may be short).
#include <cuda_bf16.h>

#include <cstdint>

#include "internal.h"
#include "wq.cuh"

namespace {

using namespace klc_wq_dev;

template <int BITS>
__global__ void wq_dequant_kernel(klc_wq w, int row0, int rows, void *out, int out_f32) {
  constexpr int PER_WORD = 32 / BITS;
  constexpr uint32_t MASK = (1u << BITS) - 1u;
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
      const float v = static_cast<float>(static_cast<int>((word >> (BITS * j)) & MASK) - stored_zero<BITS>(w, row, g, groups)) *
                      scale_at(w, (size_t)row * groups + g);
      const size_t o = (size_t)r * w.K + c;
      if (out_f32) static_cast<float *>(out)[o] = v;
      else static_cast<__nv_bfloat16 *>(out)[o] = __float2bfloat16_rn(v);
    }
  }
}

}  // namespace

namespace klc {

int wq_dequant(klc_ctx *ctx, const klc_wq &w, int row0, int rows, void *out, int out_f32) {
  if (!w.w_packed || !w.scales || !out || (w.bits != 4 && w.bits != 8) || w.N < 1 || w.K < 1 || w.group < 1 || row0 < 0 ||
      rows < 1 || row0 + rows > w.N)
    return fail(KLC_E_ARG, "klc_wq_dequant: bad pointers, bits (4 or 8) or rows");
  const size_t words = (size_t)rows * ((w.K + 32 / w.bits - 1) / (32 / w.bits));
  const int threads = 256;
  size_t blocks = (words + threads - 1) / threads;
  if (blocks > 65535 * 16) blocks = 65535 * 16;
  if (w.bits == 4) wq_dequant_kernel<4><<<(int)blocks, threads, 0, ctx->stream>>>(w, row0, rows, out, out_f32);
  else wq_dequant_kernel<8><<<(int)blocks, threads, 0, ctx->stream>>>(w, row0, rows, out, out_f32);
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
