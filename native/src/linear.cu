// klc_linear, the dense layers: Y[M, N] (+)= X[M, K] Wᵀ, X fp32, W bf16 or fp32. Few rows go to
// gemv.cu, tensor-core mode to tc_ops.cu; else the warp-per-column GEMV below (M <= 4) or the
// CUDA-core GEMM of gemm_f32.cuh runs.
#include <cuda_bf16.h>

#include <string>

#include "gemm_f32.cuh"
#include "internal.h"

namespace {

using bf16 = __nv_bfloat16;
using namespace klc_ops;

// Few rows (decode): one warp per output column streams its weight row once for all rows.
constexpr int GEMV_MAX_ROWS = 4;
template <typename WT>
__global__ void gemv_kernel(GemmArgs a) {
  const int warps = blockDim.x / 32;
  const int col = blockIdx.x * warps + (threadIdx.x >> 5);
  const int lane = threadIdx.x & 31;
  if (col >= a.N) return;
  const WT *w = static_cast<const WT *>(a.w) + (size_t)blockIdx.z * a.sw + (size_t)col * a.K;
  const float *x = a.x + (size_t)blockIdx.z * a.sx;
  float *y = a.y + (size_t)blockIdx.z * a.sy;
  float acc[GEMV_MAX_ROWS] = {};
  for (int k = lane; k < a.K; k += 32) {
    const float wv = wval(w, k);
#pragma unroll
    for (int r = 0; r < GEMV_MAX_ROWS; ++r)
      if (r < a.M) acc[r] = fmaf(x[(size_t)r * a.ldx + k], wv, acc[r]);
  }
#pragma unroll
  for (int r = 0; r < GEMV_MAX_ROWS; ++r) {
    if (r >= a.M) break;
    const float s = warp_sum(acc[r]);
    if (lane == 0) {
      float *dst = y + (size_t)r * a.ldy + col;
      *dst = a.accumulate ? *dst + s : s;
    }
  }
}

using klc::launched;

}  // namespace

using namespace klc;

extern "C" {

int klc_linear(klc_ctx *ctx, const float *x, int ldx, const void *w, float *y, int ldy, int M, int N, int K, int batch,
               long long sx, long long sw, long long sy, int accumulate, int w_f32) {
  int rc = use_device(ctx);
  if (rc) return rc;
  if (!x || !w || !y || M < 1 || N < 1 || K < 1 || batch < 1 || batch > 65535 || ldx < K || ldy < N)
    return fail(KLC_E_ARG, "klc_linear: bad pointers or shape (M=" + std::to_string(M) + " N=" + std::to_string(N) +
                               " K=" + std::to_string(K) + ")");
  if (gemv_wanted(x, ldx, sx, w, sw, M, K, w_f32)) return gemv(ctx, x, ldx, sx, w, sw, y, ldy, sy, M, N, K, batch, accumulate, w_f32);
  if (ctx->tensor_cores && !w_f32) return tc_linear(ctx, x, ldx, w, y, ldy, M, N, K, batch, sx, sw, sy, accumulate);
  GemmArgs a{x, ldx, nullptr, w, sw, y, ldy, M, N, K, sx, sy, accumulate, nullptr, nullptr, 0};
  if (M <= GEMV_MAX_ROWS) {
    const dim3 grid((N + 7) / 8, 1, batch);
    if (w_f32) gemv_kernel<float><<<grid, 256, 0, ctx->stream>>>(a);
    else gemv_kernel<bf16><<<grid, 256, 0, ctx->stream>>>(a);
  } else {
    const int mt = (M + BM - 1) / BM;
    if (mt > 65535) return fail(KLC_E_ARG, "klc_linear: more than 4 million rows in one call");
    const dim3 grid((N + BN - 1) / BN, mt, batch);
    if (w_f32) gemm_kernel<float><<<grid, GEMM_THREADS, 0, ctx->stream>>>(a);
    else gemm_kernel<bf16><<<grid, GEMM_THREADS, 0, ctx->stream>>>(a);
  }
  return launched("a linear layer");
}

}  // extern "C"
