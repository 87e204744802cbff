// Dummy weights generated in device memory (src/engine/model/dummy-weights.ts is the definition and
// the host side): each value a pure function of the tensor's keys and the element index, computed
// with integer sums and one double product so that the host and the GPU round identically.
#include <cstdint>

#include "internal.h"

namespace {

__device__ __forceinline__ uint32_t mix32(uint32_t x) {
  x ^= x >> 16;
  x *= 0x7feb352du;
  x ^= x >> 15;
  x *= 0x846ca68bu;
  x ^= x >> 16;
  return x;
}

__global__ void fill_normal_bf16_kernel(uint16_t *out, size_t n, uint32_t key, uint32_t key2, double scale) {
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
    uint32_t base = mix32((uint32_t)i ^ key);
    int s = 0;
    for (uint32_t j = 0; j < 4; ++j) {
      uint32_t r = mix32(base ^ (key2 + j * 0x9e3779b9u));
      s += (int)(r & 0xffffu) + (int)(r >> 16);
    }
    float f = (float)((double)(s - 262140) * scale);
    uint32_t v = __float_as_uint(f);
    out[i] = (uint16_t)((v + 0x7fffu + ((v >> 16) & 1u)) >> 16);
  }
}

}  // namespace

using namespace klc;

extern "C" int klc_fill_normal_bf16(klc_ctx *ctx, void *out, size_t n, uint32_t key, uint32_t key2, double scale) {
  if (!out && n) return fail(KLC_E_ARG, "klc_fill_normal_bf16: out is null");
  if (n > 0xffffffffull) return fail(KLC_E_ARG, "klc_fill_normal_bf16: a tensor holds at most 2^32 elements (the index is 32-bit)");
  int rc = use_device(ctx);
  if (rc || !n) return rc;
  int blocks = (int)((n + 255) / 256 < 65535 * 8 ? (n + 255) / 256 : 65535 * 8);
  fill_normal_bf16_kernel<<<blocks, 256, 0, ctx->stream>>>(static_cast<uint16_t *>(out), n, key, key2, scale);
  cudaError_t e = cudaGetLastError();
  return e == cudaSuccess ? KLC_OK : fail_cuda(e, "generating dummy weights");
}
