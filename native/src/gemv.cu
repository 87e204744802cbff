// klc_linear for a few rows (decode, batched decode, short prompts): Y[M, N] (+)= X[M, K] Wᵀ with
// M <= 8 reads each weight row once in 16-byte vectors and multiplies it into every row of X in
// fp32, straight from the fp32 activations: no bf16 staging pass and no cuBLAS launch, in both the
// exact and the tensor-core mode. A group of lanes (a warp for wide K, fewer for narrow K) owns one
// output column.
#include <cuda_bf16.h>

#include "internal.h"
#include "pdl.cuh"
#include "small_vec.cuh"

namespace {

using bf16 = __nv_bfloat16;
using namespace klc_small;

constexpr int WARPS = 8, THREADS = 32 * WARPS;
constexpr int MAX_ROWS = 8;

struct GemvArgs {
  const float *x;
  int ldx;
  long long sx;
  const void *w;
  long long sw;
  float *y;
  int ldy;
  long long sy;
  int M, N, K, accumulate;
};

template <typename WT>
struct Vec;
template <>
struct Vec<bf16> {
  static constexpr int n = 8;
  __device__ static float dot(const uint4 &v, const float *x, float acc) {
    float f[8];
    unpack_bf16x8(v, f);
    return dot8(f, x, acc);
  }
};
template <>
struct Vec<float> {
  static constexpr int n = 4;
  __device__ static float dot(const uint4 &v, const float *x, float acc) {
    const float4 a = *reinterpret_cast<const float4 *>(x);
    acc = fmaf(__uint_as_float(v.x), a.x, acc);
    acc = fmaf(__uint_as_float(v.y), a.y, acc);
    acc = fmaf(__uint_as_float(v.z), a.z, acc);
    return fmaf(__uint_as_float(v.w), a.w, acc);
  }
};

// LANES lanes per output column, M <= ROWS; blockIdx.z is the batch.
template <typename WT, int LANES, int ROWS>
__global__ void __launch_bounds__(THREADS) gemv_kernel(GemvArgs a) {
  constexpr int PER_WARP = 32 / LANES, VEC = Vec<WT>::n;
  pdl_wait();
  pdl_trigger();
  const int lane = threadIdx.x & 31;
  const int first = (blockIdx.x * WARPS + (threadIdx.x >> 5)) * PER_WARP;
  if (first >= a.N) return;
  const int col = first + lane / LANES, sub = lane % LANES;
  const bool live = col < a.N;
  const WT *w = static_cast<const WT *>(a.w) + (size_t)blockIdx.z * a.sw + (size_t)(live ? col : first) * a.K;
  const float *x = a.x + (size_t)blockIdx.z * a.sx;
  float acc[ROWS] = {};
  const int nv = a.K / VEC;
#pragma unroll 4
  for (int v = sub; v < nv; v += LANES) {
    const uint4 wv = load_stream(w + (size_t)v * VEC);
#pragma unroll
    for (int r = 0; r < ROWS; ++r)
      if (r < a.M) acc[r] = Vec<WT>::dot(wv, x + (size_t)r * a.ldx + v * VEC, acc[r]);
  }
  float *y = a.y + (size_t)blockIdx.z * a.sy + col;
#pragma unroll
  for (int r = 0; r < ROWS; ++r) {
    if (r >= a.M) break;
    const float s = group_sum<LANES>(acc[r]);
    if (live && sub == 0) {
      float *dst = y + (size_t)r * a.ldy;
      *dst = a.accumulate ? *dst + s : s;
    }
  }
}

template <typename WT, int LANES, int ROWS>
cudaError_t launch_rows(klc_ctx *ctx, const GemvArgs &a, int batch) {
  constexpr int cols_per_block = WARPS * 32 / LANES;
  return klc::launch_pdl(ctx, gemv_kernel<WT, LANES, ROWS>, dim3((a.N + cols_per_block - 1) / cols_per_block, 1, batch), THREADS, 0, a);
}

// Accumulators for as few rows as the call has: one row (decode) keeps the registers low.
template <typename WT, int LANES>
cudaError_t launch(klc_ctx *ctx, const GemvArgs &a, int batch) {
  if (a.M == 1) return launch_rows<WT, LANES, 1>(ctx, a, batch);
  if (a.M <= 2) return launch_rows<WT, LANES, 2>(ctx, a, batch);
  if (a.M <= 4) return launch_rows<WT, LANES, 4>(ctx, a, batch);
  return launch_rows<WT, LANES, MAX_ROWS>(ctx, a, batch);
}

// Lanes per column: enough to cover a row's vectors in one pass where K is narrow.
template <typename WT>
cudaError_t launch_for(klc_ctx *ctx, const GemvArgs &a, int batch) {
  const int nv = a.K / Vec<WT>::n;
  if (nv >= 32) return launch<WT, 32>(ctx, a, batch);
  if (nv >= 16) return launch<WT, 16>(ctx, a, batch);
  if (nv >= 8) return launch<WT, 8>(ctx, a, batch);
  return launch<WT, 4>(ctx, a, batch);
}

}  // namespace

namespace klc {

bool gemv_wanted(const float *x, int ldx, long long sx, const void *w, long long sw, int M, int K, int w_f32) {
  const int vec = w_f32 ? 4 : 8;
  return small_batch_enabled() && M <= MAX_ROWS && K % vec == 0 && sw % vec == 0 && ldx % 4 == 0 && sx % 4 == 0 && aligned16(x) &&
         aligned16(w);
}

int gemv(klc_ctx *ctx, const float *x, int ldx, long long sx, const void *w, long long sw, float *y, int ldy, long long sy, int M,
         int N, int K, int batch, int accumulate, int w_f32) {
  const GemvArgs a{x, ldx, sx, w, sw, y, ldy, sy, M, N, K, accumulate};
  return launched(w_f32 ? launch_for<float>(ctx, a, batch) : launch_for<bf16>(ctx, a, batch), "a linear layer (few rows)");
}

}  // namespace klc
