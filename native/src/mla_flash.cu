// MLA causal prefill attention on tensor cores, flash-style, over up-projected per-head keys and
// values (klc_mla_prefill_heads). Why this form and not the absorbed one: per (query, key, head)
// the absorbed form multiplies 576 + 512 wide vectors, the up-projected one 192 + 128, 3.4x fewer
// FLOPs; the up-projection itself is one GEMM per key per layer (kv_lora 512 -> 32 x 256), which
// costs less than the attention as soon as a prefill is a few hundred tokens long. Long prefills are
// compute bound, so FLOPs decide. The per-head keys and values (20 KiB per token at Kimi's widths)
// are built for one block of keys at a time, so memory stays bounded at any context length; the
// running softmax (max, sum, unnormalised output) is carried across key blocks.
//
// The kernel is FlashAttention-2 with mma.sync m16n8k16 (bf16 operands, fp32 accumulation): a CTA
// of 4 warps takes 64 query tokens of one head, each warp 16 rows; key and value tiles of 64 keys
// are double-buffered in shared memory with cp.async; scores stay in registers, the softmax is
// online, and probabilities are rounded to bf16 as the A operand of the value product.
//
// On Hopper the key-block step runs the wgmma kernel of mla_wgmma.cu instead, over bf16 keys and
// transposed values that cuBLAS writes directly. KLC_MLA_KERNEL picks the kernel: auto (the default:
// wgmma_pipe where the build and the GPU have it, else fa2), fa2, wgmma, wgmma_pipe (softmax overlapped
// with the tensor cores: 2-5% faster than wgmma on an H100, round-h100-2026-12-07i) or wgmma_ws
// (warp-specialized; the Hopper ones are errors where unavailable).
#include <cuda_bf16.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <string>

#include "internal.h"
#include "mla_cache.cuh"
#include "mma_bf16.cuh"

namespace {

using bf16 = __nv_bfloat16;

constexpr int QK = 192, DV = 128;         // per-head query/key width (nope 128 + rope 64) and value width
constexpr int BM = 64, BN = 64;           // query tokens per CTA, keys per tile
constexpr int THREADS = 128;              // 4 warps of 16 query rows
constexpr int QS = QK + 8, VS = DV + 8;   // padded shared rows: the 8 rows one ldmatrix reads fall in distinct banks
constexpr int KEY_BLOCK = 8192;           // keys up-projected at a time
constexpr size_t SMEM = sizeof(bf16) * ((size_t)BM * QS + 2 * BN * QS + 2 * BN * VS);

using klc_mma::cp_commit;
using klc_mma::cp_wait;
using klc_mma::ldsm_x4;
using klc_mma::ldsm_x4_trans;
using klc_mma::mma_bf16;
using klc_mma::pack_bf16;
using klc_mma::smem_addr;

// 16 bytes global -> shared; when !valid nothing is read and the destination is zero-filled.
__device__ __forceinline__ void cp16(bf16 *dst, const bf16 *src, bool valid) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_addr(dst)), "l"(src), "r"(valid ? 16 : 0));
}

struct FlashArgs {
  const float *q;  // [T, H, QK] fp32
  const bf16 *k;   // [H, nk, QK]: keys k0 .. k0 + nk of this block
  const bf16 *v;   // [H, nk, DV]
  float *out;      // [T, H * DV], normalised, when mode has no WRITE_CARRY
  float *carry;    // [T * H, DV] unnormalised sums
  float *ml;       // [T * H, 2]: running max (in log2 units) and sum of the softmax
  int T, H, start, k0, nk, mode;
  float scale_log2;  // softmax scale times log2(e): exp2 of scaled scores
};
constexpr int READ_CARRY = klc::MLA_READ_CARRY, WRITE_CARRY = klc::MLA_WRITE_CARRY;

// Grid (query tiles that see this key block, H). Query token t sees absolute keys j <= start + t.
__global__ void __launch_bounds__(THREADS, 2) mla_flash_kernel(const FlashArgs a) {
  extern __shared__ __align__(16) unsigned char smem_raw[];
  bf16 *Qs = reinterpret_cast<bf16 *>(smem_raw);
  bf16 *Ks = Qs + BM * QS;
  bf16 *Vs = Ks + 2 * BN * QS;
  const int h = blockIdx.y;
  // The last query tiles see the most keys: they start first.
  const int q0 = ((a.T + BM - 1) / BM - 1 - (int)blockIdx.x) * BM;
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, g = lane >> 2, c = lane & 3;

  for (int e = tid; e < BM * QK / 4; e += THREADS) {
    const int r = e / (QK / 4), c4 = e % (QK / 4) * 4, t = q0 + r;
    float4 x = make_float4(0.f, 0.f, 0.f, 0.f);
    if (t < a.T) x = *reinterpret_cast<const float4 *>(a.q + ((size_t)t * a.H + h) * QK + c4);
    bf16 *d = Qs + r * QS + c4;
    *reinterpret_cast<__nv_bfloat162 *>(d) = __floats2bfloat162_rn(x.x, x.y);
    *reinterpret_cast<__nv_bfloat162 *>(d + 2) = __floats2bfloat162_rn(x.z, x.w);
  }

  // Local keys any row of this tile may see, in whole tiles.
  const int last_t = min(q0 + BM, a.T) - 1;
  const int kend = min(a.nk, a.start + last_t + 1 - a.k0);
  const int tiles = (kend + BN - 1) / BN;
  const bf16 *kg = a.k + (size_t)h * a.nk * QK;
  const bf16 *vg = a.v + (size_t)h * a.nk * DV;
  auto load_tile = [&](int j, int buf) {
    bf16 *kd = Ks + buf * BN * QS, *vd = Vs + buf * BN * VS;
    for (int e = tid; e < BN * QK / 8; e += THREADS) {
      const int r = e / (QK / 8), c8 = e % (QK / 8) * 8, key = j * BN + r;
      const bool ok = key < a.nk;
      cp16(kd + r * QS + c8, kg + (size_t)(ok ? key : 0) * QK + c8, ok);
    }
    for (int e = tid; e < BN * DV / 8; e += THREADS) {
      const int r = e / (DV / 8), c8 = e % (DV / 8) * 8, key = j * BN + r;
      const bool ok = key < a.nk;
      cp16(vd + r * VS + c8, vg + (size_t)(ok ? key : 0) * DV + c8, ok);
    }
  };
  load_tile(0, 0);
  cp_commit();
  __syncthreads();

  unsigned qf[QK / 16][4];
#pragma unroll
  for (int ks = 0; ks < QK / 16; ++ks)
    ldsm_x4(qf[ks][0], qf[ks][1], qf[ks][2], qf[ks][3],
            Qs + (warp * 16 + (lane & 7) + ((lane >> 3) & 1) * 8) * QS + ks * 16 + (lane >> 4) * 8);

  // This thread's two rows: g and g + 8 of the warp's 16.
  int trow[2];
  trow[0] = q0 + warp * 16 + g;
  trow[1] = trow[0] + 8;
  float o[DV / 8][4], m[2], l[2];
#pragma unroll
  for (int i = 0; i < 2; ++i) {
    const size_t r = (size_t)trow[i] * a.H + h;
    const bool have = (a.mode & READ_CARRY) && trow[i] < a.T;
#pragma unroll
    for (int dt = 0; dt < DV / 8; ++dt) {
      const float2 x = have ? *reinterpret_cast<const float2 *>(a.carry + r * DV + dt * 8 + 2 * c) : make_float2(0.f, 0.f);
      o[dt][2 * i] = x.x;
      o[dt][2 * i + 1] = x.y;
    }
    m[i] = have ? a.ml[2 * r] : -INFINITY;
    // The carried sum counts once: the four threads of a row add their parts at the end.
    l[i] = have && c == 0 ? a.ml[2 * r + 1] : 0.f;
  }

  for (int j = 0; j < tiles; ++j) {
    if (j + 1 < tiles) load_tile(j + 1, (j + 1) & 1);
    cp_commit();
    cp_wait<1>();
    __syncthreads();
    const bf16 *kb = Ks + (j & 1) * BN * QS, *vb = Vs + (j & 1) * BN * VS;

    float s[BN / 8][4];
#pragma unroll
    for (int n = 0; n < BN / 8; ++n) s[n][0] = s[n][1] = s[n][2] = s[n][3] = 0.f;
#pragma unroll
    for (int ks = 0; ks < QK / 16; ++ks) {
#pragma unroll
      for (int p = 0; p < BN / 16; ++p) {
        unsigned b0, b1, b2, b3;
        ldsm_x4(b0, b1, b2, b3, kb + (p * 16 + (lane & 7) + (lane >> 4) * 8) * QS + ks * 16 + ((lane >> 3) & 1) * 8);
        mma_bf16(s[2 * p], qf[ks], b0, b1);
        mma_bf16(s[2 * p + 1], qf[ks], b2, b3);
      }
    }

    // Scale, and hide keys past the row's position or past the block.
    const int key0 = j * BN + 2 * c;
    float mx[2] = {m[0], m[1]};
#pragma unroll
    for (int n = 0; n < BN / 8; ++n) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int key = key0 + n * 8 + (e & 1);
        const bool seen = key < a.nk && a.k0 + key <= a.start + trow[e >> 1];
        s[n][e] = seen ? s[n][e] * a.scale_log2 : -INFINITY;
        mx[e >> 1] = fmaxf(mx[e >> 1], s[n][e]);
      }
    }
    float base[2];
#pragma unroll
    for (int i = 0; i < 2; ++i) {
      mx[i] = fmaxf(mx[i], __shfl_xor_sync(0xffffffffu, mx[i], 1));
      mx[i] = fmaxf(mx[i], __shfl_xor_sync(0xffffffffu, mx[i], 2));
      // A row that has seen no key yet keeps everything at zero.
      base[i] = mx[i] == -INFINITY ? 0.f : mx[i];
      const float alpha = exp2f(m[i] - base[i]);
      m[i] = mx[i];
      l[i] *= alpha;
#pragma unroll
      for (int dt = 0; dt < DV / 8; ++dt) {
        o[dt][2 * i] *= alpha;
        o[dt][2 * i + 1] *= alpha;
      }
    }
#pragma unroll
    for (int n = 0; n < BN / 8; ++n) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        s[n][e] = exp2f(s[n][e] - base[e >> 1]);
        l[e >> 1] += s[n][e];
      }
    }

#pragma unroll
    for (int kk = 0; kk < BN / 16; ++kk) {
      const unsigned pa[4] = {pack_bf16(s[2 * kk][0], s[2 * kk][1]), pack_bf16(s[2 * kk][2], s[2 * kk][3]),
                              pack_bf16(s[2 * kk + 1][0], s[2 * kk + 1][1]), pack_bf16(s[2 * kk + 1][2], s[2 * kk + 1][3])};
#pragma unroll
      for (int p = 0; p < DV / 16; ++p) {
        unsigned b0, b1, b2, b3;
        ldsm_x4_trans(b0, b1, b2, b3, vb + (kk * 16 + (lane & 7) + ((lane >> 3) & 1) * 8) * VS + p * 16 + (lane >> 4) * 8);
        mma_bf16(o[2 * p], pa, b0, b1);
        mma_bf16(o[2 * p + 1], pa, b2, b3);
      }
    }
    // The next iteration loads into the buffer this one read.
    __syncthreads();
  }
  cp_wait<0>();

#pragma unroll
  for (int i = 0; i < 2; ++i) {
    l[i] += __shfl_xor_sync(0xffffffffu, l[i], 1);
    l[i] += __shfl_xor_sync(0xffffffffu, l[i], 2);
    if (trow[i] >= a.T) continue;
    const size_t r = (size_t)trow[i] * a.H + h;
    if (a.mode & WRITE_CARRY) {
#pragma unroll
      for (int dt = 0; dt < DV / 8; ++dt)
        *reinterpret_cast<float2 *>(a.carry + r * DV + dt * 8 + 2 * c) = make_float2(o[dt][2 * i], o[dt][2 * i + 1]);
      if (c == 0) {
        a.ml[2 * r] = m[i];
        a.ml[2 * r + 1] = l[i];
      }
    } else {
      const float inv = 1.f / l[i];
#pragma unroll
      for (int dt = 0; dt < DV / 8; ++dt)
        *reinterpret_cast<float2 *>(a.out + r * DV + dt * 8 + 2 * c) = make_float2(o[dt][2 * i] * inv, o[dt][2 * i + 1] * inv);
    }
  }
}

__global__ void finish_kernel(const float *carry, const float *ml, float *out, size_t rows) {
  const size_t n = rows * DV;
  for (size_t e = blockIdx.x * (size_t)blockDim.x + threadIdx.x; e < n; e += (size_t)gridDim.x * blockDim.x)
    out[e] = carry[e] / ml[2 * (e / DV) + 1];
}

// wuk[h, n, c] = w_uk_t[h, c, n]: the key up-projection as rows of a GEMM's W.
__global__ void transpose_uk_kernel(const bf16 *w_uk_t, bf16 *wuk, int H, int nope, int L) {
  const size_t n = (size_t)H * nope * L;
  for (size_t e = blockIdx.x * (size_t)blockDim.x + threadIdx.x; e < n; e += (size_t)gridDim.x * blockDim.x) {
    const size_t col = e % L, row = e / L, h = row / nope, r = row % nope;
    wuk[e] = w_uk_t[(h * L + col) * nope + r];
  }
}

// cb[j, :] = bf16(cache[k0 + j, :L]) (a copy when the cache is bf16).
template <typename CT>
__global__ void latents_bf16_kernel(const CT *cache, bf16 *cb, int k0, int nk, int D, int L) {
  const size_t n = (size_t)nk * L;
  for (size_t e = blockIdx.x * (size_t)blockDim.x + threadIdx.x; e < n; e += (size_t)gridDim.x * blockDim.x)
    cb[e] = __float2bfloat16(klc::cache_f32(cache[(k0 + e / L) * (size_t)D + e % L]));
}

// kb[h, j, :] = bf16(y[j, h, :nope] ++ cache[k0 + j, L:L+rope]): per-head keys from the up-projection
// (y [nk, H, nope]) and the rope part every head shares.
template <typename CT>
__global__ void keys_kernel(const float *y, const CT *cache, bf16 *kb, int k0, int nk, int H, int nope, int D, int L) {
  const size_t n = (size_t)H * nk * QK;
  for (size_t e = blockIdx.x * (size_t)blockDim.x + threadIdx.x; e < n; e += (size_t)gridDim.x * blockDim.x) {
    const int d = (int)(e % QK);
    const size_t hj = e / QK, h = hj / nk, j = hj % nk;
    const float x = d < nope ? y[(j * H + h) * nope + d] : klc::cache_f32(cache[(k0 + j) * (size_t)D + L + d - nope]);
    kb[e] = __float2bfloat16(x);
  }
}

// vb[h, j, :] = bf16(y[j, h, :]) for y [nk, H, DV].
__global__ void values_kernel(const float *y, bf16 *vb, int nk, int H) {
  const size_t n = (size_t)H * nk * DV;
  for (size_t e = blockIdx.x * (size_t)blockDim.x + threadIdx.x; e < n; e += (size_t)gridDim.x * blockDim.x) {
    const size_t hj = e / DV, h = hj / nk, j = hj % nk;
    vb[e] = __float2bfloat16(y[(j * H + h) * DV + e % DV]);
  }
}

// kb[h, j, nope:] = bf16(cache[k0 + j, L:L+rope]) for every head: the rope part of the keys that the
// bf16 up-projection GEMM leaves to be filled.
template <typename CT>
__global__ void rope_keys_kernel(const CT *cache, bf16 *kb, int k0, int nk, int H, int nope, int rope, int D, int L) {
  const size_t n = (size_t)H * nk * rope;
  for (size_t e = blockIdx.x * (size_t)blockDim.x + threadIdx.x; e < n; e += (size_t)gridDim.x * blockDim.x) {
    const int d = (int)(e % rope);
    const size_t hj = e / rope, j = hj % nk;
    kb[hj * QK + nope + d] = __float2bfloat16(klc::cache_f32(cache[(k0 + j) * (size_t)D + L + d]));
  }
}

int grid_for(size_t n) { return (int)std::max<size_t>(1, std::min<size_t>((n + 255) / 256, 65535 * 16)); }

using klc::launched;

size_t align256(size_t b) { return (b + 255) & ~(size_t)255; }

enum class Kernel { fa2, wgmma, wgmma_pipe, wgmma_ws };

// The kernel KLC_MLA_KERNEL asks for on this context's device.
int choose_kernel(klc_ctx *ctx, Kernel *k) {
  const char *env = std::getenv("KLC_MLA_KERNEL");
  const std::string want = env && *env ? env : "auto";
  if (want == "fa2") {
    *k = Kernel::fa2;
    return KLC_OK;
  }
  if (want != "auto" && want != "wgmma" && want != "wgmma_pipe" && want != "wgmma_ws")
    return klc::fail(KLC_E_ARG, "KLC_MLA_KERNEL=" + want + " names no MLA prefill kernel; use auto, fa2, wgmma, wgmma_pipe or wgmma_ws");
  const bool hopper = klc::mla_wgmma_ready(ctx);
  if (want != "auto" && !hopper)
    return klc::fail(KLC_E_ARG, "KLC_MLA_KERNEL=" + want + " needs an H100/H200 (compute capability 9.0) and a native build "
                                "with 90 in --archs; unset KLC_MLA_KERNEL or set it to auto or fa2");
  *k = !hopper ? Kernel::fa2 : want == "wgmma_ws" ? Kernel::wgmma_ws : want == "wgmma" ? Kernel::wgmma : Kernel::wgmma_pipe;
  return KLC_OK;
}

// The Hopper path: per key block, bf16 latents, then per-head keys (cuBLAS writes the nope part as
// bf16 into rows of 192, a small kernel the shared rope part) and the values transposed, then the
// wgmma kernel, carrying the softmax across blocks.
template <typename CT>
int prefill_wgmma(klc_ctx *ctx, klc::MlaHopper form, const float *q, const CT *cache, const void *w_uk_t, const void *w_uv,
                  float *out, int T, int H, int start, int nope, int rope, int L, float scale) {
  using namespace klc;
  const int D = L + rope, total = start + T;
  const int blocks = (total + KEY_BLOCK - 1) / KEY_BLOCK;
  const int kb_max = std::min(total, KEY_BLOCK), ldv_max = (kb_max + 7) & ~7;
  const size_t rows = (size_t)T * H;
  void *f32_area = nullptr, *bf16_area = nullptr;
  int rc;
  if (blocks > 1 && (rc = scratch(ctx, 1, align256(sizeof(float) * rows * DV) + sizeof(float) * rows * 2, &f32_area))) return rc;
  const size_t cb_bytes = align256(sizeof(bf16) * (size_t)kb_max * L), wuk_bytes = align256(sizeof(bf16) * (size_t)H * nope * L);
  const size_t k_bytes = align256(sizeof(bf16) * (size_t)H * kb_max * QK);
  if ((rc = scratch(ctx, 2, cb_bytes + wuk_bytes + k_bytes + sizeof(bf16) * (size_t)H * DV * ldv_max, &bf16_area))) return rc;
  float *carry = static_cast<float *>(f32_area);
  float *ml = carry ? carry + align256(sizeof(float) * rows * DV) / sizeof(float) : nullptr;
  char *b = static_cast<char *>(bf16_area);
  bf16 *cb = reinterpret_cast<bf16 *>(b), *wuk = reinterpret_cast<bf16 *>(b + cb_bytes);
  bf16 *kb = reinterpret_cast<bf16 *>(b + cb_bytes + wuk_bytes), *vt = reinterpret_cast<bf16 *>(b + cb_bytes + wuk_bytes + k_bytes);

  transpose_uk_kernel<<<grid_for((size_t)H * nope * L), 256, 0, ctx->stream>>>(static_cast<const bf16 *>(w_uk_t), wuk, H, nope, L);
  if ((rc = launched("transposing the MLA key up-projection"))) return rc;
  for (int blk = 0; blk < blocks; ++blk) {
    const int k0 = blk * KEY_BLOCK, nk = std::min(KEY_BLOCK, total - k0), ldv = (nk + 7) & ~7;
    latents_bf16_kernel<<<grid_for((size_t)nk * L), 256, 0, ctx->stream>>>(cache, cb, k0, nk, D, L);
    if ((rc = launched("rounding the MLA latents to bf16"))) return rc;
    // Head h's keys: kb[h, j, :nope] = c_j W_UK[h]ᵀ, one strided batch over the heads.
    if ((rc = gemm_bf16_nt_to_bf16(ctx, cb, L, 0, wuk, L, (long long)nope * L, kb, QK, (long long)nk * QK, nk, nope, L, H)))
      return rc;
    rope_keys_kernel<<<grid_for((size_t)H * nk * rope), 256, 0, ctx->stream>>>(cache, kb, k0, nk, H, nope, rope, D, L);
    if ((rc = launched("copying the MLA rope keys"))) return rc;
    // All heads' values transposed: vt[h * dv + d, j] = (W_UV c_j)[h * dv + d].
    if ((rc = gemm_bf16_nt_to_bf16(ctx, w_uv, L, 0, cb, L, 0, vt, ldv, 0, H * DV, nk, L, 1))) return rc;
    const MlaBlock a{q, kb, vt, ldv, out, carry, ml, T, H, start, k0, nk,
                     blocks == 1 ? 0 : (blk ? MLA_READ_CARRY : 0) | MLA_WRITE_CARRY, scale * 1.4426950408889634f};
    if ((rc = mla_wgmma_block(ctx, a, form))) return rc;
  }
  if (blocks > 1) {
    finish_kernel<<<grid_for(rows * DV), 256, 0, ctx->stream>>>(carry, ml, out, rows);
    rc = launched("normalising the MLA prefill output");
  }
  return rc;
}

// The portable path (sm_80 and newer): per key block, bf16 latents, the fp32 up-projections of keys
// and values into per-head bf16 rows, then the mma.sync flash kernel, carrying the softmax.
template <typename CT>
int prefill_fa2(klc_ctx *ctx, const float *q, const CT *cache, const void *w_uk_t, const void *w_uv, float *out, int T, int H,
                int start, int nope, int rope, int L, float scale) {
  using namespace klc;
  int rc;
  const int D = L + rope, total = start + T;
  const int blocks = (total + KEY_BLOCK - 1) / KEY_BLOCK;
  const int kb_max = std::min(total, KEY_BLOCK);
  const size_t rows = (size_t)T * H;
  // Slot 1: the fp32 up-projection of a key block, then (several blocks only) the carried softmax.
  const size_t y_bytes = align256(sizeof(float) * (size_t)kb_max * H * DV);
  const size_t carry_bytes = blocks > 1 ? align256(sizeof(float) * rows * DV) + sizeof(float) * rows * 2 : 0;
  void *f32_area = nullptr, *bf16_area = nullptr;
  if ((rc = scratch(ctx, 1, y_bytes + carry_bytes, &f32_area))) return rc;
  // Slot 2: bf16 latents of a key block, the transposed key up-projection, per-head keys and values.
  const size_t cb_bytes = align256(sizeof(bf16) * (size_t)kb_max * L), wuk_bytes = align256(sizeof(bf16) * (size_t)H * nope * L);
  const size_t k_bytes = align256(sizeof(bf16) * (size_t)H * kb_max * QK);
  if ((rc = scratch(ctx, 2, cb_bytes + wuk_bytes + k_bytes + sizeof(bf16) * (size_t)H * kb_max * DV, &bf16_area))) return rc;
  float *y = static_cast<float *>(f32_area);
  float *carry = reinterpret_cast<float *>(static_cast<char *>(f32_area) + y_bytes);
  float *ml = carry + align256(sizeof(float) * rows * DV) / sizeof(float);
  char *b = static_cast<char *>(bf16_area);
  bf16 *cb = reinterpret_cast<bf16 *>(b), *wuk = reinterpret_cast<bf16 *>(b + cb_bytes);
  bf16 *kb = reinterpret_cast<bf16 *>(b + cb_bytes + wuk_bytes), *vb = reinterpret_cast<bf16 *>(b + cb_bytes + wuk_bytes + k_bytes);

  const cudaError_t e = cudaFuncSetAttribute(mla_flash_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)SMEM);
  if (e != cudaSuccess) return fail_cuda(e, "configuring the MLA flash prefill kernel");
  transpose_uk_kernel<<<grid_for((size_t)H * nope * L), 256, 0, ctx->stream>>>(static_cast<const bf16 *>(w_uk_t), wuk, H, nope, L);
  if ((rc = launched("transposing the MLA key up-projection"))) return rc;
  const int qtiles = (T + BM - 1) / BM;
  for (int blk = 0; blk < blocks; ++blk) {
    const int k0 = blk * KEY_BLOCK, nk = std::min(KEY_BLOCK, total - k0);
    latents_bf16_kernel<<<grid_for((size_t)nk * L), 256, 0, ctx->stream>>>(cache, cb, k0, nk, D, L);
    if ((rc = launched("rounding the MLA latents to bf16"))) return rc;
    // All heads in one GEMM each: W_UK and W_UV stacked over heads are [H * 128, L].
    if ((rc = gemm_bf16_nt(ctx, cb, L, 0, wuk, L, 0, y, H * nope, 0, nk, H * nope, L, 1, 0.f))) return rc;
    keys_kernel<<<grid_for((size_t)H * nk * QK), 256, 0, ctx->stream>>>(y, cache, kb, k0, nk, H, nope, D, L);
    if ((rc = launched("assembling the MLA per-head keys"))) return rc;
    if ((rc = gemm_bf16_nt(ctx, cb, L, 0, w_uv, L, 0, y, H * DV, 0, nk, H * DV, L, 1, 0.f))) return rc;
    values_kernel<<<grid_for((size_t)H * nk * DV), 256, 0, ctx->stream>>>(y, vb, nk, H);
    if ((rc = launched("assembling the MLA per-head values"))) return rc;
    // Query tokens t with start + t >= k0 see this block.
    const int first_tile = std::max(0, k0 - start) / BM;
    FlashArgs a{q, kb, vb, out, carry, ml, T, H, start, k0, nk,
                blocks == 1 ? 0 : (blk ? READ_CARRY : 0) | WRITE_CARRY, scale * 1.4426950408889634f};
    mla_flash_kernel<<<dim3(qtiles - first_tile, H), THREADS, SMEM, ctx->stream>>>(a);
    if ((rc = launched("the MLA flash prefill kernel"))) return rc;
  }
  if (blocks > 1) {
    finish_kernel<<<grid_for(rows * DV), 256, 0, ctx->stream>>>(carry, ml, out, rows);
    rc = launched("normalising the MLA prefill output");
  }
  return rc;
}

}  // namespace

extern "C" int klc_mla_heads_wanted(klc_ctx *ctx, int T, int start, int nope, int rope, int dv, int L) {
  if (!ctx || !ctx->tensor_cores || nope + rope != QK || dv != DV || nope % 8 || L % 8 || T < 1 || start < 0) return 0;
  // FLOPs per head: the up-projection of every visible key against the attention pairs, where the
  // absorbed form spends (L + rope) + L per pair and this form (nope + rope) + dv.
  const double pairs = (double)T * start + (double)T * (T + 1) / 2;
  const double up = (double)(start + T) * (nope + dv) * L;
  return up < pairs * ((L + rope) + L - (nope + rope) - dv) ? 1 : 0;
}

extern "C" int klc_mla_prefill_heads(klc_ctx *ctx, const float *q, const void *cache, int cache_type, const void *w_uk_t,
                                     const void *w_uv, float *out, int T, int H, int start, int nope, int rope, int dv, int L,
                                     float scale) {
  using namespace klc;
  if (!ctx) return fail(KLC_E_ARG, "klc_mla_prefill_heads: no context");
  int rc = check_cache_type(cache_type, "klc_mla_prefill_heads");
  if (rc) return rc;
  if (!q || !cache || !w_uk_t || !w_uv || !out || T < 1 || H < 1 || start < 0 || L < 8 || L % 8 || nope % 8 ||
      nope + rope != QK || dv != DV)
    return fail(KLC_E_ARG, "klc_mla_prefill_heads: bad pointers or shape (needs qk_nope + qk_rope = 192, v_head_dim = 128, "
                           "kv_lora_rank a multiple of 8); use klc_mla_attention for other shapes");
  if (!ctx->tensor_cores)
    return fail(KLC_E_ARG, "klc_mla_prefill_heads: tensor-core mode is off; call klc_set_tensor_cores(ctx, 1) first");
  if ((rc = use_device(ctx))) return rc;
  Kernel kernel;
  if ((rc = choose_kernel(ctx, &kernel))) return rc;
  const bool bf16_cache = cache_type == KLC_CACHE_BF16;
  if (kernel != Kernel::fa2) {
    const MlaHopper form = kernel == Kernel::wgmma_ws ? MlaHopper::warp_specialized : kernel == Kernel::wgmma_pipe ? MlaHopper::pipelined : MlaHopper::plain;
    return bf16_cache ? prefill_wgmma(ctx, form, q, static_cast<const bf16 *>(cache), w_uk_t, w_uv, out, T, H, start, nope, rope, L, scale)
                      : prefill_wgmma(ctx, form, q, static_cast<const float *>(cache), w_uk_t, w_uv, out, T, H, start, nope, rope, L, scale);
  }
  return bf16_cache ? prefill_fa2(ctx, q, static_cast<const bf16 *>(cache), w_uk_t, w_uv, out, T, H, start, nope, rope, L, scale)
                    : prefill_fa2(ctx, q, static_cast<const float *>(cache), w_uk_t, w_uv, out, T, H, start, nope, rope, L, scale);
}

extern "C" const char *klc_mla_prefill_kernel(klc_ctx *ctx) {
  if (!ctx) {
    klc::fail(KLC_E_ARG, "klc_mla_prefill_kernel: no context");
    return nullptr;
  }
  if (klc::use_device(ctx)) return nullptr;
  Kernel k;
  if (choose_kernel(ctx, &k)) return nullptr;
  return k == Kernel::wgmma ? "wgmma" : k == Kernel::wgmma_pipe ? "wgmma_pipe" : k == Kernel::wgmma_ws ? "wgmma_ws" : "fa2";
}
