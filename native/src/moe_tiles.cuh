// Pieces of the grouped MoE kernels (moe_wq_gemm.cu on mma.sync, moe_wgmma.cu on Hopper's wgmma): the
// rows klc_moe_experts gathers come in tiles of BM, grouped by expert; a CTA multiplies one tile by a
// block of one expert's weight rows, K in steps of BK. Shared rows of 64 bf16 (128 bytes) in the
// 128-byte swizzle: what ldmatrix reads without bank conflicts and what a wgmma descriptor names.
// Quantized weights: each thread loads 16-byte chunks of codes a step ahead (WeightChunks::fetch)
// and writes them to shared memory as bf16((q − z) · s) (put), the values klc_wq_dequant writes.
#pragma once

#include <cuda_bf16.h>

#include <cstdint>

#include "klc_native.h"
#include "mma_bf16.cuh"
#include "wq.cuh"

namespace klc_moe_tiles {

using namespace klc_wq_dev;
using bf16 = __nv_bfloat16;
using klc_mma::pack_bf16;

constexpr int BM = 64;       // rows per tile: klc_moe_experts' row tiles
constexpr int BK = 64;       // K per step: 8 chunks of 8 bf16 per shared row
struct Args {
  const bf16 *x;      // [padded rows, K] gathered rows
  const int *tiles;   // [E + 1] first row tile of each expert; tiles[E] tiles in all
  klc_wq w;           // up: W13 [E * 2I, d]; down: W2 [E * d, I]
  const bf16 *wb;     // the same as bf16 rows, for bf16 experts (RAW kernels; w unused)
  void *out;          // up: bf16 h [padded rows, I]; down: fp32 [padded rows, d]
  int K, E, I, d;
};

// Chunk c (16 bytes) of a 64-bf16 shared row lives at c ^ (row % 8): the 8 rows one ldmatrix reads
// hit 8 different bank groups.
__device__ __forceinline__ int swz(int row, int c) { return row * 8 + (c ^ (row & 7)); }

// The 16-byte chunk of codes one thread dequantizes per step, with its scale and zero point.
struct Fetched {
  uint4 v;
  float s;
  int z;
};

template <Codes C>
__device__ __forceinline__ void dequant_chunk(const Fetched &f, uint4 *dst_row, int row, int first) {
  constexpr int BITS = bits_of<C>;
  constexpr int CODES = 128 / BITS;
  const uint32_t words[4] = {f.v.x, f.v.y, f.v.z, f.v.w};
  // Each run of 8 codes as (q − z) or e4m3(q) · 2^-8 (wq.cuh codes8: no integer-to-float conversion, which runs
  // at a fraction of the FP32 rate: 32 per thread and step are a cost of the order of the step's MMAs), then
  // times the scale: the values klc_wq_dequant writes.
  const float bias = __uint_as_float(0x4B000000u | static_cast<uint32_t>(f.z)), s = C == Codes::E4M3 ? f.s * 256.f : f.s;
  float v[CODES];
#pragma unroll
  for (int q = 0; q < CODES / 8; ++q) {
    if constexpr (BITS == 8) codes8<C>(Raw8<8>{words[2 * q], words[2 * q + 1]}, bias, v + 8 * q);
    else codes8<C>(Raw8<4>{words[q]}, bias, v + 8 * q);
  }
#pragma unroll
  for (int i = 0; i < CODES; ++i) v[i] *= s;
#pragma unroll
  for (int q = 0; q < CODES / 8; ++q) {
    const uint4 packed{pack_bf16(v[8 * q], v[8 * q + 1]), pack_bf16(v[8 * q + 2], v[8 * q + 3]), pack_bf16(v[8 * q + 4], v[8 * q + 5]),
                       pack_bf16(v[8 * q + 6], v[8 * q + 7])};
    dst_row[swz(row, first + q)] = packed;
  }
}

// The expert whose row tiles hold tile t: the last one whose first tile is at or before t.
__device__ __forceinline__ int expert_of_tile(const int *tiles, int E, int t) {
  int lo = 0, hi = E - 1;
  while (lo < hi) {
    const int mid = (lo + hi + 1) >> 1;
    if (__ldg(tiles + mid) <= t) lo = mid; else hi = mid - 1;
  }
  return lo;
}

// The chunks of codes of a CTA's BN weight rows that one of its THREADS threads fetches and
// dequantizes per step: CPR chunks a row, WCH a thread.
template <Codes C, int BN, int THREADS>
struct WeightChunks {
  static constexpr int BITS = bits_of<C>;
  static constexpr int CODES = 128 / BITS;  // codes per 16-byte chunk
  static constexpr int CPR = BK / CODES;    // chunks of a weight row per step: 4 (8-bit) or 2 (4-bit)
  static constexpr int WCH = BN * CPR / THREADS;
  static constexpr int PER_WORD = 32 / BITS;
  static_assert(WCH >= 1 && BN * CPR % THREADS == 0, "every thread takes whole chunks");
  int lrow[WCH], part[WCH];
  size_t grow[WCH];
  Fetched f[WCH];

  // global_row(lr): the row of the stacked matrix that local weight row lr is.
  template <typename RowOf>
  __device__ __forceinline__ WeightChunks(int tid, RowOf global_row) {
#pragma unroll
    for (int j = 0; j < WCH; ++j) {
      const int c = tid + j * THREADS;
      lrow[j] = c / CPR;
      part[j] = c % CPR;
      grow[j] = global_row(lrow[j]);
    }
  }

  // Step kt's codes, scales and zero points into registers.
  __device__ __forceinline__ void fetch(const klc_wq &w, int K, int kt) {
    const int groups = K / w.group, words = K / PER_WORD;
#pragma unroll
    for (int j = 0; j < WCH; ++j) {
      const int k = kt * BK + part[j] * CODES, g = k / w.group;
      f[j].v = __ldg(reinterpret_cast<const uint4 *>(w.w_packed + grow[j] * words + k / PER_WORD));
      f[j].s = scale_at(w, grow[j] * groups + g);
      f[j].z = C == Codes::E4M3 ? 0 : stored_zero<BITS>(w, static_cast<int>(grow[j]), g, groups);
    }
  }

  // The fetched step, dequantized, into the shared weight rows at dst.
  __device__ __forceinline__ void put(uint4 *dst) const {
#pragma unroll
    for (int j = 0; j < WCH; ++j) dequant_chunk<C>(f[j], dst, lrow[j], part[j] * (CODES / 8));
  }
};

}  // namespace klc_moe_tiles

namespace klc {
// moe_wgmma.cu: whether its Hopper kernels serve these widths on ctx's device (unless KLC_MOE_WGMMA=0),
// and the gate/up then down projections on them.
bool moe_wgmma_ready(klc_ctx *ctx, int d, int I);
int moe_wgmma(klc_ctx *ctx, const klc_moe_tiles::Args &up, const klc_moe_tiles::Args &down, int max_tiles);
}  // namespace klc
