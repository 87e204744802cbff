// The fp32 CUDA-core GEMM (bf16 or fp32 weights) that klc_linear (linear.cu) and the MoE experts off
// tensor cores (moe.cu) launch. In an anonymous namespace: each of those units holds its own copy.
#pragma once

#include "ops_common.cuh"

namespace {

using klc_ops::wval;

// Linear layers: Y[M, N] (+)= X[M, K] · W[N, K]ᵀ, X fp32, W bf16, fp32 accumulation. A 64x64
// output tile per CTA, 4x4 per thread. Weights are bf16, or fp32 where the checkpoint stores fp32. Three ways to pick the rows: plain (optionally batched
// by blockIdx.z with strides), gathered (X row r is row rows[r]), and grouped: the rows are
// sorted by expert, group e owns rows [off[e], off[e+1]) and multiplies its own W + e * sw.
constexpr int BM = 64, BN = 64, BK = 16, GEMM_THREADS = 256;

struct GemmArgs {
  const float *x;
  int ldx;
  const int *gather;  // optional: X row of output row r is gather[r]
  const void *w;      // bf16 or fp32, by the kernel's template argument
  long long sw;       // per batch (plain) or per group (grouped) weight stride, in elements
  float *y;
  int ldy;
  int M, N, K;
  long long sx, sy;   // per batch strides of x and y (plain mode)
  int accumulate;
  const int *group_off;    // grouped mode: [groups + 1] row offsets
  const int *tile_start;   // grouped mode: [groups + 1] first row tile of each group
  int groups;
};

template <typename WT>
__global__ void __launch_bounds__(GEMM_THREADS) gemm_kernel(GemmArgs a) {
  __shared__ float As[BK][BM + 4];
  __shared__ float Ws[BK][BN + 4];
  int row0, row1;
  const WT *w = static_cast<const WT *>(a.w);
  const float *x = a.x;
  float *y = a.y;
  if (a.group_off) {
    const int tile = blockIdx.y;
    if (tile >= a.tile_start[a.groups]) return;
    int lo = 0, hi = a.groups - 1;  // the group whose tile range holds `tile`
    while (lo < hi) {
      const int mid = (lo + hi + 1) >> 1;
      if (a.tile_start[mid] <= tile) lo = mid; else hi = mid - 1;
    }
    row0 = a.group_off[lo] + (tile - a.tile_start[lo]) * BM;
    row1 = min(row0 + BM, a.group_off[lo + 1]);
    w += (size_t)lo * a.sw;
  } else {
    row0 = blockIdx.y * BM;
    row1 = min(row0 + BM, a.M);
    w += (size_t)blockIdx.z * a.sw;
    x += (size_t)blockIdx.z * a.sx;
    y += (size_t)blockIdx.z * a.sy;
  }
  const int col0 = blockIdx.x * BN;
  const int tid = threadIdx.x, tr = tid / 16, tc = tid % 16;
  float acc[4][4] = {};
  for (int k0 = 0; k0 < a.K; k0 += BK) {
    for (int e = tid; e < BM * BK; e += GEMM_THREADS) {
      const int r = e / BK, kk = e % BK;
      const int gr = row0 + r, gk = k0 + kk;
      float v = 0.f;
      if (gr < row1 && gk < a.K) {
        const int xr = a.gather ? a.gather[gr] : gr;
        v = x[(size_t)xr * a.ldx + gk];
      }
      As[kk][r] = v;
    }
    for (int e = tid; e < BN * BK; e += GEMM_THREADS) {
      const int c = e / BK, kk = e % BK;
      const int gc = col0 + c, gk = k0 + kk;
      Ws[kk][c] = (gc < a.N && gk < a.K) ? wval(w, (size_t)gc * a.K + gk) : 0.f;
    }
    __syncthreads();
#pragma unroll
    for (int kk = 0; kk < BK; ++kk) {
      float xa[4], wb[4];
#pragma unroll
      for (int i = 0; i < 4; ++i) xa[i] = As[kk][tr + 16 * i];
#pragma unroll
      for (int j = 0; j < 4; ++j) wb[j] = Ws[kk][tc + 16 * j];
#pragma unroll
      for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j) acc[i][j] = fmaf(xa[i], wb[j], acc[i][j]);
    }
    __syncthreads();
  }
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const int gr = row0 + tr + 16 * i;
    if (gr >= row1) continue;
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const int gc = col0 + tc + 16 * j;
      if (gc >= a.N) continue;
      float *dst = y + (size_t)gr * a.ldy + gc;
      *dst = a.accumulate ? *dst + acc[i][j] : acc[i][j];
    }
  }
}

}  // namespace
