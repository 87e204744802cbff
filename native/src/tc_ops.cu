// Tensor-core forms of the layer ops, used for bf16 checkpoints once klc_set_tensor_cores is on:
// fp32 activations are rounded to bf16 right before a cuBLAS GEMM (bf16 operands, fp32
// accumulation and output), as bf16 inference engines do. Linear layers run as one GEMM (or a
// strided batch), MoE experts as one GEMM per active expert over its gathered tokens, and MLA
// prompt attention as blocks of query rows against chunks of latent rows: scores of the block
// against one chunk, causal softmax weights in bf16 with their max and sum, weights times latents,
// merged chunk by chunk as flash attention merges its tiles.
#include <cuda_bf16.h>

#include <algorithm>
#include <cfloat>
#include <cstdlib>
#include <vector>

#include "internal.h"

namespace {

using bf16 = __nv_bfloat16;

// xb[(b*M + r)*K + c] = x[b*sx + r*ldx + c] for b < batch, r < M, c < K.
__global__ void to_bf16_kernel(const float *x, int ldx, long long sx, bf16 *xb, int M, int K, int batch) {
  const size_t n = (size_t)batch * M * K;
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
    const size_t c = i % K, rb = i / K, r = rb % M, b = rb / M;
    xb[i] = __float2bfloat16(x[b * sx + r * ldx + c]);
  }
}

// The padded row of sorted row p: expert e owns rows [tiles[e] * tile, ...) in the padded buffers.
__device__ __forceinline__ int padded_row(const int *off, const int *tiles, int E, int tile, int p) {
  int lo = 0, hi = E - 1;  // the last expert starting at or before p: the one whose rows hold p
  while (lo < hi) {
    const int mid = (lo + hi + 1) >> 1;
    if (off[mid] <= p) lo = mid; else hi = mid - 1;
  }
  return tiles[lo] * tile + p - off[lo];
}

// xs[padded row of p, :] = bf16(x[tok[p], :]): the MoE rows grouped by expert in whole tiles.
__global__ void gather_bf16_kernel(const float *x, const int *tok, const int *off, const int *tiles, int E, int tile, bf16 *xs,
                                   int d) {
  const int p = blockIdx.x;
  __shared__ int row;
  if (threadIdx.x == 0) row = padded_row(off, tiles, E, tile, p);
  __syncthreads();
  const float *src = x + (size_t)tok[p] * d;
  for (int c = threadIdx.x; c < d; c += blockDim.x) xs[(size_t)row * d + c] = __float2bfloat16(src[c]);
}

// out[t] += sum_s w[t, s] * ys[padded row of (t, s)], slots in ascending expert order.
__global__ void combine_padded_kernel(const float *ys, const int *idx, const int *pos, const int *off, const int *tiles,
                                      const float *w, float *out, int d, int k, int tile) {
  const int t = blockIdx.x;
  extern __shared__ int rows[];
  if (threadIdx.x < k) {
    const int i = t * k + threadIdx.x, e = idx[i];
    rows[threadIdx.x] = tiles[e] * tile + pos[i] - off[e];
  }
  __syncthreads();
  for (int c = threadIdx.x; c < d; c += blockDim.x) {
    float s = 0.f;
    for (int j = 0; j < k; ++j) s = fmaf(w[(size_t)t * k + j], ys[(size_t)rows[j] * d + c], s);
    out[(size_t)t * d + c] += s;
  }
}

__global__ void silu_mul_bf16_kernel(const float *gu, bf16 *h, int rows, int I) {
  const size_t n = (size_t)rows * I;
  for (size_t e = blockIdx.x * (size_t)blockDim.x + threadIdx.x; e < n; e += (size_t)gridDim.x * blockDim.x) {
    const size_t r = e / I, i = e % I;
    const float g = gu[r * 2 * I + i];
    h[e] = __float2bfloat16(g / (1.f + expf(-g)) * gu[r * 2 * I + I + i]);
  }
}

// Joins two partial softmax sums (running max m, sum s of exp(x - m)).
__device__ __forceinline__ void join(float &m, float &s, float m2, float s2) {
  const float mn = fmaxf(m, m2);
  s = (m == -FLT_MAX ? 0.f : s * expf(m - mn)) + (m2 == -FLT_MAX ? 0.f : s2 * expf(m2 - mn));
  m = mn;
}

// Row r of the block (token t0 + r / H) sees keys j < first_visible + r / H, j counted from the
// chunk's first key. P[r, j] = exp(scale * S[r, j] - m[r]) in bf16 (0 for keys it must not see),
// with m[r] the row's largest scaled score in the chunk and stats[r] = (m[r], sum of the weights);
// a row that sees no key of the chunk gets (-FLT_MAX, 0).
constexpr int SOFTMAX_THREADS = 256;
__global__ void __launch_bounds__(SOFTMAX_THREADS) chunk_softmax_kernel(const float *S, bf16 *P, int ld, int keys, int H,
                                                                         int first_visible, float scale, float2 *stats) {
  const size_t r = blockIdx.x;
  const float *row = S + r * ld;
  bf16 *prow = P + r * ld;
  const int visible = max(0, min(keys, first_visible + (int)(r / H)));
  float m = -FLT_MAX, s = 0.f;
  for (int j = threadIdx.x; j < visible; j += SOFTMAX_THREADS) {
    const float v = row[j] * scale;
    if (v > m) {
      s = s * expf(m - v) + 1.f;
      m = v;
    } else {
      s += expf(v - m);
    }
  }
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    const float m2 = __shfl_xor_sync(0xffffffffu, m, o), s2 = __shfl_xor_sync(0xffffffffu, s, o);
    join(m, s, m2, s2);
  }
  __shared__ float wm[SOFTMAX_THREADS / 32], ws[SOFTMAX_THREADS / 32];
  __shared__ float total_m;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (lane == 0) {
    wm[warp] = m;
    ws[warp] = s;
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    float M = wm[0], Ssum = ws[0];
    for (int w = 1; w < SOFTMAX_THREADS / 32; ++w) join(M, Ssum, wm[w], ws[w]);
    total_m = M;
    stats[r] = make_float2(M, Ssum);
  }
  __syncthreads();
  const float M = total_m;
  for (int j = threadIdx.x; j < keys; j += SOFTMAX_THREADS) prow[j] = __float2bfloat16(j < visible ? expf(row[j] * scale - M) : 0.f);
}

// Folds one chunk's weighted latents (part, weighted by exp(. - part_stats.m)) into the running
// ones (out, run): both are rescaled to the larger max; the last chunk also divides by the sum.
__global__ void merge_chunk_kernel(float *out, float2 *run, const float *part, const float2 *part_stats, int L, int last) {
  const size_t r = blockIdx.x;
  const float2 a = run[r];
  const float2 b = part ? part_stats[r] : make_float2(-FLT_MAX, 0.f);
  const float m = fmaxf(a.x, b.x);
  const float wa = expf(a.x - m), wb = b.x == -FLT_MAX ? 0.f : expf(b.x - m);
  const float sum = a.y * wa + b.y * wb;
  const float k = last ? 1.f / sum : 1.f;
  for (int j = threadIdx.x; j < L; j += blockDim.x) {
    const size_t i = r * L + j;
    out[i] = (out[i] * wa + (part ? part[i] * wb : 0.f)) * k;
  }
  __syncthreads();
  if (threadIdx.x == 0) run[r] = make_float2(m, last ? 1.f : sum);
}

using klc::launched;

int blocks_for(size_t n) {
  const size_t b = (n + 255) / 256;
  return (int)std::max<size_t>(1, std::min<size_t>(b, 65535 * 16));
}

size_t align256(size_t b) { return (b + 255) & ~(size_t)255; }

// Scores of one MLA query block against one key chunk take at most this much memory (fp32 scores,
// bf16 weights and the block's running max and sum); KLC_MLA_SCORE_BYTES lowers it, so that a check
// can run the chunk merge at small sizes.
constexpr size_t MLA_BLOCK_BYTES = size_t(1) << 30;

// A query block is made as tall as this many keys per chunk allow: a short chunk re-reads the
// block's queries, a short block re-reads the whole cache (twice per block).
constexpr int MLA_MIN_CHUNK = 16384;

size_t mla_score_bytes() {
  const char *v = getenv("KLC_MLA_SCORE_BYTES");
  const long long n = v ? atoll(v) : 0;
  return n > 0 && (size_t)n < MLA_BLOCK_BYTES ? (size_t)n : MLA_BLOCK_BYTES;
}

}  // namespace

namespace klc {

int tc_linear(klc_ctx *ctx, const float *x, int ldx, const void *w, float *y, int ldy, int M, int N, int K, int batch,
              long long sx, long long sw, long long sy, int accumulate) {
  void *xb = nullptr;
  int rc = scratch(ctx, 0, sizeof(bf16) * (size_t)batch * M * K, &xb);
  if (rc) return rc;
  to_bf16_kernel<<<blocks_for((size_t)batch * M * K), 256, 0, ctx->stream>>>(x, ldx, sx, static_cast<bf16 *>(xb), M, K, batch);
  if ((rc = launched("rounding activations to bf16"))) return rc;
  return gemm_bf16_nt(ctx, xb, K, (long long)M * K, w, K, sw, y, ldy, sy, M, N, K, batch, accumulate ? 1.f : 0.f);
}

namespace {

// The experts' GEMMs through cuBLAS on bf16 weights where they lie or as MoeGroups::load brings them
// (dequantized) a group at a time: the host reads the group sizes first.
int grouped_gemms(klc_ctx *ctx, const MoeTc &m) {
  const int E = m.E;
  // off[0..E] and tiles[0..E] lie side by side: one copy brings both.
  std::vector<int> host(2 * (E + 1));
  cudaError_t e = cudaMemcpyAsync(host.data(), m.off, sizeof(int) * 2 * (E + 1), cudaMemcpyDeviceToHost, ctx->stream);
  if (e == cudaSuccess) e = cudaStreamSynchronize(ctx->stream);
  if (e != cudaSuccess) return fail_cuda(e, "reading the MoE group sizes");
  const int *tiles = host.data() + (E + 1);
  const size_t d = m.d, I = m.I;
  const bf16 *xs = static_cast<const bf16 *>(m.xs), *hs = static_cast<const bf16 *>(m.hs);
  const bf16 *w13 = static_cast<const bf16 *>(m.w13), *w2 = static_cast<const bf16 *>(m.w2);
  int rc = KLC_OK;
  const int group = m.groups.size > 0 && m.groups.size < E ? m.groups.size : E;
  // Each group's pointer lists get their own room (6 per expert from 6 * e0), so a list is never
  // rewritten while GEMMs queued before may still read it. The gathered rows (bf16, half a row of
  // ys each) may share ys's buffer: groups run from the last expert down, so a group's down
  // projections write ys rows r >= r0 (bytes from 4d·r0), where no gathered row below r0 (bytes
  // below 2d·r0) lies, and only after its own up projections have read its gathered rows.
  std::vector<const void *> list;
  for (int e0 = (E - 1) / group * group; e0 >= 0 && !rc; e0 -= group) {
    const int e1 = std::min(E, e0 + group);
    // The group's experts that have rows, in order of tile count; each run of equal counts is one batched GEMM.
    std::vector<int> order;
    for (int g = e0; g < e1; ++g)
      if (tiles[g + 1] > tiles[g]) order.push_back(g);
    if (order.empty()) continue;
    if (m.groups.load && (rc = m.groups.load(ctx, m.groups.arg, e0, e1))) break;
    std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return tiles[a + 1] - tiles[a] < tiles[b + 1] - tiles[b]; });
    const int used = (int)order.size();
    // Six pointer lists of `used` entries: up (W13, xs, gu) and down (W2, hs, ys).
    list.assign(6 * (size_t)used, nullptr);
    for (int j = 0; j < used; ++j) {
      const int g = order[j];
      const size_t row = (size_t)tiles[g] * m.tile;
      list[0 * used + j] = w13 + (size_t)(g - e0) * 2 * I * d;
      list[1 * used + j] = xs + row * d;
      list[2 * used + j] = m.gu + row * 2 * I;
      list[3 * used + j] = w2 + (size_t)(g - e0) * d * I;
      list[4 * used + j] = hs + row * I;
      list[5 * used + j] = m.ys + row * d;
    }
    void **P = m.ptrs + 6 * (size_t)e0;
    e = cudaMemcpyAsync(P, list.data(), sizeof(void *) * list.size(), cudaMemcpyHostToDevice, ctx->stream);
    if (e != cudaSuccess) return fail_cuda(e, "uploading the MoE GEMM pointers");
    auto in = [&](int l, int j0) { return const_cast<const void *const *>(P + l * used + j0); };
    auto res = [&](int l, int j0) { return reinterpret_cast<float *const *>(P + l * used + j0); };
    auto runs = [&](int which) {  // which = 0: up projections, 3: down projections
      int r = KLC_OK;
      for (int j0 = 0; j0 < used && !r;) {
        const int c = tiles[order[j0] + 1] - tiles[order[j0]];
        int j1 = j0;
        while (j1 < used && tiles[order[j1] + 1] - tiles[order[j1]] == c) ++j1;
        const int M = c * m.tile;
        r = which == 0 ? gemm_bf16_nt_ptrs(ctx, in(1, j0), m.d, in(0, j0), m.d, res(2, j0), 2 * m.I, M, 2 * m.I, m.d, j1 - j0)
                       : gemm_bf16_nt_ptrs(ctx, in(4, j0), m.I, in(3, j0), m.I, res(5, j0), m.d, M, m.d, m.I, j1 - j0);
        j0 = j1;
      }
      return r;
    };
    if ((rc = runs(0))) break;
    // The group's experts own the padded rows [tiles[e0], tiles[e1]) tiles: SwiGLU over those alone.
    const size_t r0 = (size_t)tiles[e0] * m.tile, rows = (size_t)(tiles[e1] - tiles[e0]) * m.tile;
    silu_mul_bf16_kernel<<<blocks_for(rows * I), 256, 0, ctx->stream>>>(m.gu + r0 * 2 * I, static_cast<bf16 *>(m.hs) + r0 * I, (int)rows, m.I);
    if ((rc = launched("the MoE SwiGLU"))) break;
    rc = runs(3);
  }
  return rc;
}

}  // namespace

int tc_moe(klc_ctx *ctx, const MoeTc &m) {
  gather_bf16_kernel<<<m.T * m.k, 256, 0, ctx->stream>>>(m.x, m.tok, m.off, m.tiles, m.E, m.tile, static_cast<bf16 *>(m.xs), m.d);
  int rc = launched("gathering the MoE rows");
  if (!rc) {
    const bool grouped = m.groups.w13 || (!m.groups.load && moe_bf16_gemm_wanted(m.w13, m.w2, m.d, m.I));
    rc = grouped ? moe_wq_gemm(ctx, m) : grouped_gemms(ctx, m);
  }
  if (rc) return rc;
  combine_padded_kernel<<<m.T, 256, sizeof(int) * m.k, ctx->stream>>>(m.ys, m.idx, m.pos, m.off, m.tiles, m.w, m.out, m.d, m.k,
                                                                       m.tile);
  return launched("the MoE combine");
}

bool tc_mla_wanted(klc_ctx *ctx, int T) { return ctx->tensor_cores && T >= 16; }

int tc_mla(klc_ctx *ctx, const float *q, const void *cache, int cache_type, float *out, float *ws, int T, int H, int start, int D,
           int L, float scale) {
  const int total = start + T;
  const size_t budget = mla_score_bytes();
  // Per score: fp32 score and bf16 weight; per query row: the running max and sum.
  const size_t per_row_fixed = sizeof(float2);
  const int block = (int)std::max<size_t>(1, std::min<size_t>(T, budget / ((size_t)H * (6 * std::min(total, MLA_MIN_CHUNK) + per_row_fixed))));
  const size_t rows_max = (size_t)block * H;
  const size_t per_row = budget / rows_max;
  const size_t fits = per_row > per_row_fixed + 48 ? (per_row - per_row_fixed) / 6 / 8 * 8 : 8;
  const int chunk = (int)std::min<size_t>((total + 7) / 8 * 8, fits);
  const int ld = chunk;
  const bool copy = cache_type != KLC_CACHE_BF16;
  void *scores = nullptr, *staging = nullptr;
  int rc = scratch(ctx, 1, sizeof(float) * rows_max * ld + per_row_fixed * rows_max, &scores);
  const size_t cache_bytes = copy ? align256(sizeof(bf16) * (size_t)total * D) : 0, q_bytes = align256(sizeof(bf16) * rows_max * D);
  if (!rc) rc = scratch(ctx, 2, cache_bytes + q_bytes + sizeof(bf16) * rows_max * ld, &staging);
  if (rc) return rc;
  const bf16 *cache_b = copy ? static_cast<const bf16 *>(staging) : static_cast<const bf16 *>(cache);
  bf16 *q_b = reinterpret_cast<bf16 *>(static_cast<char *>(staging) + cache_bytes);
  bf16 *weights = reinterpret_cast<bf16 *>(static_cast<char *>(staging) + cache_bytes + q_bytes);
  float *S = static_cast<float *>(scores);
  float2 *run = reinterpret_cast<float2 *>(S + rows_max * ld);
  // The caller's workspace (rows * (L + 2) floats at least) holds one chunk's weighted latents and stats.
  float *part = ws;
  float2 *part_stats = reinterpret_cast<float2 *>(ws + rows_max * L);
  if (copy) {
    to_bf16_kernel<<<blocks_for((size_t)total * D), 256, 0, ctx->stream>>>(static_cast<const float *>(cache), D, 0,
                                                                           static_cast<bf16 *>(staging), total, D, 1);
    if ((rc = launched("rounding the MLA latents to bf16"))) return rc;
  }
  for (int t0 = 0; t0 < T && !rc; t0 += block) {
    const int tb = std::min(block, T - t0), rows = tb * H, keys = start + t0 + tb;
    float *o = out + (size_t)t0 * H * L;
    to_bf16_kernel<<<blocks_for((size_t)rows * D), 256, 0, ctx->stream>>>(q + (size_t)t0 * H * D, D, 0, q_b, rows, D, 1);
    if ((rc = launched("rounding the MLA queries to bf16"))) break;
    const int chunks = (keys + chunk - 1) / chunk;
    for (int c = 0; c < chunks && !rc; ++c) {
      const int k0 = c * chunk, n = std::min(chunk, keys - k0);
      const bf16 *keys_b = cache_b + (size_t)k0 * D;
      if ((rc = gemm_bf16_nt(ctx, q_b, D, 0, keys_b, D, 0, S, ld, 0, rows, n, D, 1, 0.f))) break;
      // The first chunk writes the running values directly; later ones go through the workspace.
      chunk_softmax_kernel<<<rows, SOFTMAX_THREADS, 0, ctx->stream>>>(S, weights, ld, n, H, start + t0 + 1 - k0, scale,
                                                                      c == 0 ? run : part_stats);
      if ((rc = launched("the MLA causal softmax"))) break;
      if ((rc = gemm_bf16_nn(ctx, weights, ld, keys_b, D, c == 0 ? o : part, L, rows, L, n))) break;
      if (c == 0 && chunks > 1) continue;
      merge_chunk_kernel<<<rows, 128, 0, ctx->stream>>>(o, run, c == 0 ? nullptr : part, part_stats, L, c == chunks - 1);
      rc = launched("merging MLA key chunks");
    }
  }
  return rc;
}

}  // namespace klc
