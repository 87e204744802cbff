// Tensor-core forms of the layer ops, used for bf16 checkpoints once klc_set_tensor_cores is on:
// fp32 activations are rounded to bf16 right before a cuBLAS GEMM (bf16 operands, fp32
// accumulation and output), as bf16 inference engines do. Linear layers run as one GEMM (or a
// strided batch), MoE experts as one GEMM per active expert over its gathered tokens, and MLA
// prefill attention as blocks of query rows: scores of the block against every visible latent
// row, a causal softmax to bf16 probabilities, and probabilities times latents.
#include <cuda_bf16.h>

#include <algorithm>
#include <cfloat>
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

// xs[p, :] = x[tok[p], :] in bf16: the MoE rows sorted by expert.
__global__ void gather_bf16_kernel(const float *x, const int *tok, bf16 *xs, int d) {
  const int p = blockIdx.x;
  const float *src = x + (size_t)tok[p] * d;
  for (int c = threadIdx.x; c < d; c += blockDim.x) xs[(size_t)p * d + c] = __float2bfloat16(src[c]);
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

// Row r of the block (token t0 + r / H) sees keys j < start + t0 + r / H + 1: P[r, j] is its
// softmax probability of scale * S[r, j] in bf16, and 0 for the keys it must not see.
constexpr int SOFTMAX_THREADS = 256;
__global__ void __launch_bounds__(SOFTMAX_THREADS) causal_softmax_kernel(const float *S, bf16 *P, int ld, int keys, int H,
                                                                          int first_visible, float scale) {
  const size_t r = blockIdx.x;
  const float *row = S + r * ld;
  bf16 *prow = P + r * ld;
  const int visible = first_visible + (int)(r / H);
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
  __shared__ float total_m, total_inv;
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
    total_inv = 1.f / Ssum;
  }
  __syncthreads();
  const float M = total_m, inv = total_inv;
  for (int j = threadIdx.x; j < keys; j += SOFTMAX_THREADS)
    prow[j] = __float2bfloat16(j < visible ? expf(row[j] * scale - M) * inv : 0.f);
}

int launched(const char *what) {
  cudaError_t e = cudaGetLastError();
  return e == cudaSuccess ? KLC_OK : klc::fail_cuda(e, what);
}

int blocks_for(size_t n) {
  const size_t b = (n + 255) / 256;
  return (int)std::max<size_t>(1, std::min<size_t>(b, 65535 * 16));
}

size_t align256(size_t b) { return (b + 255) & ~(size_t)255; }

// Scores of one MLA query block take at most this much memory (fp32 scores plus bf16 probabilities).
constexpr size_t MLA_BLOCK_BYTES = size_t(1) << 30;

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

bool tc_moe_wanted(klc_ctx *ctx, int T, int k, int E) { return ctx->tensor_cores && (long long)T * k >= 2LL * E; }

int tc_moe(klc_ctx *ctx, const float *x, const int *off, const int *tok, const void *w13, const void *w2, float *gu, void *xs,
           void *hs, float *ys, int n, int d, int I, int E) {
  // cuBLAS takes the group sizes on the host: one wait per MoE layer of a prefill slice.
  std::vector<int> host(E + 1);
  cudaError_t e = cudaMemcpyAsync(host.data(), off, sizeof(int) * (E + 1), cudaMemcpyDeviceToHost, ctx->stream);
  if (e == cudaSuccess) e = cudaStreamSynchronize(ctx->stream);
  if (e != cudaSuccess) return fail_cuda(e, "reading the MoE group sizes");
  gather_bf16_kernel<<<n, 256, 0, ctx->stream>>>(x, tok, static_cast<bf16 *>(xs), d);
  int rc = launched("gathering the MoE rows");
  const bf16 *xsb = static_cast<const bf16 *>(xs);
  const bf16 *w13b = static_cast<const bf16 *>(w13), *w2b = static_cast<const bf16 *>(w2);
  for (int g = 0; g < E && !rc; ++g) {
    const int rows = host[g + 1] - host[g];
    if (rows > 0)
      rc = gemm_bf16_nt(ctx, xsb + (size_t)host[g] * d, d, 0, w13b + (size_t)g * 2 * I * d, d, 0, gu + (size_t)host[g] * 2 * I,
                        2 * I, 0, rows, 2 * I, d, 1, 0.f);
  }
  if (rc) return rc;
  silu_mul_bf16_kernel<<<blocks_for((size_t)n * I), 256, 0, ctx->stream>>>(gu, static_cast<bf16 *>(hs), n, I);
  if ((rc = launched("the MoE SwiGLU"))) return rc;
  const bf16 *hsb = static_cast<const bf16 *>(hs);
  for (int g = 0; g < E && !rc; ++g) {
    const int rows = host[g + 1] - host[g];
    if (rows > 0)
      rc = gemm_bf16_nt(ctx, hsb + (size_t)host[g] * I, I, 0, w2b + (size_t)g * d * I, I, 0, ys + (size_t)host[g] * d, d, 0, rows,
                        d, I, 1, 0.f);
  }
  return rc;
}

bool tc_mla_wanted(klc_ctx *ctx, int T) { return ctx->tensor_cores && T >= 16; }

int tc_mla(klc_ctx *ctx, const float *q, const float *cache, float *out, int T, int H, int start, int D, int L, float scale) {
  const int total = start + T;
  const int ld = (total + 7) / 8 * 8;
  const size_t per_token = (size_t)H * ld * (sizeof(float) + sizeof(bf16));
  const int block = (int)std::max<size_t>(1, std::min<size_t>(T, MLA_BLOCK_BYTES / per_token));
  const size_t rows_max = (size_t)block * H;
  void *scores = nullptr, *staging = nullptr;
  int rc = scratch(ctx, 1, sizeof(float) * rows_max * ld, &scores);
  const size_t cache_bytes = align256(sizeof(bf16) * (size_t)total * D), q_bytes = align256(sizeof(bf16) * rows_max * D);
  if (!rc) rc = scratch(ctx, 2, cache_bytes + q_bytes + sizeof(bf16) * rows_max * ld, &staging);
  if (rc) return rc;
  bf16 *cache_b = static_cast<bf16 *>(staging);
  bf16 *q_b = reinterpret_cast<bf16 *>(static_cast<char *>(staging) + cache_bytes);
  bf16 *probs = reinterpret_cast<bf16 *>(static_cast<char *>(staging) + cache_bytes + q_bytes);
  float *S = static_cast<float *>(scores);
  to_bf16_kernel<<<blocks_for((size_t)total * D), 256, 0, ctx->stream>>>(cache, D, 0, cache_b, total, D, 1);
  if ((rc = launched("rounding the MLA latents to bf16"))) return rc;
  for (int t0 = 0; t0 < T && !rc; t0 += block) {
    const int tb = std::min(block, T - t0), rows = tb * H, keys = start + t0 + tb;
    to_bf16_kernel<<<blocks_for((size_t)rows * D), 256, 0, ctx->stream>>>(q + (size_t)t0 * H * D, D, 0, q_b, rows, D, 1);
    if ((rc = launched("rounding the MLA queries to bf16"))) break;
    if ((rc = gemm_bf16_nt(ctx, q_b, D, 0, cache_b, D, 0, S, ld, 0, rows, keys, D, 1, 0.f))) break;
    causal_softmax_kernel<<<rows, SOFTMAX_THREADS, 0, ctx->stream>>>(S, probs, ld, keys, H, start + t0 + 1, scale);
    if ((rc = launched("the MLA causal softmax"))) break;
    rc = gemm_bf16_nn(ctx, probs, ld, cache_b, D, out + (size_t)t0 * H * L, L, rows, L, keys);
  }
  return rc;
}

}  // namespace klc
