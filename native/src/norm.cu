// RMSNorm over fp32 rows: plain, fused with the residual add before it, and the KDA output norm
// gated by sigmoid(gate) (klc_gated_rmsnorm). Norm weights are fp32.
#include <cuda_bf16.h>

#include "internal.h"
#include "ops_common.cuh"
#include "pdl.cuh"

namespace {

using bf16 = __nv_bfloat16;
using namespace klc_ops;

__global__ void rmsnorm_kernel(const float *x, int ldx, const float *w, float *y, int ldy, int D, float eps) {
  pdl_wait();
  pdl_trigger();
  const float *xr = x + (size_t)blockIdx.x * ldx;
  const float inv = rsqrtf(block_sum(row_squares(xr, D)) / D + eps);
  scale_row(xr, w, inv, y + (size_t)blockIdx.x * ldy, D);
}

// add_kernel then rmsnorm_kernel, fused: each thread adds the columns it later normalises, so the
// sums and products are the same operations in the same order as the two kernels.
__global__ void add_rmsnorm_kernel(float *h, const float *x, const float *w, float *y, int D, float eps) {
  pdl_wait();
  pdl_trigger();
  float *hr = h + (size_t)blockIdx.x * D;
  const float *xr = x + (size_t)blockIdx.x * D;
  float ss = 0.f;
  for (int c0 = threadIdx.x; c0 < D; c0 += NORM_PER * (int)blockDim.x) {
    float v[NORM_PER], dx[NORM_PER];
    load_tile(hr, c0, D, v);
    load_tile(xr, c0, D, dx);
#pragma unroll
    for (int i = 0; i < NORM_PER; ++i) {
      const int c = c0 + i * (int)blockDim.x;
      v[i] = v[i] + dx[i];
      if (c < D) hr[c] = v[i];
    }
    ss = add_squares(v, ss);
  }
  const float inv = rsqrtf(block_sum(ss) / D + eps);
  scale_row(hr, w, inv, y + (size_t)blockIdx.x * D, D);
}

// KDA output norm (fla FusedRMSNormGated, sigmoid): one block per (token, head) vector.
__global__ void gated_rmsnorm_kernel(const void *o, int o_bf16, const float *gate, const float *w, float *y, int D, float eps) {
  pdl_wait();
  pdl_trigger();
  const size_t r = blockIdx.x;
  auto val = [&](int c) {
    return o_bf16 ? __bfloat162float(static_cast<const bf16 *>(o)[r * D + c]) : static_cast<const float *>(o)[r * D + c];
  };
  float ss = 0.f;
  for (int c = threadIdx.x; c < D; c += blockDim.x) {
    const float x = val(c);
    ss += x * x;
  }
  const float inv = rsqrtf(block_sum(ss) / D + eps);
  for (int c = threadIdx.x; c < D; c += blockDim.x) y[r * D + c] = val(c) * inv * w[c] * sigmoidf_(gate[r * D + c]);
}

}  // namespace

using namespace klc;

extern "C" {

int klc_rmsnorm(klc_ctx *ctx, const float *x, int ldx, const float *w, float *y, int ldy, int rows, int D, float eps) {
  int rc = use_device(ctx);
  if (rc) return rc;
  if (!x || !w || !y || rows < 1 || D < 1 || ldx < D || ldy < D) return fail(KLC_E_ARG, "klc_rmsnorm: bad pointers or shape");
  return launched(launch_pdl(ctx, rmsnorm_kernel, rows, 256, 0, x, ldx, w, y, ldy, D, eps), "RMSNorm");
}

int klc_add_rmsnorm(klc_ctx *ctx, float *h, const float *x, const float *w, float *y, int rows, int D, float eps) {
  int rc = use_device(ctx);
  if (rc) return rc;
  if (!h || !x || !w || !y || rows < 1 || D < 1) return fail(KLC_E_ARG, "klc_add_rmsnorm: bad pointers or shape");
  return launched(launch_pdl(ctx, add_rmsnorm_kernel, rows, 256, 0, h, x, w, y, D, eps), "the residual add and RMSNorm");
}

int klc_gated_rmsnorm(klc_ctx *ctx, const void *o, int o_bf16, const float *gate, const float *w, float *y, int rows, int D,
                      float eps) {
  int rc = use_device(ctx);
  if (rc) return rc;
  if (!o || !gate || !w || !y || rows < 1 || D < 1) return fail(KLC_E_ARG, "klc_gated_rmsnorm: bad pointers or shape");
  return launched(launch_pdl(ctx, gated_rmsnorm_kernel, rows, D >= 128 ? 128 : 32, 0, o, o_bf16, gate, w, y, D, eps), "the gated output norm");
}

}  // extern "C"
