// Decode steps for a batch of sequences, each over its own state (spec 2.1 and 3): the KDA short
// conv + gate + state update + output for B sequences in one launch, and the absorbed MLA attention
// of B queries over B latent caches of different lengths, split over the key range (flash-decoding)
// on tensor cores. The per-sequence state pointers and lengths travel in the kernel parameters, so a
// step needs no upload and no synchronisation.
#include <cuda_profiler_api.h>

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>

#include "internal.h"
#include "pdl.cuh"
#include "mla_cache.cuh"
#include "mma_bf16.cuh"

namespace {

__device__ __forceinline__ float sigmoidf_(float x) { return 1.f / (1.f + expf(-x)); }
__device__ __forceinline__ float siluf_(float x) { return x / (1.f + expf(-x)); }
__device__ __forceinline__ float softplusf_(float x) { return x > 20.f ? x : log1pf(expf(x)); }

__device__ __forceinline__ float warp_sum(float x) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) x += __shfl_xor_sync(0xffffffffu, x, o);
  return x;
}

using klc::launched;

// ---------------------------------------------------------------------------------------------
// KDA decode. One CTA per (head, sequence) with 128 value columns x 4 key quarters: thread (j, part)
// keeps S[part*32 .. part*32+31, j] in registers. The CTA first runs the short conv of its head's
// q, k and v channels (advancing each channel's tail exactly once) and the gate, then the fp32
// recurrence of spec 2.1 step 8 with the key sums joined over the quarters in shared memory.
constexpr int KDA_COLS = 128, KDA_PARTS = 4, KDA_PART_K = 32, KDA_THREADS = KDA_COLS * KDA_PARTS;

struct KdaBatchParams {
  int B, H, K, V, W;
  float scale;
  const float *proj, *conv_w, *g, *beta, *A_log, *dt_bias;
  float *o;
  float *states[KLC_MAX_DECODE_BATCH];
  float *tails[KLC_MAX_DECODE_BATCH];
  const float *x;  // with b_w, when beta is null
  const void *b_w;
  int d, b_w_f32;
  const float *o_norm_w, *gate;  // with o_norm_w: o is written gated-RMSNormed
  float eps;
};

// FUSED_BETA: the b_proj logits are computed here from x and b_w (p.beta is null). FUSED_NORM: o is
// written as klc_gated_rmsnorm would make it, each head's V values normed with o_norm_w and gated by
// sigmoid(gate) (the CTA holds the whole head's output).
template <bool FUSED_BETA, bool FUSED_NORM>
__global__ void __launch_bounds__(KDA_THREADS) kda_decode_batch_kernel(const __grid_constant__ KdaBatchParams p) {
  pdl_wait();
  pdl_trigger();
  const int h = blockIdx.x, b = blockIdx.y, tid = threadIdx.x;
  const int j = tid % KDA_COLS, part = tid / KDA_COLS;
  const int H = p.H, K = p.K, V = p.V, W = p.W, keep = W - 1;
  const int HK = H * K, C = 2 * HK + H * V;
  __shared__ float sq[KDA_COLS], sk[KDA_COLS], sv[KDA_COLS], sa[KDA_COLS];
  __shared__ float red[KDA_PARTS][KDA_COLS];
  __shared__ float norms[3];
  __shared__ float beta_part[KDA_THREADS / 32];

  // The b_proj logit of this head: x[b] . b_w[h], each warp's sum joined below.
  if (FUSED_BETA) {
    const float *xb = p.x + (size_t)b * p.d;
    float acc = 0.f;
    if (p.b_w_f32) {
      const float *wr = static_cast<const float *>(p.b_w) + (size_t)h * p.d;
      for (int c = tid; c < p.d; c += KDA_THREADS) acc = fmaf(wr[c], xb[c], acc);
    } else {
      const __nv_bfloat16 *wr = static_cast<const __nv_bfloat16 *>(p.b_w) + (size_t)h * p.d;
      for (int c = tid; c < p.d; c += KDA_THREADS) acc = fmaf(__bfloat162float(wr[c]), xb[c], acc);
    }
    acc = warp_sum(acc);
    if ((tid & 31) == 0) beta_part[tid >> 5] = acc;
  }

  // Short conv + SiLU of this head's channels, same arithmetic order as short_conv_kernel.
  const float *x = p.proj + (size_t)b * C;
  float *tail = p.tails[b];
  for (int e = tid; e < 2 * K + V; e += KDA_THREADS) {
    const int ch = e < K ? h * K + e : e < 2 * K ? HK + h * K + (e - K) : 2 * HK + h * V + (e - 2 * K);
    const float *wc = p.conv_w + (size_t)ch * W;
    float *tl = tail + (size_t)ch * keep;
    const float cur = x[ch];
    float acc = wc[keep] * cur;
    for (int t = 0; t < keep; ++t) acc = fmaf(wc[t], tl[t], acc);
    for (int t = 0; t + 1 < keep; ++t) tl[t] = tl[t + 1];
    if (keep > 0) tl[keep - 1] = cur;
    const float y = siluf_(acc);
    if (e < K) sq[e] = y;
    else if (e < 2 * K) sk[e - K] = y;
    else sv[e - 2 * K] = y;
  }
  if (tid < K) {
    const float neg_a = -expf(p.A_log[h]);
    sa[tid] = expf(neg_a * softplusf_(p.g[(size_t)b * HK + h * K + tid] + p.dt_bias[h * K + tid]));
  }
  __syncthreads();
  if (tid < 32) {
    float nq = 0.f, nk = 0.f;
    for (int c = tid; c < K; c += 32) {
      nq += sq[c] * sq[c];
      nk += sk[c] * sk[c];
    }
    nq = warp_sum(nq);
    nk = warp_sum(nk);
    const float bl = FUSED_BETA ? warp_sum(tid < KDA_THREADS / 32 ? beta_part[tid] : 0.f) : 0.f;
    if (tid == 0) {
      norms[0] = rsqrtf(nq + 1e-6f) * p.scale;
      norms[1] = rsqrtf(nk + 1e-6f);
      if (FUSED_BETA) norms[2] = bl;
    }
  }
  __syncthreads();
  const float iq = norms[0], ik = norms[1];
  const float beta = sigmoidf_(FUSED_BETA ? norms[2] : p.beta[(size_t)b * H + h]);
  float *S = p.states[b] + (size_t)h * K * V;
  const int c0 = part * KDA_PART_K;
  float s[KDA_PART_K];
#pragma unroll
  for (int i = 0; i < KDA_PART_K; ++i) s[i] = (c0 + i < K && j < V) ? S[(size_t)(c0 + i) * V + j] : 0.f;
  float u = 0.f;
#pragma unroll
  for (int i = 0; i < KDA_PART_K; ++i) {
    if (c0 + i < K) {
      s[i] *= sa[c0 + i];
      u = fmaf(s[i], sk[c0 + i] * ik, u);
    }
  }
  red[part][j] = u;
  __syncthreads();
  u = red[0][j] + red[1][j] + red[2][j] + red[3][j];
  const float bu = beta * ((j < V ? sv[j] : 0.f) - u);
  float out = 0.f;
#pragma unroll
  for (int i = 0; i < KDA_PART_K; ++i) {
    if (c0 + i < K) {
      s[i] = fmaf(sk[c0 + i] * ik, bu, s[i]);
      out = fmaf(s[i], sq[c0 + i] * iq, out);
    }
  }
  __syncthreads();
  red[part][j] = out;
  __syncthreads();
  if constexpr (FUSED_NORM) {
    // The head's sum of squares over the 4 warps of part 0 (its V <= 128 columns), in warp order.
    const float ov = part == 0 && j < V ? red[0][j] + red[1][j] + red[2][j] + red[3][j] : 0.f;
    const float ss = warp_sum(ov * ov);
    if (part == 0 && (tid & 31) == 0) beta_part[tid >> 5] = ss;
    __syncthreads();
    const float inv = rsqrtf((beta_part[0] + beta_part[1] + beta_part[2] + beta_part[3]) / V + p.eps);
    const size_t at = ((size_t)b * H + h) * V + j;
    if (part == 0 && j < V) p.o[at] = ov * inv * p.o_norm_w[j] * sigmoidf_(p.gate[at]);
  } else {
    if (part == 0 && j < V) p.o[((size_t)b * H + h) * V + j] = red[0][j] + red[1][j] + red[2][j] + red[3][j];
  }
  if (j < V)
#pragma unroll
    for (int i = 0; i < KDA_PART_K; ++i)
      if (c0 + i < K) S[(size_t)(c0 + i) * V + j] = s[i];
}

// ---------------------------------------------------------------------------------------------
// MLA decode. CTA (split, sequence, head group) takes 32 query heads and walks 32-key blocks of its
// part of the sequence's cache: scores Q·Kᵀ and the value sum P·V (values = first L columns of the
// keys) on mma.sync m16n8k8 TF32 tensor cores with an online softmax; each cache row is read from
// global memory once per CTA for all 32 heads. In exact mode every product is split into a TF32
// high part and a TF32 remainder (3 MMAs: hi·hi + hi·lo + lo·hi), which keeps fp32 accuracy.
// Key blocks are fetched with cp.async into STAGES buffers, so the next block streams in while
// the current one is computed. Partial (acc[L], max, sum) per split are joined by the combine.
// The staged rows keep the cache's element type (CT, fp32 or bf16) and are widened to fp32 as the
// fragments are read: a bf16 cache streams half the bytes, and bf16 values are exact in TF32.
// Tensor-core mode over bf16 caches of Kimi's widths takes mla_decode_bf16.cu's bf16 MMAs instead
// (2.5x faster at 1M keys); this kernel serves exact mode, fp32 caches and other widths.
constexpr int MD_HEADS = 32, MD_NK = 32, MD_WARPS = 16, MD_THREADS = MD_WARPS * 32, MD_LMAX = 512;
constexpr int MD_COL_TILES = MD_LMAX / 8 / MD_WARPS;  // value n-tiles per warp

using klc::MlaDecodeParams;

__device__ __forceinline__ void mma_tf32(float c[4], const uint32_t a[4], const uint32_t b[2]) {
  asm volatile(
      "mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

// c += a·b for fp32 fragments. The tensor cores read the top 19 bits of each fp32 value (TF32, the
// rest truncated), so plain fp32 bits go in as they are. SPLIT also multiplies the remainders
// x - trunc(x), exact in fp32, so that the result keeps fp32 accuracy (the lo·lo term is below it).
template <bool SPLIT>
__device__ __forceinline__ void mma_f32(float c[4], const float a[4], const float b[2]) {
  constexpr uint32_t TF32_BITS = 0xffffe000u;
  uint32_t ah[4], bh[2];
#pragma unroll
  for (int i = 0; i < 4; ++i) ah[i] = SPLIT ? __float_as_uint(a[i]) & TF32_BITS : __float_as_uint(a[i]);
#pragma unroll
  for (int i = 0; i < 2; ++i) bh[i] = SPLIT ? __float_as_uint(b[i]) & TF32_BITS : __float_as_uint(b[i]);
  if (SPLIT) {
    uint32_t al[4], bl[2];
#pragma unroll
    for (int i = 0; i < 4; ++i) al[i] = __float_as_uint(a[i] - __uint_as_float(ah[i]));
#pragma unroll
    for (int i = 0; i < 2; ++i) bl[i] = __float_as_uint(b[i] - __uint_as_float(bh[i]));
    mma_tf32(c, al, bh);
    mma_tf32(c, ah, bl);
  }
  mma_tf32(c, ah, bh);
}

using klc_mma::cp_async16;

// Row stride of the staged rows in elements: whole 16-byte copies, and (fp32 rows, or bf16 rows with
// D a multiple of 16 as Kimi's 576) 4 mod 8 in 32-bit words, so the fragment loads of 8 rows x 4
// columns hit different banks (bf16 neighbours share a word).
template <typename CT>
__host__ __device__ inline int md_stride(int D) {
  return D + 16 / (int)sizeof(CT);
}

template <typename CT>
size_t md_smem_bytes(int D, int stages) {
  const size_t sd = md_stride<float>(D), sk = md_stride<CT>(D);
  return sizeof(float) * (MD_HEADS * sd + 2 * MD_HEADS * (MD_NK + 4) + 3 * MD_HEADS) + sizeof(CT) * (size_t)stages * MD_NK * sk;
}

template <typename CT, int STAGES, bool SPLIT>
__global__ void __launch_bounds__(MD_THREADS, 1) mla_decode_kernel(const __grid_constant__ MlaDecodeParams p) {
  pdl_wait();
  pdl_trigger();
  extern __shared__ float sm[];
  const int D = p.D, L = p.L, H = p.H, SD = md_stride<float>(D), SK = md_stride<CT>(D);
  const int split = blockIdx.x, b = blockIdx.y, h0 = blockIdx.z * MD_HEADS;
  const int hn = min(MD_HEADS, H - h0);
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, g = lane >> 2, t = lane & 3;
  const int len = p.length(b);
  const int k_begin = split * p.split_keys, k_end = min(len, k_begin + p.split_keys);
  float *Qs = sm;                                                  // [32][SD]
  CT *Ks = reinterpret_cast<CT *>(Qs + MD_HEADS * SD);             // [STAGES][NK][SK]
  float *Ps = reinterpret_cast<float *>(Ks + STAGES * MD_NK * SK);  // [32][NK + 4] scores over the first half of D, then probabilities
  float *Ps2 = Ps + MD_HEADS * (MD_NK + 4);    // [32][NK + 4] scores over the second half of D
  float *row_m = Ps2 + MD_HEADS * (MD_NK + 4);  // running max, sum and this block's rescale per head
  float *row_l = row_m + MD_HEADS, *row_a = row_l + MD_HEADS;
  const int PS = MD_NK + 4;
  auto partial = [&](int r) { return p.partial(b, h0 + r, split); };
  if (k_begin >= k_end) {
    if (tid < hn) p.empty_partial(b, h0 + tid, split);
    return;
  }
  const CT *cache = static_cast<const CT *>(p.cache[b]);
  const float *q = p.q + ((size_t)b * H + h0) * D;
  constexpr int PIECE = 16 / (int)sizeof(CT);  // elements per 16-byte copy
  const int DP = D / PIECE;
  // This thread's first 16-byte piece of a block, and how far each further piece moves it.
  const int r_first = tid / DP, c_first = tid % DP, r_step = MD_THREADS / DP, c_step = MD_THREADS % DP;
  auto load_block = [&](int buf, int kb) {
    CT *dst = Ks + (size_t)buf * MD_NK * SK;
    for (int r = r_first, c = c_first; r < MD_NK;) {
      // Rows past the end repeat the last key: finite values whose probability is set to 0.
      const int key = min(kb + r, k_end - 1);
      cp_async16(dst + r * SK + c * PIECE, cache + (size_t)key * D + c * PIECE);
      r += r_step;
      c += c_step;
      if (c >= DP) {
        c -= DP;
        ++r;
      }
    }
    klc_mma::cp_commit();
  };
  load_block(0, k_begin);
  for (int e = tid; e < MD_HEADS * D; e += MD_THREADS) {
    const int r = e / D, c = e % D;
    Qs[r * SD + c] = r < hn ? q[(size_t)r * D + c] : 0.f;
  }
  if (tid < MD_HEADS) {
    row_m[tid] = -INFINITY;
    row_l[tid] = 0.f;
  }
  float acc[2][MD_COL_TILES][4];
#pragma unroll
  for (int mt = 0; mt < 2; ++mt)
#pragma unroll
    for (int i = 0; i < MD_COL_TILES; ++i)
#pragma unroll
      for (int e = 0; e < 4; ++e) acc[mt][i][e] = 0.f;

  int buf = 0;
  for (int kb = k_begin; kb < k_end; kb += MD_NK) {
    const bool more = kb + MD_NK < k_end;
    if (STAGES > 1 && more) {
      load_block(buf ^ 1, kb + MD_NK);
      klc_mma::cp_wait<1>();
    } else {
      klc_mma::cp_wait<0>();
    }
    __syncthreads();
    const CT *Kb = Ks + (size_t)buf * MD_NK * SK;
    {
      // Scores: warp -> (16 heads, 8 keys, one half of D), in two independent accumulator chains
      // (alternating k-steps) so that the MMA latency overlaps.
      const int nt = warp & 3, mt = (warp >> 2) & 1, half = warp >> 3;
      const int kmid = D / 16 * 8, kbeg = half ? kmid : 0, kend = half ? D : kmid;
      float c[2][4] = {};
      const float *qm = Qs + (mt * 16 + g) * SD + t;
      const CT *kbp = Kb + (nt * 8 + g) * SK + t;
      auto step = [&](int k0, int par) {
        const float bb[2] = {klc::cache_f32(kbp[k0]), klc::cache_f32(kbp[k0 + 4])};
        const float a[4] = {qm[k0], qm[8 * SD + k0], qm[k0 + 4], qm[8 * SD + k0 + 4]};
        mma_f32<SPLIT>(c[par], a, bb);
      };
#pragma unroll 2
      for (int k0 = kbeg; k0 < kend; k0 += 16) {
        step(k0, 0);
        if (k0 + 8 < kend) step(k0 + 8, 1);
      }
      float *dst = half ? Ps2 : Ps;
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int r = mt * 16 + g + (e >> 1) * 8, kl = nt * 8 + 2 * t + (e & 1);
        dst[r * PS + kl] = c[0][e] + c[1][e];
      }
    }
    __syncthreads();
    {
      // Online softmax: 16 threads per head, 2 keys each.
      const int r = tid >> 4, k2 = (tid & 15) * 2;
      float v[2], mx = -INFINITY;
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        const int kl = k2 + e;
        v[e] = kb + kl < k_end ? (Ps[r * PS + kl] + Ps2[r * PS + kl]) * p.scale : -INFINITY;
        mx = fmaxf(mx, v[e]);
      }
#pragma unroll
      for (int o = 8; o > 0; o >>= 1) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, o));
      const float m_old = row_m[r];
      const float m_new = fmaxf(m_old, mx);
      float sum = 0.f;
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        const float pe = v[e] == -INFINITY ? 0.f : expf(v[e] - m_new);
        Ps[r * PS + k2 + e] = pe;
        sum += pe;
      }
#pragma unroll
      for (int o = 8; o > 0; o >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, o);
      const float alpha = m_old == -INFINITY ? 0.f : expf(m_old - m_new);
      __syncwarp();
      if ((tid & 15) == 0) {
        row_m[r] = m_new;
        row_l[r] = row_l[r] * alpha + sum;
        row_a[r] = alpha;
      }
    }
    __syncthreads();
    {
      // Values: warp -> all 32 heads x its column tiles (cols (warp + 16 i) * 8 ..).
      float alpha[2][2];
#pragma unroll
      for (int mt = 0; mt < 2; ++mt) {
        alpha[mt][0] = row_a[mt * 16 + g];
        alpha[mt][1] = row_a[mt * 16 + g + 8];
      }
#pragma unroll
      for (int mt = 0; mt < 2; ++mt)
#pragma unroll
        for (int i = 0; i < MD_COL_TILES; ++i)
#pragma unroll
          for (int e = 0; e < 4; ++e) acc[mt][i][e] *= alpha[mt][e >> 1];
#pragma unroll
      for (int ks = 0; ks < MD_NK; ks += 8) {
        float a[2][4];
#pragma unroll
        for (int mt = 0; mt < 2; ++mt) {
          const float *pa = Ps + (mt * 16 + g) * PS + ks + t;
          a[mt][0] = pa[0];
          a[mt][1] = pa[8 * PS];
          a[mt][2] = pa[4];
          a[mt][3] = pa[8 * PS + 4];
        }
        const CT *vb = Kb + (ks + t) * SK + g;
#pragma unroll
        for (int i = 0; i < MD_COL_TILES; ++i) {
          const int col = (warp + MD_WARPS * i) * 8;
          if (col < L) {
            const float bb[2] = {klc::cache_f32(vb[col]), klc::cache_f32(vb[4 * SK + col])};
            mma_f32<SPLIT>(acc[0][i], a[0], bb);
            mma_f32<SPLIT>(acc[1][i], a[1], bb);
          }
        }
      }
    }
    __syncthreads();
    if (STAGES > 1) buf ^= 1;
    else if (more) load_block(0, kb + MD_NK);
  }
#pragma unroll
  for (int mt = 0; mt < 2; ++mt)
#pragma unroll
    for (int i = 0; i < MD_COL_TILES; ++i) {
      const int col = (warp + MD_WARPS * i) * 8 + 2 * t;
      if (col >= L) continue;
#pragma unroll
      for (int half = 0; half < 2; ++half) {
        const int r = mt * 16 + g + half * 8;
        if (r < hn) {
          float *dst = partial(r);
          dst[col] = acc[mt][i][half * 2];
          dst[col + 1] = acc[mt][i][half * 2 + 1];
        }
      }
    }
  if (tid < hn) {
    partial(tid)[L] = row_m[tid];
    partial(tid)[L + 1] = row_l[tid];
  }
}

// out[r, :] = sum_s e^(m_s - M) acc_s / sum_s e^(m_s - M) l_s over the splits of row r = b*H + h.
// The split weights are computed once per row into shared memory (splits <= MD_MAX_SPLITS).
constexpr int MD_MAX_SPLITS = 1024, MD_COMBINE_THREADS = 256;

__global__ void __launch_bounds__(MD_COMBINE_THREADS) mla_decode_combine_kernel(const float *ws, float *out, int L, int splits) {
  pdl_wait();
  pdl_trigger();
  __shared__ float wgt[MD_MAX_SPLITS];
  __shared__ float red[MD_COMBINE_THREADS / 32];
  __shared__ float total;
  const size_t r = blockIdx.x;
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const float *base = ws + r * splits * (size_t)(L + 2);
  float mx = -FLT_MAX;
  for (int s = tid; s < splits; s += MD_COMBINE_THREADS) {
    const float *pp = base + (size_t)s * (L + 2);
    if (pp[L + 1] > 0.f) mx = fmaxf(mx, pp[L]);
  }
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, o));
  if (lane == 0) red[warp] = mx;
  __syncthreads();
  mx = red[0];
#pragma unroll
  for (int w = 1; w < MD_COMBINE_THREADS / 32; ++w) mx = fmaxf(mx, red[w]);
  __syncthreads();
  float den = 0.f;
  for (int s = tid; s < splits; s += MD_COMBINE_THREADS) {
    const float *pp = base + (size_t)s * (L + 2);
    const float w = pp[L + 1] > 0.f ? expf(pp[L] - mx) : 0.f;
    wgt[s] = w;
    den += w * pp[L + 1];
  }
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) den += __shfl_xor_sync(0xffffffffu, den, o);
  if (lane == 0) red[warp] = den;
  __syncthreads();
  if (tid == 0) {
    float t = 0.f;
    for (int w = 0; w < MD_COMBINE_THREADS / 32; ++w) t += red[w];
    total = t;
  }
  __syncthreads();
  const float inv = 1.f / total;
  for (int c = tid; c < L; c += MD_COMBINE_THREADS) {
    float num = 0.f;
#pragma unroll 8
    for (int s = 0; s < splits; ++s) num = fmaf(wgt[s], base[(size_t)s * (L + 2) + c], num);
    out[r * L + c] = num * inv;
  }
}

// How the MLA decode is laid out for these shapes on this device; stages == 0: the staged rows do
// not fit in shared memory and each sequence takes klc_mla_attention instead.
struct MdPlan {
  int stages, splits, split_keys;
};

template <typename CT>
MdPlan md_plan(klc_ctx *ctx, int B, int H, int D, int max_len, int block = MD_NK) {
  int dev = ctx ? ctx->device : 0, optin = 0, sms = 0;
  cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev);
  cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev);
  MdPlan plan{0, 1, max_len};
  if ((size_t)optin >= md_smem_bytes<CT>(D, 2)) plan.stages = 2;
  else if ((size_t)optin >= md_smem_bytes<CT>(D, 1)) plan.stages = 1;
  const int groups = (H + MD_HEADS - 1) / MD_HEADS;
  const int ctas = B * groups;
  // One CTA per multiprocessor (the staged rows take most of its shared memory): a whole wave.
  int splits = (sms > 0 ? sms : 100) / ctas;
  // The CUDA backend's workspace holds (2 B H + 8192) partial rows (memory-plan.ts).
  const int cap = std::min(MD_MAX_SPLITS, std::max(1, (8192 + 2 * B * H) / (B * H)));
  splits = std::min(splits, std::min(cap, (max_len + block - 1) / block));
  splits = std::max(1, splits);
  plan.split_keys = ((max_len + splits - 1) / splits + block - 1) / block * block;
  plan.splits = (max_len + plan.split_keys - 1) / plan.split_keys;
  return plan;
}

template <typename CT, int STAGES, bool SPLIT>
int launch_mla_decode(klc_ctx *ctx, const MlaDecodeParams &p, int B, int groups) {
  const size_t smem = md_smem_bytes<CT>(p.D, STAGES);
  cudaError_t e = cudaFuncSetAttribute(mla_decode_kernel<CT, STAGES, SPLIT>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem);
  if (e != cudaSuccess) return klc::fail_cuda(e, "configuring the MLA decode kernel");
  e = klc::launch_pdl(ctx, mla_decode_kernel<CT, STAGES, SPLIT>, dim3(p.splits, B, groups), MD_THREADS, smem, p);
  return launched(e, "the MLA decode attention");
}

// The launch for the cache type, the stages that fit and exact (split TF32) or plain TF32 products.
template <typename CT>
int launch_mla_decode_for(klc_ctx *ctx, const MlaDecodeParams &p, int B, int groups, int stages, bool exact) {
  if (stages == 2) return exact ? launch_mla_decode<CT, 2, true>(ctx, p, B, groups) : launch_mla_decode<CT, 2, false>(ctx, p, B, groups);
  return exact ? launch_mla_decode<CT, 1, true>(ctx, p, B, groups) : launch_mla_decode<CT, 1, false>(ctx, p, B, groups);
}

}  // namespace

using namespace klc;

extern "C" {

int klc_kda_decode_batch(klc_ctx *ctx, const klc_kda_decode_batch_args *a) {
  int rc = use_device(ctx);
  if (rc) return rc;
  if (!a || a->B < 1 || a->B > KLC_MAX_DECODE_BATCH || a->H < 1 || a->K < 1 || a->K > KDA_PARTS * KDA_PART_K || a->V < 1 ||
      a->V > KDA_COLS || a->W < 1 || a->W > 8)
    return fail(KLC_E_ARG, "klc_kda_decode_batch: needs 1 <= B <= " + std::to_string(KLC_MAX_DECODE_BATCH) +
                               ", K and V at most 128, conv kernel 1..8");
  if (!a->proj || !a->conv_w || !a->g || !a->A_log || !a->dt_bias || !a->o || !a->states || !a->tails)
    return fail(KLC_E_ARG, "klc_kda_decode_batch: every input, output and state pointer must be set");
  if (!a->beta && (!a->x || !a->b_w || a->d < 1))
    return fail(KLC_E_ARG, "klc_kda_decode_batch: without beta logits, x, b_w and d (b_proj's input and weight) must be set");
  if (a->o_norm_w && (!a->gate || a->V != a->K))
    return fail(KLC_E_ARG, "klc_kda_decode_batch: the gated norm of o needs the gate logits and V = K");
  KdaBatchParams p{};
  p.B = a->B;
  p.H = a->H;
  p.K = a->K;
  p.V = a->V;
  p.W = a->W;
  p.scale = a->scale;
  p.proj = a->proj;
  p.conv_w = a->conv_w;
  p.g = a->g;
  p.beta = a->beta;
  p.A_log = a->A_log;
  p.dt_bias = a->dt_bias;
  p.o = a->o;
  p.x = a->x;
  p.b_w = a->b_w;
  p.d = a->d;
  p.b_w_f32 = a->b_w_f32;
  p.o_norm_w = a->o_norm_w;
  p.gate = a->gate;
  p.eps = a->eps;
  for (int b = 0; b < a->B; ++b) {
    if (!a->states[b] || !a->tails[b]) return fail(KLC_E_ARG, "klc_kda_decode_batch: state or conv tail of sequence " + std::to_string(b) + " is null");
    p.states[b] = a->states[b];
    p.tails[b] = a->tails[b];
  }
  const dim3 grid(a->H, a->B);
  const cudaError_t e = a->beta ? (a->o_norm_w ? launch_pdl(ctx, kda_decode_batch_kernel<false, true>, grid, KDA_THREADS, 0, p)
                                               : launch_pdl(ctx, kda_decode_batch_kernel<false, false>, grid, KDA_THREADS, 0, p))
                                : (a->o_norm_w ? launch_pdl(ctx, kda_decode_batch_kernel<true, true>, grid, KDA_THREADS, 0, p)
                                               : launch_pdl(ctx, kda_decode_batch_kernel<true, false>, grid, KDA_THREADS, 0, p));
  return launched(e, "the batched KDA decode");
}

namespace {
// With KLC_PROFILE_DECODE=1 the CUDA profiler starts at the first MLA decode call, so that Nsight Compute
// run with --profile-from-start off sees decode steps only (test/gpu/run-decode-profile.sh): the 48B
// model's weight generation and prompts launch thousands of kernels before the first step.
void start_profiler_at_first_decode() {
  static bool started = false;
  if (started) return;
  started = true;
  const char *env = std::getenv("KLC_PROFILE_DECODE");
  if (env && std::strcmp(env, "1") == 0) cudaProfilerStart();
}
}  // namespace

// The workspace serves either cache type: the fp32 rows need more shared memory, so where they fit the
// bf16 rows fit too and both take the split workspace; where only bf16 rows fit, the larger of the two.
size_t klc_mla_decode_workspace_bytes(klc_ctx *ctx, int B, int H, int D, int L, int max_len) {
  if (B < 1 || H < 1 || D < 1 || L < 1 || max_len < 1) return 0;
  const MdPlan plan = md_plan<float>(ctx, B, H, D, max_len);
  const size_t split = (size_t)B * H * plan.splits * (L + 2) * sizeof(float);
  if (plan.stages == 0) return std::max(split, klc_mla_workspace_bytes(H, L, klc_mla_splits(ctx, H, max_len)));
  return split;
}

int klc_mla_decode(klc_ctx *ctx, const float *q, const void *const *caches, int cache_type, const int32_t *lengths,
                   const int32_t *positions, int capacity, float *out, void *ws, size_t ws_bytes, int B, int H, int D, int L,
                   float scale) {
  int rc = use_device(ctx);
  if (rc) return rc;
  start_profiler_at_first_decode();
  if ((rc = check_cache_type(cache_type, "klc_mla_decode"))) return rc;
  if (!q || !caches || !lengths || !out || !ws || B < 1 || B > KLC_MAX_DECODE_BATCH || H < 1 || L < 8 || L > MD_LMAX ||
      L % 8 || D < L || D % 8)
    return fail(KLC_E_ARG, "klc_mla_decode: bad pointers or shape (1 <= B <= " + std::to_string(KLC_MAX_DECODE_BATCH) +
                               ", latent width L a multiple of 8 up to 512, D >= L a multiple of 8)");
  int max_len = 0;
  for (int b = 0; b < B; ++b) {
    if (!caches[b] || lengths[b] < 1)
      return fail(KLC_E_ARG, "klc_mla_decode: sequence " + std::to_string(b) + " has no cache or no rows (its new row must be appended first)");
    max_len = std::max(max_len, (int)lengths[b]);
  }
  if (capacity != 0 && capacity < max_len)
    return fail(KLC_E_ARG, "klc_mla_decode: capacity " + std::to_string(capacity) + " is below the longest cache (" + std::to_string(max_len) + " rows)");
  max_len = std::max(max_len, capacity);
  if (ws_bytes < klc_mla_decode_workspace_bytes(ctx, B, H, D, L, max_len))
    return fail(KLC_E_ARG, "klc_mla_decode: workspace smaller than klc_mla_decode_workspace_bytes()");
  const bool bf16 = cache_type == KLC_CACHE_BF16;
  // bf16 rows in tensor-core mode take the bf16 MMA kernel where its shapes and shared memory allow;
  // its blocks are larger, so its splits never outnumber the ones the workspace was sized for.
  const int bf16_block = bf16 ? mla_decode_bf16_block(ctx, D, L) : 0;
  const MdPlan plan = bf16 ? md_plan<__nv_bfloat16>(ctx, B, H, D, max_len, bf16_block ? bf16_block : MD_NK)
                           : md_plan<float>(ctx, B, H, D, max_len);
  if (plan.stages == 0 && !bf16_block) {
    if ((rc = refuse_capture(ctx, "klc_mla_decode on this device (the per-sequence path reads the lengths on the host)"))) return rc;
    for (int b = 0; b < B; ++b) {
      const int splits = klc_mla_splits(ctx, H, lengths[b]);
      rc = klc_mla_attention(ctx, q + (size_t)b * H * D, caches[b], cache_type, out + (size_t)b * H * L, static_cast<float *>(ws),
                             ws_bytes, 1, H, lengths[b] - 1, D, L, scale, splits);
      if (rc) return rc;
    }
    return KLC_OK;
  }
  MlaDecodeParams p{};
  p.H = H;
  p.D = D;
  p.L = L;
  p.splits = plan.splits;
  p.split_keys = plan.split_keys;
  p.scale = scale;
  p.q = q;
  p.ws = static_cast<float *>(ws);
  p.pos = positions;
  for (int b = 0; b < B; ++b) {
    p.cache[b] = caches[b];
    p.len[b] = lengths[b];
  }
  const int groups = (H + MD_HEADS - 1) / MD_HEADS;
  const bool exact = !ctx->tensor_cores;
  rc = bf16_block ? mla_decode_bf16(ctx, p, B, bf16_block)
       : bf16     ? launch_mla_decode_for<__nv_bfloat16>(ctx, p, B, groups, plan.stages, exact)
                  : launch_mla_decode_for<float>(ctx, p, B, groups, plan.stages, exact);
  if (rc) return rc;
  const cudaError_t e = launch_pdl(ctx, mla_decode_combine_kernel, B * H, MD_COMBINE_THREADS, 0, p.ws, out, L, plan.splits);
  return launched(e, "the MLA decode split combine");
}

}  // extern "C"
