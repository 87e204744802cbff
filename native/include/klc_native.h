/*
 * klc_native: the CUDA backend of kimi-linear-code behind a plain C API.
 *
 * Every call returns 0 on success or a negative KLC_E_* code; the reason, written for a user,
 * is then in klc_last_error() (per thread). Tensors are passed as device pointers, so the same
 * entry points serve the Node binding (buffers allocated through klc_alloc) and test drivers
 * that own their device memory (for example torch tensors on the same device).
 */
#ifndef KLC_NATIVE_H
#define KLC_NATIVE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(_WIN32)
#define KLC_API __declspec(dllexport)
#else
#define KLC_API __attribute__((visibility("default")))
#endif

#define KLC_ABI_VERSION 16

enum {
  KLC_OK = 0,
  KLC_E_NO_DRIVER = -1,   /* no usable NVIDIA driver */
  KLC_E_NO_DEVICE = -2,   /* driver present, no CUDA device (or index out of range) */
  KLC_E_ARCH = -3,        /* device older than the oldest architecture built in */
  KLC_E_OOM = -4,         /* device memory exhausted */
  KLC_E_ARG = -5,         /* bad argument (shape, null pointer, unsupported size) */
  KLC_E_CUDA = -6         /* any other CUDA failure */
};

typedef struct klc_ctx klc_ctx;

typedef struct klc_device_info {
  char name[256];
  int major, minor;          /* compute capability */
  int multiprocessors;
  uint64_t total_bytes, free_bytes;
  int driver_version, runtime_version;
} klc_device_info;

/* Shapes and options of one KDA call. Layouts (row-major, innermost last):
 *   q, k: [B, T, H, K] bf16        v: [B, T, H, V] bf16          o: [B, T, H, V] bf16
 *   g:    [B, T, H, K] fp32        beta: [B, T, H] fp32
 *   state: [B, H, K, V] fp32, read as the initial state and overwritten with the final one.
 * raw_gates = 0: g is the log-decay (<= 0) and beta is in (0, 1).
 * raw_gates = 1: g is the forget projection f and beta the b_proj logit; the kernel computes
 *   g = -exp(A_log[h]) * softplus(f + dt_bias[h*K + c]) and beta = sigmoid(beta) (spec 2.1 steps 6-7);
 *   A_log is [H] fp32 and dt_bias [H*K] fp32.
 * l2norm_qk = 1: q and k are divided by sqrt(sum(x^2) + 1e-6) per (token, head) in fp32.
 * scale multiplies q (after the l2norm); Kimi uses K^-0.5. Only K = V = 128 is built. */
typedef struct klc_kda_args {
  int B, T, H, K, V;
  int l2norm_qk;
  int raw_gates;
  float scale;
  const void *q, *k, *v;
  const float *g, *beta;
  const float *A_log, *dt_bias;
  float *state;
  void *o;
} klc_kda_args;

KLC_API int klc_abi_version(void);
/* Architectures compiled into this library, e.g. "sm_80 sm_86 sm_89 sm_90 compute_90". */
KLC_API const char *klc_build_archs(void);
KLC_API const char *klc_last_error(void);

KLC_API int klc_device_count(int *count);
KLC_API int klc_device_query(int device, klc_device_info *info);

KLC_API int klc_create(int device, klc_ctx **out);
KLC_API void klc_destroy(klc_ctx *ctx);
KLC_API int klc_synchronize(klc_ctx *ctx);
/* Tensor-core mode for bf16 weights: linear layers, MoE experts and MLA prefill attention round
 * their fp32 activations to bf16 and run on cuBLAS (loaded at run time: $KLC_CUBLAS, then
 * libcublas.so.13, then .12) with fp32 accumulation and output. Off by default, which keeps the exact
 * fp32 CUDA-core kernels; fp32 weights always take them. Enabling fails with KLC_E_NO_DRIVER and a
 * reason when cuBLAS cannot be loaded, and the context stays in the exact mode. In both modes, calls with few
 * rows (linear layers with M <= 8, MoE experts with at most 128 token-expert pairs) take memory-bound kernels
 * that keep the activations in fp32; KLC_SMALL_BATCH=0 in the environment turns them off (for comparisons). */
KLC_API int klc_set_tensor_cores(klc_ctx *ctx, int enable);
/* Which engine runs the matrix products now, in words (for logs). */
KLC_API const char *klc_gemm_engine(klc_ctx *ctx);
/* Queues the context's work on `stream` (a cudaStream_t of the same device) instead of its own,
 * so that a caller can order it with other libraries or capture it in a CUDA graph. NULL restores
 * the context's own stream. */
KLC_API int klc_set_stream(klc_ctx *ctx, void *stream);

KLC_API int klc_alloc(klc_ctx *ctx, size_t bytes, void **out);
KLC_API int klc_free(klc_ctx *ctx, void *ptr);
KLC_API int klc_memset(klc_ctx *ctx, void *dst, int value, size_t bytes);
KLC_API int klc_upload(klc_ctx *ctx, void *dst, const void *src, size_t bytes);
KLC_API int klc_download(klc_ctx *ctx, void *dst, const void *src, size_t bytes);

/* Chunked prefill (chunk 64) of T tokens for each of B sequences. The intra-chunk workspace is
 * kept in the context and sized for at most max_segment_tokens per pass (0 keeps the current
 * limit, 16384 by default); longer inputs run in several passes with the state carried on the GPU. */
KLC_API int klc_kda_prefill(klc_ctx *ctx, const klc_kda_args *args);
KLC_API int klc_set_max_segment_tokens(klc_ctx *ctx, int tokens);
/* One decode step per sequence: args->T must be 1. Gate, state update and output are fused. */
KLC_API int klc_kda_decode(klc_ctx *ctx, const klc_kda_args *args);

/* Times `iters` back-to-back calls with CUDA events after one warm-up; writes milliseconds per call. */
KLC_API int klc_kda_time(klc_ctx *ctx, const klc_kda_args *args, int decode, int iters, float *ms_per_call);

/* ---- Layer operations (native/src: elementwise.cu, norm.cu, linear.cu, conv.cu, kda_recurrent.cu,
 * mla.cu, moe.cu, one op family each) -------------------------------------------------------------
 * Activations are fp32 row-major [rows, cols] with a leading dimension (ld*) in elements; weights
 * are bf16 PyTorch Linear layout [out, in]; norm, conv and gate parameters are fp32. */

/* out[t, :] = table[ids[t], :] for T ids (ids on the device, already checked to be in range); the table
 * is bf16, or fp32 if table_f32. */
KLC_API int klc_embed(klc_ctx *ctx, const void *table, const int32_t *ids, float *out, int T, int d, int table_f32);
/* y[r, :D] = w * x[r, :D] / sqrt(mean(x^2) + eps) for each of `rows` rows. */
KLC_API int klc_rmsnorm(klc_ctx *ctx, const float *x, int ldx, const float *w, float *y, int ldy, int rows, int D, float eps);
/* h += x over n floats. */
KLC_API int klc_add(klc_ctx *ctx, float *h, const float *x, size_t n);
/* The residual add and the next norm in one pass over rows of D: h[r] += x[r], then y[r] = RMSNorm(h[r]) * w,
 * equal to klc_add followed by klc_rmsnorm (same arithmetic in the same order). y must not overlap x. */
KLC_API int klc_add_rmsnorm(klc_ctx *ctx, float *h, const float *x, const float *w, float *y, int rows, int D, float eps);
KLC_API int klc_copy2d(klc_ctx *ctx, const float *src, int lds, float *dst, int ldd, int rows, int cols);
KLC_API int klc_copy(klc_ctx *ctx, void *dst, const void *src, size_t bytes);
/* h[r, i] = SiLU(gu[r, i]) * gu[r, I + i] for gu [rows, 2I] (gate and up side by side). */
KLC_API int klc_silu_mul(klc_ctx *ctx, const float *gu, float *h, int rows, int I);
/* For b < batch: y_b[M, N] (+)= x_b[M, K] * W_bᵀ with x_b = x + b*sx, W_b = w + b*sw (W_b [N, K] bf16,
 * contiguous), y_b = y + b*sy; fp32 accumulation. accumulate = 1 adds to y. w_f32 = 1: W is fp32, not bf16. */
KLC_API int klc_linear(klc_ctx *ctx, const float *x, int ldx, const void *w_bf16, float *y, int ldy, int M, int N, int K,
                       int batch, long long sx, long long sw, long long sy, int accumulate, int w_f32);
/* Depthwise causal conv (kernel W <= 8, last tap on the current token) + SiLU over C channels of x [T, C];
 * tail [C, W-1] (oldest first) holds the inputs before x and is advanced to end with x's last inputs.
 * Channel c goes to stream s = c / split, written at y + s*T*split + t*split + c % split, as fp32 (y_f32)
 * and/or bf16 (y_bf16). */
KLC_API int klc_short_conv(klc_ctx *ctx, const float *x, const float *w, float *tail, float *y_f32, void *y_bf16, int T, int C,
                           int W, int split);
/* The KDA token recurrence with fp32 q, k, v and o (args->q/k/v/o point to float), any K <= 128 and V;
 * same options and state layout as klc_kda_prefill. Exact form of spec 2.1 step 8. */
KLC_API int klc_kda_recurrent_f32(klc_ctx *ctx, const klc_kda_args *args);
/* KDA output norm: y[r, :] = RMSNorm(o[r, :]) * w * sigmoid(gate[r, :]) for rows vectors of D; o is bf16 if o_bf16. */
KLC_API int klc_gated_rmsnorm(klc_ctx *ctx, const void *o, int o_bf16, const float *gate, const float *w, float *y, int rows,
                              int D, float eps);
/* The element type of an MLA latent cache (rows of D = L + rope values): fp32, or bf16 (half the
 * memory and read bandwidth; the CUDA backend's choice in tensor-core mode). Every entry point that
 * reads or writes a cache takes its type; sums are fp32 in both. */
enum { KLC_CACHE_F32 = 0, KLC_CACHE_BF16 = 1 };
/* Writes `rows` latent rows at cache (the first row to write) from ckv [rows, D], the kv_a_proj
 * output: row r = [RMSNorm(ckv[r, :L]) * w ; ckv[r, L:D]] (w [L] fp32), rounded to the cache's type
 * (bf16 to nearest even). The fp32 form equals klc_rmsnorm then klc_copy2d of the rope part. */
KLC_API int klc_mla_append_latents(klc_ctx *ctx, const float *ckv, const float *w, void *cache, int cache_type, int rows, int D,
                                   int L, float eps);
/* The same for one row of each of B caches (B <= KLC_MAX_DECODE_BATCH): row b of ckv [B, D] goes to
 * row positions[b] of caches[b], positions in device memory (a decode step's; see klc_mla_decode). */
KLC_API int klc_mla_append_at(klc_ctx *ctx, const float *ckv, const float *w, const void *const *caches, int cache_type,
                              const int32_t *positions, int B, int D, int L, float eps);
/* MLA attention in the absorbed form over the latent cache [start + T, D] (D = L + rope): query row
 * r = t*H + h of q [T*H, D] attends to cache rows j < start + t + 1 with softmax(scale * q.row_j) and
 * writes sum_j p_j * row_j[:L] to out [T*H, L]. The key range is split in `splits` parts (see
 * klc_mla_splits) whose partial softmax sums are joined; ws holds klc_mla_workspace_bytes(). */
KLC_API size_t klc_mla_workspace_bytes(int rows, int L, int splits);
KLC_API int klc_mla_splits(klc_ctx *ctx, int rows, int total_keys);
KLC_API int klc_mla_attention(klc_ctx *ctx, const float *q, const void *cache, int cache_type, float *out, float *ws,
                              size_t ws_bytes, int T, int H, int start, int D, int L, float scale, int splits);
/* MLA causal prefill in the up-projected form, flash-style on tensor cores (tensor-core mode, bf16
 * kv_b_proj): q [T, H, nope + rope] is the q projection, cache [start + T, L + rope] the latent rows
 * (the new tokens' rows already appended), w_uk_t bf16 [H, L, nope] and w_uv bf16 [H, dv, L] the
 * halves of kv_b_proj. Writes out [T, H * dv]: token t, head h attends to cache rows j < start + t + 1
 * with keys (W_UK[h] c_j, pe_j), values W_UV[h] c_j and softmax(scale * q . key). Needs
 * nope + rope = 192 and dv = 128 (Kimi Linear's widths). */
KLC_API int klc_mla_prefill_heads(klc_ctx *ctx, const float *q, const void *cache, int cache_type, const void *w_uk_t,
                                  const void *w_uv, float *out, int T, int H, int start, int nope, int rope, int dv, int L,
                                  float scale);
/* The kernel klc_mla_prefill_heads runs on ctx's device as the environment stands: "wgmma_pipe" (Hopper,
 * sm_90a builds: wgmma with each warpgroup's softmax overlapped with its MMAs), "wgmma" (without that
 * overlap) and "wgmma_ws" (warp-specialized), both only when asked for, or "fa2" (mma.sync, sm_80 and
 * newer). KLC_MLA_KERNEL=auto (default), fa2, wgmma, wgmma_pipe or wgmma_ws chooses; NULL when the
 * choice is invalid here (klc_last_error says why). */
KLC_API const char *klc_mla_prefill_kernel(klc_ctx *ctx);
/* 1 when klc_mla_prefill_heads serves this prefill (tensor-core mode, supported widths) and takes
 * fewer FLOPs than the absorbed form: a few hundred new tokens or more. */
KLC_API int klc_mla_heads_wanted(klc_ctx *ctx, int T, int start, int nope, int rope, int dv, int L);
/* MoE router on logits [T, E]: top-k of sigmoid(logit) + bias (ties to the lower index), reported in
 * ascending expert order with weights sigmoid(logit) / (sum over the chosen + 1e-20 if renorm) * scaling. */
KLC_API int klc_moe_route(klc_ctx *ctx, const float *logits, const float *bias, int32_t *idx, float *w, int T, int E, int k,
                          int renorm, float scaling);
/* The most rows of klc_moe_router, klc_moe_block and klc_moe_block_wq (a decode step's batch). */
#define KLC_MOE_BLOCK_MAX_ROWS 8
/* klc_moe_route of the router's logits computed in the same launch, for a decode step's rows: logits [T, E] =
 * x [T, d] Wᵀ (w_router [E, d] bf16, or fp32 with w_f32; fp32 sums) are written, and idx and w are klc_moe_route's
 * of them. T <= KLC_MOE_BLOCK_MAX_ROWS, E <= 256, k <= 16, d a multiple of 8, x and w_router 16-byte aligned. One
 * launch instead of two. */
KLC_API int klc_moe_router(klc_ctx *ctx, const float *x, const void *w_router, int w_f32, const float *bias, float *logits, int32_t *idx,
                           float *w, int T, int d, int E, int k, int renorm, float scaling);
/* klc_add_rmsnorm (h += a, y = RMSNorm(h) * norm_w) and then klc_moe_router of y, in one launch: every CTA norms the
 * rows itself (h + a, not yet written) and the last one writes h and y. d a multiple of 8; h, a, norm_w, y and
 * w_router 16-byte aligned.
 * y's bits may differ from klc_add_rmsnorm's in the last place (the sum of squares is taken in another order). */
KLC_API int klc_moe_router_norm(klc_ctx *ctx, float *h, const float *a, const float *norm_w, float eps, float *y, const void *w_router,
                                int w_f32, const float *bias, float *logits, int32_t *idx, float *w, int T, int d, int E, int k, int renorm,
                                float scaling);
/* out[t] += sum_s w[t,s] * expert_{idx[t,s]}(x[t]) with expert_e(x) = W2_e (SiLU(W1_e x) * (W3_e x)); w13 is
 * [E, 2I, d] (W1_e rows then W3_e rows), w2 [E, d, I]. Tokens are grouped by expert on the GPU; ws holds
 * klc_moe_workspace_bytes(). w_f32 = 1: the expert weights are fp32. */
KLC_API size_t klc_moe_workspace_bytes(int T, int d, int I, int E, int k);
KLC_API int klc_moe_experts(klc_ctx *ctx, const float *x, const int32_t *idx, const float *w, const void *w13, const void *w2,
                            float *out, void *ws, size_t ws_bytes, int T, int d, int I, int E, int k, int w_f32);
/* The whole MoE block of a decode step's rows on bf16 experts: out[T, d] = shared(x) + klc_moe_experts' sum
 * (out is written), the shared expert SwiGLU(x) = W2 (SiLU(W1 x) * W3 x) given as shared_w13 [2I, d] and
 * shared_w2 [d, I] (bf16), for 1..KLC_MOE_BLOCK_MAX_ROWS rows. Where the small-batch kernels take the
 * routed experts, the shared expert runs inside them as one more expert every row chose with weight 1,
 * added after the routed ones: two launches for the block instead of five. Otherwise (more pairs, or
 * KLC_SMALL_BATCH=0) it runs first as klc_linear, SwiGLU and klc_linear into out, and the routed
 * experts add to it. */
KLC_API int klc_moe_block(klc_ctx *ctx, const float *x, const int32_t *idx, const float *w, const void *w13, const void *w2,
                          const void *shared_w13, const void *shared_w2, float *out, void *ws, size_t ws_bytes, int T, int d, int I, int E,
                          int k);

/* ---- Batched decode and sampling (native/src/batch_decode.cu, native/src/sample.cu) -------------
 * One decode step for B sequences at once, each with its own state. The per-sequence pointers and
 * lengths are host arrays; they travel to the GPU inside the kernel launch (no upload, no wait). */
#define KLC_MAX_DECODE_BATCH 64

/* KDA decode of row b for sequence b: proj [B, 2HK + HV] are the q|k|v projections before the short
 * conv (conv_w [2HK + HV, W] fp32), g [B, H*K] the forget projection f and beta [B, H] the b_proj
 * logits (raw gates as in klc_kda_args), A_log [H], dt_bias [H*K]. states[b] points to that
 * sequence's S [H, K, V] fp32 and tails[b] to its conv tail [2HK + HV, W-1]; both are advanced.
 * q and k are l2-normalised, q scaled by `scale`; o [B, H*V] fp32. K, V <= 128, W <= 8.
 * beta NULL: the logits are computed here from the layer's input x [B, d] fp32 and b_proj's weight
 * b_w [H, d] (bf16, or fp32 with b_w_f32), fp32 sums. o_norm_w set: o is written as klc_gated_rmsnorm
 * makes it from the recurrence's output, each head's V values normed (eps) with o_norm_w [V] and gated
 * by sigmoid(gate [B, H*V]); needs V = K. Each takes a launch off a KDA layer's decode. */
typedef struct klc_kda_decode_batch_args {
  int B, H, K, V, W;
  float scale;
  const float *proj, *conv_w, *g, *beta, *A_log, *dt_bias;
  float *o;
  float *const *states;
  float *const *tails;
  const float *x;
  const void *b_w;
  int d, b_w_f32;
  const float *o_norm_w, *gate;
  float eps;
} klc_kda_decode_batch_args;
KLC_API int klc_kda_decode_batch(klc_ctx *ctx, const klc_kda_decode_batch_args *args);

/* MLA absorbed decode for B sequences: query rows b*H + h of q [B*H, D] attend to all lengths[b]
 * rows of caches[b] ([lengths[b], D] of cache_type, the new token's row already appended) with
 * softmax(scale * q.row) and write the latent context to out [B*H, L]. Split over the key range
 * with partial softmax sums joined at the end; tensor cores (TF32; in exact mode split into high and
 * low parts for fp32 accuracy).
 * positions: NULL, or B int32 in device memory holding lengths[b] - 1, which the kernels then read
 * instead of the host's lengths, so that a CUDA graph replaying the call reads each step's.
 * capacity: 0, or at least every length: the split plan is made for that many keys, so a replay
 * stays valid while the lengths grow up to it. ws holds klc_mla_decode_workspace_bytes() for
 * max(capacity, longest cache). Devices whose shared memory takes the per-sequence path read the
 * host's lengths; recording that in a graph is refused. */
KLC_API size_t klc_mla_decode_workspace_bytes(klc_ctx *ctx, int B, int H, int D, int L, int max_len);
KLC_API int klc_mla_decode(klc_ctx *ctx, const float *q, const void *const *caches, int cache_type, const int32_t *lengths,
                           const int32_t *positions, int capacity, float *out, void *ws, size_t ws_bytes, int B, int H, int D,
                           int L, float scale);

/* How one row's token is picked (the rule of pickToken in src/engine/sampler.ts): ids >= vocab are
 * never drawn; temperature <= 0 or top_k == 1: the first index of the largest logit; else logits
 * ordered descending (ties: lower index first), the first top_k kept if top_k > 0, weights
 * exp((l - max) / temperature) in double, the nucleus cut at the first j whose cumulative weight /
 * total >= top_p (if top_p < 1), and the first j whose cumulative kept weight exceeds
 * uniform * kept total (the last kept one if none). */
typedef struct klc_token_pick {
  double temperature, top_p, uniform;
  int top_k, vocab;
} klc_token_pick;
/* Picks one token per row of logits [rows, ld] (rows <= KLC_MAX_DECODE_BATCH, vocab <= ld) into
 * ids [rows] int32 on the device; ws holds klc_sample_workspace_bytes(). */
KLC_API size_t klc_sample_workspace_bytes(int rows, int ld);
KLC_API int klc_sample(klc_ctx *ctx, const float *logits, int ld, int rows, const klc_token_pick *picks, int32_t *ids, void *ws,
                       size_t ws_bytes);

/* ---- CUDA graphs (native/src/graph.cu) --------------------------------------------------------
 * klc_graph_begin records what is queued on ctx's stream from then on instead of running it;
 * klc_graph_end stops and makes a graph of it (out NULL: discards the recording, after a call inside
 * it failed). klc_graph_launch queues the recorded work again, with the arguments it was recorded
 * with: what changes between launches must be read from device memory. It queues nothing and sets
 * *launched to 0 when a workspace the context grows on demand has moved since the recording (the
 * graph would use freed memory): record it again. */
typedef struct klc_graph klc_graph;
KLC_API int klc_graph_begin(klc_ctx *ctx);
KLC_API int klc_graph_end(klc_ctx *ctx, klc_graph **out);
KLC_API int klc_graph_launch(klc_ctx *ctx, klc_graph *g, int *launched);
KLC_API int klc_graph_free(klc_ctx *ctx, klc_graph *g);

/* ---- Dummy weights and MLA cache buffers (native/src/dummy.cu, native/src/vbuf.cu) -------------- */

/* Fills out[0..n) (bf16, n <= 2^32) with the dummy-weight normal draw of src/engine/model/dummy-weights.ts
 * for a tensor's two keys: element i is bf16(float(double(sum of eight 16-bit halves of
 * mix32(mix32(i ^ key) ^ (key2 + j * 0x9e3779b9)), j < 4, minus 262140) * scale)). */
KLC_API int klc_fill_normal_bf16(klc_ctx *ctx, void *out, size_t n, uint32_t key, uint32_t key2, double scale);

/* A growable device buffer whose used bytes can be shared with a fork (copy-on-write at granule
 * granularity on CUDA virtual memory management; plain copies where the driver lacks it). The
 * buffer's base address may change when it grows; the bytes below `used` are kept. A fork maps
 * the source's complete granules below `used` and copies the rest, so neither may write below the
 * `used` of the fork point afterwards (MLA caches only append). */
typedef struct klc_vbuf klc_vbuf;
KLC_API int klc_vbuf_create(klc_ctx *ctx, klc_vbuf **out);
/* Makes at least `bytes` usable from *base; `used` bytes (the rows written) are kept. */
KLC_API int klc_vbuf_reserve(klc_ctx *ctx, klc_vbuf *buf, size_t bytes, size_t used, void **base);
/* Forking may split the source's physical extent at the fork point (one copy of at most one extent),
 * so the source is not const; its contents and addresses stay as they are. */
KLC_API int klc_vbuf_fork(klc_ctx *ctx, klc_vbuf *src, size_t used, klc_vbuf **out, void **base);
/* Bytes of device memory the buffer makes usable (shared ones included). */
KLC_API size_t klc_vbuf_bytes(const klc_vbuf *buf);
KLC_API int klc_vbuf_free(klc_ctx *ctx, klc_vbuf *buf);

/* ---- Weight-only quantized matrices (W4A16, W8A16, FP8 W8A16: native/src/wq_*.cu, native/src/moe_small_wq.cu) ----
 * W [N, K] in compressed-tensors' pack-quantized layout, as a checkpoint stores it: w_packed int32
 * [N, K * bits / 32] (32 / bits codes per word, lowest K index in the lowest bits, each stored as
 * code + 2^(bits-1)); scales [N, ceil(K / group)] bf16 or fp32 (scales_f32); zero_points NULL
 * (symmetric: W = q * s for the signed code q) or int32 [ceil(N / (32 / bits)), ceil(K / group)]
 * (32 / bits rows per word, lowest row in the lowest bits, stored as z + 2^(bits-1)): W = (q − z) * s.
 * group = K: one scale per row. Several matrices of the same K stacked by rows are one matrix.
 * codes = KLC_WQ_E4M3: the codes are FP8 E4M3 bytes (float8_e4m3fn, as a float-quantized
 * checkpoint stores its [N, K] weight, read as the int32 words of [N, K / 4], lowest K index in the
 * lowest byte), bits 8, no zero points: W = fp32(e4m3(code)) * s. The NaN bytes 0x7f and 0xff are
 * not a weight any quantizer writes; they read as ±480 here. */
enum { KLC_WQ_INT = 0, KLC_WQ_E4M3 = 1 };
typedef struct klc_wq {
  const int32_t *w_packed;
  const void *scales;
  const int32_t *zero_points;
  int bits; /* 4 or 8 */
  int N, K, group;
  int scales_f32;
  int codes; /* KLC_WQ_INT or KLC_WQ_E4M3 */
} klc_wq;
/* y[M, N] (+)= x[M, K] Wᵀ for few rows (M <= 8): decode and batched decode. Reads every code once;
 * (q − z) and an E4M3 code's value (times 2^-8) are exact in fp32, each group's sum is scaled once,
 * fp32 accumulation. Needs K and group multiples of 32 (4 bits) or 16 (8 bits, E4M3), group dividing K, x 16-byte aligned, ldx a multiple of 4.
 * Small N splits K across CTAs (deterministic: partial sums added in split order), using room the
 * context allocates on first need (a synchronising cudaMalloc, once per size). */
KLC_API int klc_wq_gemv(klc_ctx *ctx, const float *x, int ldx, const klc_wq *w, float *y, int ldy, int M, int accumulate);
/* One matrix of klc_wq_gemv_many: y[M, w.N] (+)= x[M, w.K] Wᵀ as klc_wq_gemv takes it. */
typedef struct klc_wq_job {
  const float *x;
  int ldx;
  klc_wq w;
  float *y;
  int ldy;
  int accumulate;
} klc_wq_job;
#define KLC_WQ_JOBS_MAX 4
/* klc_wq_gemv of n (1..KLC_WQ_JOBS_MAX) matrices in one launch, all of M rows and the same codes
 * (INT4, INT8 or E4M3; scales, groups and zero points may differ): the same results as n calls.
 * No job may write another's x or y. At decode, where most projections take a few microseconds,
 * one launch instead of several saves a launch and a drain per matrix. */
KLC_API int klc_wq_gemv_many(klc_ctx *ctx, const klc_wq_job *jobs, int n, int M);
/* Milliseconds per klc_wq_gemv call over `iters` back-to-back calls after one warm-up (CUDA events).
 * The calls cycle through the `nw` weights w[0 .. nw) (same shape): copies larger together than the
 * L2 cache make each call read its codes from HBM, as decode does. */
KLC_API int klc_wq_gemv_time(klc_ctx *ctx, const float *x, int ldx, const klc_wq *w, int nw, float *y, int ldy, int M, int iters,
                             float *ms_per_call);
/* Rows [row0, row0 + rows) of W dequantized into out [rows, K], bf16 (out_f32 = 0, rounded to
 * nearest even) or fp32 (exact: (q − z) * s or fp32(e4m3(code)) * s in fp32), for the GEMMs of klc_linear and klc_moe_experts. */
KLC_API int klc_wq_dequant(klc_ctx *ctx, const klc_wq *w, int row0, int rows, void *out, int out_f32);
/* A bf16 matrix w [N, K] on the device quantized into the codes and scales above, symmetric, with
 * the host quantizer's arithmetic (src/engine/model/quant/matrix.ts), so the codes equal the host's
 * bit for bit: for weights made on the device (dummy weights). codes = KLC_WQ_INT: bits-bit integer
 * codes, group dividing K into whole words; codes = KLC_WQ_E4M3: E4M3 bytes (bits 8), one scale per
 * row (group = K, K a multiple of 4). group = K: one scale per row. */
KLC_API int klc_wq_quantize_bf16(klc_ctx *ctx, const void *w, int N, int K, int bits, int group, int codes, int32_t *packed, void *scales,
                                 int scales_f32);
/* klc_moe_experts with quantized experts: w13 is [E * 2I, d] (per expert W1 rows then W3 rows), w2
 * [E * d, I]. Few (token, expert) pairs (as klc_moe_experts' small-batch path: T * k <= 128, T <= 32)
 * read the chosen experts' codes straight from idx on the GPU; otherwise the experts are dequantized
 * into `dense` (klc_moe_dense_bytes()) and multiplied there: 32 at a time in bf16 on tensor cores
 * (dense_f32 = 0, which needs them on), all at once in fp32 for the exact kernels (dense_f32 = 1).
 * ws holds klc_moe_workspace_bytes(). */
KLC_API size_t klc_moe_dense_bytes(int d, int I, int E, int dense_f32);
KLC_API int klc_moe_experts_wq(klc_ctx *ctx, const float *x, const int32_t *idx, const float *w, const klc_wq *w13,
                               const klc_wq *w2, float *out, void *ws, size_t ws_bytes, void *dense, int dense_f32, int T, int d,
                               int I, int E, int k);
/* klc_moe_block on quantized experts: out[T, d] = shared(x) + klc_moe_experts_wq's sum (written), the
 * shared expert as shared_w13 [2I, d] (W1 rows then W3 rows) and shared_w2 [d, I] in the routed experts'
 * codes (its groups may differ); fused into the small-batch kernels as klc_moe_block does, else run
 * first as klc_wq_gemv, SwiGLU and klc_wq_gemv into out. */
KLC_API int klc_moe_block_wq(klc_ctx *ctx, const float *x, const int32_t *idx, const float *w, const klc_wq *w13, const klc_wq *w2,
                             const klc_wq *shared_w13, const klc_wq *shared_w2, float *out, void *ws, size_t ws_bytes, void *dense,
                             int dense_f32, int T, int d, int I, int E, int k);

/* ---- Expert offload (native/src/host_moe.cu; the CPU kernels are klc_cpu.h) ----------------------
 * Routed experts of the layers the memory plan offloads live in pinned host memory (klc_host_alloc,
 * filled with klc_host_write) as klc_wq matrices of host pointers. Few tokens run on the CPU:
 * klc_host_moe_begin queues the copy of x [T, d], idx and w [T, k] to pinned buffers; the caller
 * queues the shared expert; klc_host_moe_finish waits for the copy only, computes
 * out += sum_s w * expert(x) on the CPU (klc_cpu_moe_experts) and queues the result's upload through
 * y_dev [T, d] and the add. Many tokens copy the experts to a device staging buffer
 * (klc_copy_to_device_async) and run klc_moe_experts_wq there. */
typedef struct klc_host_moe klc_host_moe;
KLC_API int klc_host_alloc(klc_ctx *ctx, size_t bytes, void **out);
KLC_API int klc_host_free(klc_ctx *ctx, void *ptr);
KLC_API int klc_host_write(void *dst, const void *src, size_t bytes);
/* Queued on ctx's stream, not waited for; src must be pinned host memory. */
KLC_API int klc_copy_to_device_async(klc_ctx *ctx, void *dst, const void *src, size_t bytes);
/* threads <= 0: one per CPU this process may run on. */
KLC_API int klc_host_moe_create(klc_ctx *ctx, int threads, int max_tokens, int d, int k, klc_host_moe **out);
KLC_API void klc_host_moe_free(klc_host_moe *m);
KLC_API int klc_host_moe_threads(const klc_host_moe *m);
KLC_API int klc_host_moe_begin(klc_ctx *ctx, klc_host_moe *m, const float *x, const int32_t *idx, const float *w, int T);
KLC_API int klc_host_moe_finish(klc_ctx *ctx, klc_host_moe *m, const klc_wq *w13, const klc_wq *w2, float *out, float *y_dev, int T,
                                int d, int I, int E, int k);

#ifdef __cplusplus
}
#endif

#endif
