// Weight-only quantized linear layer for a few rows (decode, batched decode): Y[M, N] (+)= X[M, K] Wᵀ
// with M <= 8 and W in compressed-tensors' pack-quantized layout as stored in the checkpoint (no
// repacking at load), 4-bit (W4A16) or 8-bit (W8A16) codes: 32 / BITS codes per int32, lowest K index
// in the lowest bits; one bf16 or fp32 scale per `group` columns of a row; zero points (asymmetric)
// packed 32 / BITS rows to an int32 down the columns of [N, K / group]. A 16-byte load brings 128 / BITS
// consecutive weights of one group; each is turned into (q − z) exactly in fp32 (the stored code is
// OR-ed into the mantissa of 2^23, and 2^23 + stored z subtracted), multiplied into every row of X,
// and the group's sum is scaled once. A group of lanes owns one output column, as in gemv.cu.
#include <cuda_bf16.h>

#include <cstdint>

#include "internal.h"
#include "small_vec.cuh"

namespace {

using namespace klc_small;

constexpr int WARPS = 8, THREADS = 32 * WARPS;
constexpr int MAX_ROWS = 8;

__device__ __forceinline__ float scale_at(const void *scales, int f32, size_t i) {
  return f32 ? __ldg(static_cast<const float *>(scales) + i)
             : __uint_as_float(static_cast<uint32_t>(__ldg(static_cast<const uint16_t *>(scales) + i)) << 16);
}

// LANES lanes per output column, M <= ROWS.
template <int BITS, int LANES, int ROWS>
__global__ void __launch_bounds__(THREADS)
    wq_gemv_kernel(const float *__restrict__ x, int ldx, klc_wq w, float *__restrict__ y, int ldy, int M, int accumulate) {
  constexpr int PER_VEC = 128 / BITS;  // weights per 16-byte load
  constexpr int PER_WORD = 32 / BITS;
  constexpr uint32_t MASK = (1u << BITS) - 1u;
  constexpr int OFFSET = 1 << (BITS - 1);
  constexpr int PER_WARP = 32 / LANES;
  const int lane = threadIdx.x & 31;
  const int first = (blockIdx.x * WARPS + (threadIdx.x >> 5)) * PER_WARP;
  if (first >= w.N) return;
  const int col = first + lane / LANES, sub = lane % LANES;
  const bool live = col < w.N;
  const int row = live ? col : first;
  const int nv = w.K / PER_VEC, groups = w.K / w.group, vecs_per_group = w.group / PER_VEC;
  const uint4 *wp = reinterpret_cast<const uint4 *>(w.w_packed) + (size_t)row * nv;
  const size_t srow = (size_t)row * groups;
  const int32_t *zp = w.zero_points ? w.zero_points + (size_t)(row / PER_WORD) * groups : nullptr;
  const int zshift = BITS * (row % PER_WORD);
  float acc[ROWS] = {};
#pragma unroll(ROWS == 1 ? 4 : 2)
  for (int v = sub; v < nv; v += LANES) {
    const uint4 wv = load_stream(wp + v);
    const int g = v / vecs_per_group;
    const float s = scale_at(w.scales, w.scales_f32, srow + g);
    const int z = zp ? static_cast<int>((static_cast<uint32_t>(__ldg(zp + g)) >> zshift) & MASK) : OFFSET;
    const float bias = 8388608.0f + static_cast<float>(z);
    const uint32_t words[4] = {wv.x, wv.y, wv.z, wv.w};
    float q[PER_VEC];
#pragma unroll
    for (int j = 0; j < 4; ++j)
#pragma unroll
      for (int i = 0; i < PER_WORD; ++i) q[PER_WORD * j + i] = __uint_as_float(0x4B000000u | ((words[j] >> (BITS * i)) & MASK)) - bias;
#pragma unroll
    for (int r = 0; r < ROWS; ++r) {
      if (r >= M) break;
      const float *xr = x + (size_t)r * ldx + (size_t)v * PER_VEC;
      float part = 0.f;
#pragma unroll
      for (int j = 0; j < PER_VEC / 8; ++j) part = dot8(q + 8 * j, xr + 8 * j, part);
      acc[r] = fmaf(s, part, acc[r]);
    }
  }
#pragma unroll
  for (int r = 0; r < ROWS; ++r) {
    if (r >= M) break;
    const float sum = group_sum<LANES>(acc[r]);
    if (live && sub == 0) {
      float *dst = y + (size_t)r * ldy + col;
      *dst = accumulate ? *dst + sum : sum;
    }
  }
}

struct Call {
  const float *x;
  int ldx;
  klc_wq w;
  float *y;
  int ldy, M, accumulate;
};

template <int BITS, int LANES, int ROWS>
void launch_rows(const Call &c, cudaStream_t stream) {
  constexpr int cols_per_block = WARPS * 32 / LANES;
  wq_gemv_kernel<BITS, LANES, ROWS>
      <<<(c.w.N + cols_per_block - 1) / cols_per_block, THREADS, 0, stream>>>(c.x, c.ldx, c.w, c.y, c.ldy, c.M, c.accumulate);
}

template <int BITS, int LANES>
void launch_lanes(const Call &c, cudaStream_t stream) {
  if (c.M == 1) launch_rows<BITS, LANES, 1>(c, stream);
  else if (c.M <= 2) launch_rows<BITS, LANES, 2>(c, stream);
  else if (c.M <= 4) launch_rows<BITS, LANES, 4>(c, stream);
  else launch_rows<BITS, LANES, MAX_ROWS>(c, stream);
}

// As many lanes per column as there are 16-byte vectors in a row, up to a warp: short rows
// (K = 1024 at 4 bits is 32 vectors) still keep every lane busy.
template <int BITS>
void launch_bits(const Call &c, cudaStream_t stream) {
  const int nv = c.w.K / (128 / BITS);
  if (nv >= 32) launch_lanes<BITS, 32>(c, stream);
  else if (nv >= 16) launch_lanes<BITS, 16>(c, stream);
  else if (nv >= 8) launch_lanes<BITS, 8>(c, stream);
  else launch_lanes<BITS, 4>(c, stream);
}

void launch(const Call &c, cudaStream_t stream) {
  if (c.w.bits == 4) launch_bits<4>(c, stream);
  else launch_bits<8>(c, stream);
}

int check(const Call &c) {
  const klc_wq &w = c.w;
  if (!c.x || !w.w_packed || !w.scales || !c.y) return klc::fail(KLC_E_ARG, "quantized gemv: x, w_packed, scales and y are required");
  if (w.bits != 4 && w.bits != 8) return klc::fail(KLC_E_ARG, "quantized gemv: bits must be 4 or 8");
  if (c.M < 1 || c.M > MAX_ROWS) return klc::fail(KLC_E_ARG, "quantized gemv: M must be 1..8 (use a GEMM for more rows)");
  const int per_vec = 128 / w.bits;
  if (w.N < 1 || w.K < per_vec || w.K % per_vec != 0) {
    return klc::fail(KLC_E_ARG, "quantized gemv: K must be a positive multiple of " + std::to_string(per_vec) + " at " + std::to_string(w.bits) + " bits");
  }
  if (w.group < per_vec || w.group % per_vec != 0 || w.K % w.group != 0) {
    return klc::fail(KLC_E_ARG, "quantized gemv: group must be a multiple of " + std::to_string(per_vec) + " dividing K (K for one scale per row)");
  }
  if (c.ldx < w.K || c.ldy < w.N || c.ldx % 4 != 0 || !aligned16(c.x) || !aligned16(w.w_packed)) {
    return klc::fail(KLC_E_ARG, "quantized gemv: x and w_packed must be 16-byte aligned, ldx a multiple of 4 and >= K, ldy >= N");
  }
  return KLC_OK;
}

}  // namespace

namespace klc {

bool wq_gemv_supported(const klc_wq &w) {
  if (w.bits != 4 && w.bits != 8) return false;
  const int per_vec = 128 / w.bits;
  return w.K % per_vec == 0 && w.group % per_vec == 0 && w.K % w.group == 0 && aligned16(w.w_packed);
}

}  // namespace klc

extern "C" {

KLC_API int klc_wq_gemv(klc_ctx *ctx, const float *x, int ldx, const klc_wq *w, float *y, int ldy, int M, int accumulate) {
  if (!w) return klc::fail(KLC_E_ARG, "quantized gemv: the weight is required");
  const Call c{x, ldx, *w, y, ldy, M, accumulate};
  if (int rc = check(c)) return rc;
  if (int rc = klc::use_device(ctx)) return rc;
  launch(c, ctx->stream);
  const cudaError_t e = cudaGetLastError();
  return e == cudaSuccess ? KLC_OK : klc::fail_cuda(e, "the quantized linear layer (few rows)");
}

KLC_API int klc_wq_gemv_time(klc_ctx *ctx, const float *x, int ldx, const klc_wq *w, float *y, int ldy, int M, int iters,
                             float *ms_per_call) {
  if (!w) return klc::fail(KLC_E_ARG, "quantized gemv time: the weight is required");
  const Call c{x, ldx, *w, y, ldy, M, 0};
  if (int rc = check(c)) return rc;
  if (iters < 1 || !ms_per_call) return klc::fail(KLC_E_ARG, "quantized gemv time: iters must be >= 1 and ms_per_call set");
  if (int rc = klc::use_device(ctx)) return rc;
  cudaEvent_t start, stop;
  cudaEventCreate(&start);
  cudaEventCreate(&stop);
  launch(c, ctx->stream);
  cudaEventRecord(start, ctx->stream);
  for (int i = 0; i < iters; ++i) launch(c, ctx->stream);
  cudaEventRecord(stop, ctx->stream);
  cudaError_t e = cudaEventSynchronize(stop);
  float ms = 0.f;
  if (e == cudaSuccess) e = cudaEventElapsedTime(&ms, start, stop);
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  if (e != cudaSuccess) return klc::fail_cuda(e, "timing the quantized linear layer");
  *ms_per_call = ms / iters;
  return KLC_OK;
}

}  // extern "C"
