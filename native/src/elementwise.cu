// Elementwise and copy ops of the layer pipeline: the embedding gather (bf16 or fp32 table), the
// residual add, and strided and plain device copies. Activations are fp32 [rows, cols] row-major.
#include <cuda_bf16.h>

#include "internal.h"
#include "pdl.cuh"
#include "ops_common.cuh"

namespace {

using bf16 = __nv_bfloat16;
using namespace klc_ops;

template <typename WT>
__global__ void embed_kernel(const WT *table, const int *ids, float *out, int d) {
  const int t = blockIdx.x;
  const size_t row = (size_t)ids[t] * d;
  for (int c = threadIdx.x; c < d; c += blockDim.x) out[(size_t)t * d + c] = wval(table, row + c);
}

__global__ void add_kernel(float *h, const float *x, size_t n) {
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) h[i] += x[i];
}

__global__ void copy2d_kernel(const float *src, int lds, float *dst, int ldd, int rows, int cols) {
  pdl_wait();
  pdl_trigger();
  const size_t n = (size_t)rows * cols;
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
    const size_t r = i / cols, c = i % cols;
    dst[r * ldd + c] = src[r * lds + c];
  }
}

using klc::launched;

}  // namespace

using namespace klc;

extern "C" {

int klc_embed(klc_ctx *ctx, const void *table, const int32_t *ids, float *out, int T, int d, int table_f32) {
  int rc = use_device(ctx);
  if (rc) return rc;
  if (!table || !ids || !out || T < 1 || d < 1) return fail(KLC_E_ARG, "klc_embed: null pointer or empty shape");
  if (table_f32) embed_kernel<<<T, 256, 0, ctx->stream>>>(static_cast<const float *>(table), ids, out, d);
  else embed_kernel<<<T, 256, 0, ctx->stream>>>(static_cast<const bf16 *>(table), ids, out, d);
  return launched("the embedding gather");
}

int klc_add(klc_ctx *ctx, float *h, const float *x, size_t n) {
  int rc = use_device(ctx);
  if (rc) return rc;
  if (!h || !x) return fail(KLC_E_ARG, "klc_add: null pointer");
  add_kernel<<<blocks_for(n, 256), 256, 0, ctx->stream>>>(h, x, n);
  return launched("the residual add");
}

int klc_copy2d(klc_ctx *ctx, const float *src, int lds, float *dst, int ldd, int rows, int cols) {
  int rc = use_device(ctx);
  if (rc) return rc;
  if (!src || !dst || rows < 0 || cols < 0 || lds < cols || ldd < cols) return fail(KLC_E_ARG, "klc_copy2d: bad pointers or shape");
  if (rows == 0 || cols == 0) return KLC_OK;
  return launched(launch_pdl(ctx, copy2d_kernel, blocks_for((size_t)rows * cols, 256), 256, 0, src, lds, dst, ldd, rows, cols), "a strided copy");
}

int klc_copy(klc_ctx *ctx, void *dst, const void *src, size_t bytes) {
  int rc = use_device(ctx);
  if (rc) return rc;
  cudaError_t e = cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, ctx->stream);
  return e == cudaSuccess ? KLC_OK : fail_cuda(e, "copying on the GPU");
}

}  // extern "C"
