// INT4 weight-only linear layer for a few rows (decode, batched decode): Y[M, N] (+)= X[M, K] Wᵀ with
// M <= 8 and W in compressed-tensors' pack-quantized layout as stored in the checkpoint, so no
// repacking at load: eight 4-bit codes per int32, lowest K index in the lowest nibble, rows of K / 8
// words; one bf16 scale per `group` columns of a row; zero points (asymmetric) packed eight rows to
// an int32 down the columns of [N, K / group]. A 16-byte load brings 32 consecutive weights of one
// group; each is turned into (q − z) exactly in fp32 (the code is OR-ed into the mantissa of 2^23,
// and 2^23 + z subtracted), multiplied into every row of X, and the group's sum is scaled once.
// A group of lanes owns one output column, as in gemv.cu.
#include <cuda_bf16.h>

#include <cstdint>

#include "internal.h"
#include "small_vec.cuh"

namespace {

using namespace klc_small;

constexpr int WARPS = 8, THREADS = 32 * WARPS;
constexpr int MAX_ROWS = 8;
constexpr int PER_VEC = 32;  // weights per 16-byte load

__device__ __forceinline__ float bf16_to_float(uint16_t h) { return __uint_as_float(static_cast<uint32_t>(h) << 16); }

// LANES lanes per output column, M <= ROWS.
template <int LANES, int ROWS>
__global__ void __launch_bounds__(THREADS) w4_gemv_kernel(klc_w4a16_args a) {
  constexpr int PER_WARP = 32 / LANES;
  const int lane = threadIdx.x & 31;
  const int first = (blockIdx.x * WARPS + (threadIdx.x >> 5)) * PER_WARP;
  if (first >= a.N) return;
  const int col = first + lane / LANES, sub = lane % LANES;
  const bool live = col < a.N;
  const int row = live ? col : first;
  const int nv = a.K / PER_VEC, groups = a.K / a.group, vecs_per_group = a.group / PER_VEC;
  const uint4 *w = reinterpret_cast<const uint4 *>(a.w_packed) + (size_t)row * nv;
  const uint16_t *scales = static_cast<const uint16_t *>(a.scales) + (size_t)row * groups;
  const int32_t *zp = a.zero_points ? a.zero_points + (size_t)(row >> 3) * groups : nullptr;
  const int zshift = 4 * (row & 7);
  float acc[ROWS] = {};
#pragma unroll(ROWS == 1 ? 4 : 2)
  for (int v = sub; v < nv; v += LANES) {
    const uint4 wv = load_stream(w + v);
    const int g = v / vecs_per_group;
    const float s = bf16_to_float(__ldg(scales + g));
    const int z = zp ? ((__ldg(zp + g) >> zshift) & 15) : 8;
    const float bias = 8388608.0f + static_cast<float>(z);
    const uint32_t words[4] = {wv.x, wv.y, wv.z, wv.w};
    float q[PER_VEC];
#pragma unroll
    for (int j = 0; j < 4; ++j)
#pragma unroll
      for (int i = 0; i < 8; ++i) q[8 * j + i] = __uint_as_float(0x4B000000u | ((words[j] >> (4 * i)) & 15u)) - bias;
#pragma unroll
    for (int r = 0; r < ROWS; ++r) {
      if (r >= a.M) break;
      const float *x = a.x + (size_t)r * a.ldx + (size_t)v * PER_VEC;
      float part = 0.f;
#pragma unroll
      for (int j = 0; j < 4; ++j) part = dot8(q + 8 * j, x + 8 * j, part);
      acc[r] = fmaf(s, part, acc[r]);
    }
  }
#pragma unroll
  for (int r = 0; r < ROWS; ++r) {
    if (r >= a.M) break;
    const float sum = group_sum<LANES>(acc[r]);
    if (live && sub == 0) {
      float *dst = a.y + (size_t)r * a.ldy + col;
      *dst = a.accumulate ? *dst + sum : sum;
    }
  }
}

template <int LANES, int ROWS>
void launch_rows(const klc_w4a16_args &a, cudaStream_t stream) {
  constexpr int cols_per_block = WARPS * 32 / LANES;
  w4_gemv_kernel<LANES, ROWS><<<(a.N + cols_per_block - 1) / cols_per_block, THREADS, 0, stream>>>(a);
}

template <int LANES>
void launch(const klc_w4a16_args &a, cudaStream_t stream) {
  if (a.M == 1) launch_rows<LANES, 1>(a, stream);
  else if (a.M <= 2) launch_rows<LANES, 2>(a, stream);
  else if (a.M <= 4) launch_rows<LANES, 4>(a, stream);
  else launch_rows<LANES, MAX_ROWS>(a, stream);
}

void launch_for(const klc_w4a16_args &a, cudaStream_t stream) {
  const int nv = a.K / PER_VEC;
  if (nv >= 32) launch<32>(a, stream);
  else if (nv >= 16) launch<16>(a, stream);
  else if (nv >= 8) launch<8>(a, stream);
  else launch<4>(a, stream);
}

int check(const klc_w4a16_args *a) {
  if (!a || !a->x || !a->w_packed || !a->scales || !a->y) return klc::fail(KLC_E_ARG, "w4a16 gemv: x, w_packed, scales and y are required");
  if (a->M < 1 || a->M > MAX_ROWS) return klc::fail(KLC_E_ARG, "w4a16 gemv: M must be 1..8 (use a GEMM for more rows)");
  if (a->N < 1 || a->K < PER_VEC || a->K % PER_VEC != 0) return klc::fail(KLC_E_ARG, "w4a16 gemv: K must be a positive multiple of 32");
  if (a->group < PER_VEC || a->group % PER_VEC != 0 || a->K % a->group != 0) {
    return klc::fail(KLC_E_ARG, "w4a16 gemv: group must be a multiple of 32 dividing K (K for one scale per row)");
  }
  if (a->ldx < a->K || a->ldy < a->N || a->ldx % 4 != 0 || !aligned16(a->x) || !aligned16(a->w_packed)) {
    return klc::fail(KLC_E_ARG, "w4a16 gemv: x and w_packed must be 16-byte aligned, ldx a multiple of 4 and >= K, ldy >= N");
  }
  return KLC_OK;
}

}  // namespace

extern "C" {

KLC_API int klc_w4a16_gemv(klc_ctx *ctx, const klc_w4a16_args *a) {
  if (int rc = check(a)) return rc;
  if (int rc = klc::use_device(ctx)) return rc;
  launch_for(*a, ctx->stream);
  const cudaError_t e = cudaGetLastError();
  return e == cudaSuccess ? KLC_OK : klc::fail_cuda(e, "the INT4 linear layer (few rows)");
}

KLC_API int klc_w4a16_time(klc_ctx *ctx, const klc_w4a16_args *a, int iters, float *ms_per_call) {
  if (int rc = check(a)) return rc;
  if (iters < 1 || !ms_per_call) return klc::fail(KLC_E_ARG, "w4a16 time: iters must be >= 1 and ms_per_call set");
  if (int rc = klc::use_device(ctx)) return rc;
  cudaEvent_t start, stop;
  cudaEventCreate(&start);
  cudaEventCreate(&stop);
  launch_for(*a, ctx->stream);
  cudaEventRecord(start, ctx->stream);
  for (int i = 0; i < iters; ++i) launch_for(*a, ctx->stream);
  cudaEventRecord(stop, ctx->stream);
  cudaError_t e = cudaEventSynchronize(stop);
  float ms = 0.f;
  if (e == cudaSuccess) e = cudaEventElapsedTime(&ms, start, stop);
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  if (e != cudaSuccess) return klc::fail_cuda(e, "timing the INT4 linear layer");
  *ms_per_call = ms / iters;
  return KLC_OK;
}

}  // extern "C"
