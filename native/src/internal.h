// Shared by the translation units of klc_native: the context and the error channel.
#pragma once

#include <cuda_runtime.h>

#include <cfloat>
#include <string>

#include "klc_native.h"

// Staging buffers of the tensor-core paths: activations in bf16, MLA scores, MLA probabilities.
constexpr int KLC_SCRATCH_SLOTS = 3;

struct klc_ctx {
  int device = 0;
  cudaStream_t stream = nullptr;  // where work is queued: own_stream or one set by the caller
  cudaStream_t own_stream = nullptr;
  // Intra-chunk workspace of the KDA prefill, grown on demand and kept across calls.
  float *kda_ws = nullptr;
  size_t kda_ws_floats = 0;
  int max_segment_tokens = 16384;
  // Tensor-core mode (klc_set_tensor_cores): a cuBLAS handle, and staging buffers for bf16 copies
  // of activations and attention scores, grown on demand.
  int tensor_cores = 0;
  void *blas = nullptr;
  void *scratch[KLC_SCRATCH_SLOTS] = {};
  size_t scratch_bytes[KLC_SCRATCH_SLOTS] = {};
  // The device's multiprocessors (klc_wq_gemv sizes its grid by them), read on first need.
  int multiprocessors = 0;
  // Split-K room of klc_wq_gemv, grown on demand: partial sums, and per-row-tile arrival counters
  // that are zero between launches (the last CTA of a tile resets its own).
  float *wq_partial = nullptr;
  size_t wq_partial_floats = 0;
  int *wq_arrivals = nullptr;
  size_t wq_arrivals_count = 0;
  // klc::arrival_counters().
  int *arrivals = nullptr;
  // Counts the moves of the buffers above (each regrowth frees the old one): a CUDA graph recorded
  // before a move would replay with a freed address, so klc_graph_launch refuses it.
  unsigned long long buffers_moved = 0;
  unsigned long long capture_moved = 0;  // buffers_moved when the recording in progress began
  // Whether the decode kernels launch with Programmatic Dependent Launch (pdl.cuh): -1 until first asked.
  int pdl = -1;
};

namespace klc {

// Records a user-facing message for klc_last_error() and returns `code`.
int fail(int code, const std::string &message);
// Maps a CUDA error of `what` to a KLC_E_* code with a message saying what to do.
int fail_cuda(cudaError_t err, const char *what);
// KLC_OK after a kernel launch, or the launch's error (bad configuration, no image for this GPU) naming `what`.
inline int launched(const char *what) {
  const cudaError_t e = cudaGetLastError();
  return e == cudaSuccess ? KLC_OK : fail_cuda(e, what);
}
// The same for a launch that returned its error (cudaLaunchKernelEx, as launch_pdl in pdl.cuh).
inline int launched(cudaError_t e, const char *what) {
  const cudaError_t last = cudaGetLastError();
  if (e == cudaSuccess) e = last;
  return e == cudaSuccess ? KLC_OK : fail_cuda(e, what);
}
// Makes ctx's device current on the calling thread.
int use_device(klc_ctx *ctx);
// KLC_OK, or KLC_E_ARG naming `what` while ctx's stream records a CUDA graph (graph.cu): for
// launches whose arguments a replay would repeat although they change from call to call.
int refuse_capture(klc_ctx *ctx, const char *what);

int kda_prefill(klc_ctx *ctx, const klc_kda_args *a);
int kda_decode(klc_ctx *ctx, const klc_kda_args *a);
// Validates a KDA call's shapes and pointers; `decode` requires T == 1.
int kda_check_args(const klc_kda_args *a, bool decode);
// Probes that this build has a kernel image for the current device.
cudaError_t kda_probe_image();

// ---- tensor cores through cuBLAS (cublas.cu); valid only while ctx->tensor_cores is set ----
// Row-major Y_b[M, N] = X_b[M, K] W_bᵀ + beta Y_b for b < batch; X and W bf16 [rows, ld], Y fp32.
int gemm_bf16_nt(klc_ctx *ctx, const void *x, int ldx, long long sx, const void *w, int ldw, long long sw, float *y, int ldy,
                 long long sy, int M, int N, int K, int batch, float beta);
// The same with Y_b rounded to bf16 (fp32 accumulation), beta 0.
int gemm_bf16_nt_to_bf16(klc_ctx *ctx, const void *x, int ldx, long long sx, const void *w, int ldw, long long sw, void *y, int ldy,
                         long long sy, int M, int N, int K, int batch);
// The same for `count` independent products whose operands are listed in device arrays of pointers.
int gemm_bf16_nt_ptrs(klc_ctx *ctx, const void *const *x, int ldx, const void *const *w, int ldw, float *const *y, int ldy, int M,
                      int N, int K, int count);
// Row-major Y[M, N] = X[M, K] B[K, N]; X and B bf16, Y fp32.
int gemm_bf16_nn(klc_ctx *ctx, const void *x, int ldx, const void *b, int ldb, float *y, int ldy, int M, int N, int K);
// Staging buffer `slot` of at least `bytes`; waits for queued work before it grows.
int scratch(klc_ctx *ctx, int slot, size_t bytes, void **out);
void release_tensor_cores(klc_ctx *ctx);

// ---- tensor-core forms of the layer ops (tc_ops.cu) ----
int tc_linear(klc_ctx *ctx, const float *x, int ldx, const void *w, float *y, int ldy, int M, int N, int K, int batch,
              long long sx, long long sw, long long sy, int accumulate);
// The MoE experts on tensor cores. Rows sorted by expert (moe_sort_kernel's off, tiles, pos, tok)
// are gathered into 64-row tiles per expert, and experts with the same tile count run as one
// batched GEMM; cuBLAS takes the counts on the host, so this waits once per call for them.
// Experts go in groups of groups.size by index: w13 and w2 hold the group's experts [e0, e1) (expert
// e at e - e0), filled by groups.load(ctx, groups.arg, e0, e1) before the group's GEMMs when load is
// set (quantized experts dequantized into a buffer of one group); size E without load reads every
// expert where it lies.
struct MoeGroups {
  int size;
  int (*load)(klc_ctx *ctx, const void *arg, int e0, int e1);
  const void *arg;
  // Quantized experts the grouped kernels of moe_wq_gemm.cu read as they are (then nothing is loaded).
  const klc_wq *w13 = nullptr, *w2 = nullptr;
};
struct MoeTc {
  const float *x;
  const int *idx;
  const float *w;
  const int *off, *tiles, *pos, *tok;
  const void *w13, *w2;
  float *gu;   // [padded rows, 2I]
  void *xs;    // bf16 [padded rows, d]
  void *hs;    // bf16 [padded rows, I]
  float *ys;   // [padded rows, d]
  void **ptrs;  // device room for 6 * E pointers
  float *out;
  int T, k, d, I, E, tile;
  MoeGroups groups;
};
int tc_moe(klc_ctx *ctx, const MoeTc &m);
// moe_wq_gemm.cu: whether its grouped kernels take these quantized experts (KLC_MOE_WQ_GEMM=0: never),
// and the gate/up (SwiGLU fused, into m.hs) and down (into m.ys) projections of m's gathered rows m.xs.
bool moe_wq_gemm_wanted(const klc_wq &w13, const klc_wq &w2, int d, int I);
// Whether bf16 experts take those kernels too (KLC_MOE_BF16_GEMM=1 and shapes that fit their tiles).
bool moe_bf16_gemm_wanted(const void *w13, const void *w2, int d, int I);
// m.groups.w13/w2 set: quantized experts; else m.w13/w2 are bf16 experts.
int moe_wq_gemm(klc_ctx *ctx, const MoeTc &m);
// klc_moe_experts after its argument checks, with the experts loaded by groups (tensor cores only);
// MoeGroups{E, nullptr, nullptr} reads every expert where it lies.
int moe_experts(klc_ctx *ctx, const float *x, const int32_t *idx, const float *w, const void *w13, const void *w2, float *out, void *ws,
                int T, int d, int I, int E, int k, int w_f32, const MoeGroups &groups);
bool tc_mla_wanted(klc_ctx *ctx, int T);
// cache_type: KLC_CACHE_BF16 rows feed the GEMMs as they are; fp32 rows are first rounded to a bf16 copy.
// ws: T * H * (L + 2) floats at least (klc_mla_workspace_bytes with one split).
int tc_mla(klc_ctx *ctx, const float *q, const void *cache, int cache_type, float *out, float *ws, int T, int H, int start, int D,
           int L, float scale);

// ---- MLA prefill attention over up-projected per-head keys, one key block at a time ----
// Carry protocol of a key block's launch: READ_CARRY starts each row from the running softmax of the
// blocks before (carry: unnormalised sums [T * H, dv], ml: max in log2 units and sum [T * H, 2]),
// WRITE_CARRY leaves it there for the next block instead of writing the normalised output.
constexpr int MLA_READ_CARRY = 1, MLA_WRITE_CARRY = 2;
struct MlaBlock {
  const float *q;   // [T, H, 192] fp32
  const void *k;    // bf16 [H, nk, 192]: keys k0 .. k0 + nk of this block
  const void *vt;   // bf16 [H, 128, ldv]: the block's values transposed, key index fastest
  int ldv;          // a multiple of 8 (16-byte rows), >= nk
  float *out, *carry, *ml;
  int T, H, start, k0, nk, mode;
  float scale_log2;  // softmax scale times log2(e)
};
// The Hopper kernels (mla_wgmma.cu, wgmma on sm_90a): true when this build holds them and the
// context's device runs them. The forms: plain (both warpgroups load and compute, one product after
// the other), pipelined (softmax overlapped with the warpgroup's own MMAs), warp_specialized
// (a producer warpgroup loads).
bool mla_wgmma_ready(klc_ctx *ctx);
// Queries per CTA of the Hopper kernel: the host launches tiles from the first one that sees the block.
constexpr int MLA_WGMMA_QUERIES = 128;
enum class MlaHopper { plain, pipelined, warp_specialized };
int mla_wgmma_block(klc_ctx *ctx, const MlaBlock &b, MlaHopper form);

// ---- MLA decode over B latent caches, split over the key range (batch_decode.cu) ----
// Each CTA (split, sequence, head group) leaves its partial (acc[L], max, sum) at
// ws[((b * H + h) * splits + split) * (L + 2)]; the max is in natural-log units.
struct MlaDecodeParams {
  int H, D, L, splits, split_keys;
  float scale;
  const float *q;
  float *ws;
  const void *cache[KLC_MAX_DECODE_BATCH];
  int len[KLC_MAX_DECODE_BATCH];
  // Where set, sequence b's new row sits at pos[b] (device memory) and len[] is not read: a CUDA
  // graph that replays the launch then reads each step's lengths instead of the recorded ones.
  const int32_t *pos;
#ifdef __CUDACC__
  __device__ int length(int b) const { return pos ? pos[b] + 1 : len[b]; }
  __device__ float *partial(int b, int h, int split) const { return ws + (((size_t)b * H + h) * splits + split) * (size_t)(L + 2); }
  // A split past the end of sequence b's keys: no sum, so the combine gives it no weight.
  __device__ void empty_partial(int b, int h, int split) const {
    float *dst = partial(b, h, split);
    dst[L] = -FLT_MAX;
    dst[L + 1] = 0.f;
  }
#endif
};
// The bf16 tensor-core form (mla_decode_bf16.cu) for bf16 caches in tensor-core mode: keys per
// block it uses on this device for these widths, 0 where it does not apply (then the TF32 kernel
// runs).
int mla_decode_bf16_block(klc_ctx *ctx, int D, int L);
int mla_decode_bf16(klc_ctx *ctx, const MlaDecodeParams &p, int B, int block);

// ---- small-batch paths, memory-bound, fp32 activations and accumulation in every mode ----
// Off when KLC_SMALL_BATCH=0 (kept for comparisons against the general paths).
bool small_batch_enabled();
// klc_moe_experts' workspace after the n = T * k pairs' index arrays: the pointer room of E experts (6 each, the
// batched GEMMs'), then row buffers of gate/up outputs (the small-batch kernels' h), SwiGLU outputs and down
// outputs (the small-batch down kernels' per-pair columns), each of n + 64 * min(E, n) rows.
struct MoeRooms {
  void **ptrs;
  float *gu, *h, *y;
};
MoeRooms moe_rooms(void *ws, int n, int E, int I);
// KLC_ARRIVALS counters for kernels whose last CTA combines the others' parts (arrivals.cuh), zero between
// launches, made on first need: [0] klc_moe_router's, [1 ..] the small-batch MoE down kernels' column blocks.
constexpr int KLC_ARRIVALS = 4096;
int arrival_counters(klc_ctx *ctx, int **out);
// Which down kernel the small-batch MoE paths run for T rows and `blocks` column blocks: *out the counters of the
// kernel by expert (blocks < KLC_ARRIVALS; two rows or more, or KLC_MOE_DOWN=experts), or null for the kernel by
// column (one row, or KLC_MOE_DOWN=columns). Both give the same bits.
int moe_down_arrivals(klc_ctx *ctx, int T, int blocks, int **out);
// MoE experts with bf16 weights for few (token, expert) pairs, without host synchronisation
// (moe_small.cu) in klc_moe_experts' workspace (room). s13 and s2 (null when there is none): the shared
// expert, [2I, d] and [d, I], run as one more expert of every token; out is then written, not added to.
bool moe_small_wanted(int T, int k, int d, int I, const void *x, const void *w13, const void *w2, const void *h);
int moe_small(klc_ctx *ctx, const float *x, const int *idx, const float *w, const void *w13, const void *w2, const void *s13,
              const void *s2, float *out, const MoeRooms &room, int T, int d, int I, int k);

// ---- weight-only quantized matrices (wq_gemv.cu, wq_dequant.cu) ----
// Whether w's codes are a kind the kernels read: INT4 or INT8 (codes KLC_WQ_INT), or E4M3 bytes
// (bits 8, no zero points).
bool wq_codes_ok(const klc_wq &w);
// KLC_OK, or KLC_E_ARG with a message that starts with `what` and says which kinds are read.
int wq_check_codes(const klc_wq &w, const char *what);
// Whether klc_wq_gemv takes this weight (bits, K and group fit its 16-byte loads).
bool wq_gemv_supported(const klc_wq &w);
// klc_wq_dequant on the current device, arguments checked.
int wq_dequant(klc_ctx *ctx, const klc_wq &w, int row0, int rows, void *out, int out_f32);
// klc_linear for M <= 8 rows as a GEMV over 16-byte weight vectors (gemv.cu).
bool gemv_wanted(const float *x, int ldx, long long sx, const void *w, long long sw, int M, int K, int w_f32);
int gemv(klc_ctx *ctx, const float *x, int ldx, long long sx, const void *w, long long sw, float *y, int ldy, long long sy, int M,
         int N, int K, int batch, int accumulate, int w_f32);

}  // namespace klc
