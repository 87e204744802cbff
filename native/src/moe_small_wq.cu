// The MoE experts with weight-only quantized experts (klc_wq: W4A16, W8A16, FP8 E4M3). Few (token, expert)
// pairs (decode, batched decode of a few sequences) run as moe_small.cu does for bf16 experts, two
// GEMV-style kernels straight from the routing indices on the GPU, reading each chosen expert's
// codes once:
//   up:   one CTA per distinct chosen expert and block of 8 intermediate rows; a warp streams the
//         W1 and W3 codes of its row once for every token that chose the expert;
//   down: one warp per output column streams that column's W2 codes of every chosen expert once,
//         in ascending expert order, and adds w[t, s] * (W2_e h) into out[t] in registers, so the
//         combine needs no atomics and sums each token's experts in the reference's slot order.
// Each run of 8 codes becomes (q − z) or e4m3(q) in fp32 without an integer-to-float conversion, and its
// sum against the activations is scaled once (wq.cuh codes8, dot_run8 here): these kernels are bound by their
// instructions per run more than by memory. Activations and accumulation are fp32. More pairs in tensor-core
// mode: klc_moe_experts gathers the rows by expert and moe_wq_gemm.cu's grouped kernels read the codes; otherwise (exact mode, shapes those kernels do not
// take, KLC_MOE_WQ_GEMM=0) every expert is dequantized into a dense buffer and klc_moe_experts runs its
// grouped GEMMs on it.
#include <cuda_bf16.h>

#include <string>

#include "internal.h"
#include "moe_pairs.cuh"
#include "pdl.cuh"
#include "small_vec.cuh"
#include "wq.cuh"

namespace {

using namespace klc_small;
using namespace klc_wq_dev;

constexpr int WARPS = 8, THREADS = 32 * WARPS;
constexpr int MAX_PAIRS = 256;
constexpr int MAX_TOKENS = 32;   // the down kernel keeps token t's sum in lane t
constexpr int UP_TOKENS = 4;     // tokens of one expert per pass over its W1/W3 rows
constexpr int UP_BATCH = 3;      // runs of 8 codes a lane requests from each row before decoding them
constexpr int MAX_DOWN_UNITS = 8; // runs of 8 codes of one W2 row per lane: I <= 2048
// The bf16 small-batch path's limit (moe_small.cu): the same crossover is assumed, since the
// quantized kernels read fewer bytes for the same work.
constexpr int SMALL_MAX_PAIRS = 128;

// acc + s · (f · x) over a run of decoded codes (codes8) and 8 activations: a run lies in one group, so its sum is
// scaled once, as wq_gemv.cu does.
__device__ __forceinline__ float dot_run8(const float f[8], const float *x, float s, float acc) { return fmaf(s, dot8(f, x, 0.f), acc); }

// With a row's codes, the lines of its scales and zero points are brought into L1 (no register held): decoding
// the row then waits on L1, not on a DRAM round trip after the codes.
template <int BITS>
__device__ __forceinline__ void prefetch_row_scales(const klc_wq &w, size_t row, int groups, int lane) {
  const size_t bytes = w.scales_f32 ? 4 : 2;
  prefetch_l1_span(static_cast<const char *>(w.scales) + row * groups * bytes, groups * bytes, lane);
  if (w.zero_points) prefetch_l1_span(w.zero_points + row / (32 / BITS) * groups, groups * 4, lane);
}

// h[p, i] = SiLU(W1_e[i] . x[t]) * (W3_e[i] . x[t]) for every pair p = t * k + s with idx[p] = e; with a
// shared expert (its CTA rows first, UP_TOKENS tokens each: moe_pairs.cuh cta_row) also h[n + t, i] from its W1/W3
// (s13) for every token t.
template <Codes C, bool WITH_SHARED>
__global__ void __launch_bounds__(THREADS, 3) moe_wq_up_kernel(const float *__restrict__ x, const int *__restrict__ idx, klc_wq w13,
                                                            klc_wq s13, float *__restrict__ h, int n, int k, int T, int d, int I) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, row = blockIdx.x * WARPS + warp;
  const size_t row_bytes = (size_t)d * bits_of<C> / 8;
  const CtaRow r = cta_row<WITH_SHARED, UP_TOKENS>(n, T);
  const bool shared = WITH_SHARED && r.shared;
  // The shared expert's rows are requested before waiting for the router, a routed expert's as soon as its index
  // is read, while warp 0 collects the pairs.
  if (shared && row < I) prefetch_gate_up(s13.w_packed, row_bytes, 0, row, I, lane);
  pdl_wait();
  pdl_trigger();
  __shared__ int pairs[MAX_PAIRS];
  __shared__ int count, repeated;
  const int e = shared ? 0 : idx[r.me];
  if (!shared && row < I) prefetch_gate_up(w13.w_packed, row_bytes, e, row, I, lane);
  if (warp == 0) collect_pairs(idx, r, e, n, lane, pairs, count, repeated);
  __syncthreads();
  if (repeated || row >= I) return;
  constexpr int BITS = bits_of<C>;
  constexpr int PER_WORD = 32 / BITS;
  const klc_wq w = shared ? s13 : w13;
  const int words = d / PER_WORD, groups = d / w.group;
  const RunGroups group_of(w);
  const int gate_row = e * 2 * I + row, up_row = gate_row + I;
  const int32_t *wg = w.w_packed + (size_t)gate_row * words;
  const int32_t *wu = w.w_packed + (size_t)up_row * words;
  const int units = d / 8;
  for (int p0 = 0; p0 < count; p0 += UP_TOKENS) {
    const int np = min(UP_TOKENS, count - p0);
    const float *xr[UP_TOKENS];
#pragma unroll
    for (int j = 0; j < UP_TOKENS; ++j) xr[j] = x + (size_t)token_of<WITH_SHARED>(pairs[p0 + min(j, np - 1)], n, k) * d;
    float ag[UP_TOKENS] = {}, au[UP_TOKENS] = {};
    // UP_BATCH runs of codes of both rows are requested before the first is decoded.
    for (int u0 = lane; u0 < units; u0 += 32 * UP_BATCH) {
      Raw8<BITS> rg[UP_BATCH], ru[UP_BATCH];
#pragma unroll
      for (int b = 0; b < UP_BATCH; ++b) {
        const int u = u0 + 32 * b;
        if (u < units) {
          rg[b] = load8<BITS>(wg, u);
          ru[b] = load8<BITS>(wu, u);
        }
      }
#pragma unroll
      for (int b = 0; b < UP_BATCH; ++b) {
        const int u = u0 + 32 * b;
        if (u >= units) break;
        const int g = group_of(u);
        const RunScale kg = run_scale<C>(w, gate_row, g, groups), ku = run_scale<C>(w, up_row, g, groups);
        float fg[8], fu[8];
        codes8<C>(rg[b], kg.bias, fg);
        codes8<C>(ru[b], ku.bias, fu);
#pragma unroll
        for (int j = 0; j < UP_TOKENS; ++j) {
          if (j < np) {
            ag[j] = dot_run8(fg, xr[j] + u * 8, kg.s, ag[j]);
            au[j] = dot_run8(fu, xr[j] + u * 8, ku.s, au[j]);
          }
        }
      }
    }
#pragma unroll
    for (int j = 0; j < UP_TOKENS; ++j) {
      if (j >= np) break;
      const float g = group_sum<32>(ag[j]), u = group_sum<32>(au[j]);
      if (lane == 0) h[(size_t)pairs[p0 + j] * I + row] = g / (1.f + expf(-g)) * u;
    }
  }
}

// out[t, c] += sum_s w[t, s] * (W2_{idx[t, s]}[c] . h[t * k + s]) for the warp's column c. With a shared
// expert (s2's codes given) it is one more expert after the routed ones, of weight 1 and h rows n + t,
// and out[t, c] is written rather than added to: the kernel then computes the whole MoE block.
template <Codes C, int UNITS, bool WITH_SHARED>
__global__ void __launch_bounds__(THREADS) moe_wq_down_kernel(const float *__restrict__ h, const int *__restrict__ idx,
                                                              const float *__restrict__ wt, klc_wq w2, klc_wq s2, float *__restrict__ out,
                                                              int n, int k, int T, int d, int I) {
  // The shared expert's row of this warp's column does not depend on the router: requested before waiting.
  if constexpr (WITH_SHARED) {
    const int c = blockIdx.x * WARPS + (threadIdx.x >> 5);
    const size_t row_bytes = (size_t)I * bits_of<C> / 8;
    if (c < d) prefetch_l2_span(reinterpret_cast<const char *>(s2.w_packed) + c * row_bytes, row_bytes, threadIdx.x & 31);
  }
  pdl_wait();
  pdl_trigger();
  __shared__ int s_idx[MAX_PAIRS], order[MAX_PAIRS];
  const int m = WITH_SHARED ? n + T : n;
  sort_pairs<THREADS>(idx, n, m, s_idx, order);
  const int lane = threadIdx.x & 31, col = blockIdx.x * WARPS + (threadIdx.x >> 5);
  if (col >= d) return;
  constexpr int BITS = bits_of<C>;
  constexpr int PER_WORD = 32 / BITS;
  // The groups of the lane's runs, for the routed experts' W2 and then (it comes last) the shared expert's.
  const int nu = I / 8, routed_groups = I / w2.group, shared_groups = WITH_SHARED ? I / s2.group : 0;
  int gs[UNITS];
  lane_groups<UNITS>(w2, lane, gs);
  auto load = [&](int e, Raw8<BITS> *dst) {
    const bool sh = WITH_SHARED && e == SHARED_EXPERT;
    const klc_wq w = sh ? s2 : w2;
    const int groups = sh ? shared_groups : routed_groups;
    const size_t row = (size_t)(sh ? 0 : e) * d + col;
    const int32_t *codes = w.w_packed + row * (I / PER_WORD);
#pragma unroll
    for (int i = 0; i < UNITS; ++i) {
      const int u = lane + 32 * i;
      if (u < nu) dst[i] = load8<BITS>(codes, u);
    }
    prefetch_row_scales<BITS>(w, row, groups, lane);
  };
  // The expert after next is requested into L2: a warp has one row of codes in its registers while it multiplies
  // another, too little at one row of x to cover a DRAM round trip per expert.
  auto prefetch = [&](int e) {
    const bool sh = WITH_SHARED && e == SHARED_EXPERT;
    const size_t row_bytes = (size_t)I * BITS / 8;
    prefetch_l2_span(reinterpret_cast<const char *>((sh ? s2 : w2).w_packed) + ((size_t)(sh ? 0 : e) * d + col) * row_bytes, row_bytes, lane);
  };
  float acc = 0.f;
  Raw8<BITS> cur[UNITS] = {}, next[UNITS] = {};
  load(s_idx[order[0]], cur);
  for (int p = 0; p < m;) {
    const int e = s_idx[order[p]], q = next_expert_at(s_idx, order, m, p);
    if (q < m) {
      load(s_idx[order[q]], next);  // in flight while this expert's dots run
      const int q2 = next_expert_at(s_idx, order, m, q);
      if (q2 < m) prefetch(s_idx[order[q2]]);
    }
    const bool sh = WITH_SHARED && e == SHARED_EXPERT;
    const klc_wq w = sh ? s2 : w2;
    const int row = (sh ? 0 : e) * d + col, groups = sh ? shared_groups : routed_groups;
    if (sh && s2.group != w2.group) lane_groups<UNITS>(s2, lane, gs);
    float f[UNITS][8], sc[UNITS];
#pragma unroll
    for (int i = 0; i < UNITS; ++i) {
      if (lane + 32 * i < nu) {
        const RunScale r = run_scale<C>(w, row, gs[i], groups);
        codes8<C>(cur[i], r.bias, f[i]);
        sc[i] = r.s;
      }
    }
    for (int s = p; s < q; ++s) {
      const int pair = order[s];
      const float *hr = h + (size_t)pair * I;
      float part = 0.f;
#pragma unroll
      for (int i = 0; i < UNITS; ++i) {
        const int u = lane + 32 * i;
        if (u < nu) part = dot_run8(f[i], hr + u * 8, sc[i], part);
      }
      const float y = group_sum<32>(part);
      if (lane == token_of<WITH_SHARED>(pair, n, k)) acc = !WITH_SHARED || pair < n ? fmaf(wt[pair], y, acc) : acc + y;
    }
#pragma unroll
    for (int i = 0; i < UNITS; ++i) cur[i] = next[i];
    p = q;
  }
  if (lane < T) {
    float *o = out + (size_t)lane * d + col;
    *o = WITH_SHARED ? acc : *o + acc;
  }
}

// The down projections again, read by expert rather than by column (KLC_MOE_DOWN=experts; moe_pairs.cuh
// down_by_expert): a CTA per block of 8 * CPW columns and chosen expert streams that expert's W2 rows of the block
// once, each warp CPW of them with all their codes in flight, and writes y[p, c] = W2_e[c] . h[p] of every pair p
// that chose the expert into ys (the warp's sum, as the column kernel forms it). h is then read once per CTA rather
// than once per warp and expert, and a warp has CPW rows in flight rather than two. The CTA of a column block that
// arrives last adds each token's terms in the column kernel's order (experts ascending, the shared expert last):
// the two give the same bits.
template <Codes C, int UNITS, int CPW, bool WITH_SHARED>
__global__ void __launch_bounds__(THREADS) moe_wq_down_expert_kernel(const float *__restrict__ h, const int *__restrict__ idx,
                                                                     const float *__restrict__ wt, klc_wq w2, klc_wq s2, float *ys,
                                                                     float *__restrict__ out, int *arrivals, int n, int k, int T, int d,
                                                                     int I) {
  constexpr int BITS = bits_of<C>, PER_WORD = 32 / BITS;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nu = I / 8, c0 = blockIdx.x * WARPS * CPW;
  const CtaRow cta = cta_row<WITH_SHARED, DOWN_SHARED_TOKENS>(n, T);
  const klc_wq w = WITH_SHARED && cta.shared ? s2 : w2;
  const int groups = I / w.group;
  int gs[UNITS];
  lane_groups<UNITS>(w, lane, gs);
  Raw8<BITS> codes[CPW][UNITS] = {};
  auto load = [&](int e) {
#pragma unroll
    for (int j = 0; j < CPW; ++j) {
      const int col = c0 + warp + WARPS * j;
      if (col >= d) break;
      const size_t row = (size_t)e * d + col;
      const int32_t *r = w.w_packed + row * (I / PER_WORD);
#pragma unroll
      for (int i = 0; i < UNITS; ++i) {
        const int u = lane + 32 * i;
        if (u < nu) codes[j][i] = load8<BITS>(r, u);
      }
      prefetch_row_scales<BITS>(w, row, groups, lane);
    }
  };
  auto part = [&](int j, int col, int e, const float *hr) {
    const int row = e * d + col;
    float acc = 0.f;
#pragma unroll
    for (int i = 0; i < UNITS; ++i) {
      const int u = lane + 32 * i;
      if (u < nu) {
        const RunScale r = run_scale<C>(w, row, gs[i], groups);
        float f[8];
        codes8<C>(codes[j][i], r.bias, f);
        acc = dot_run8(f, hr + u * 8, r.s, acc);
      }
    }
    return acc;
  };
  down_by_expert<CPW, WARPS, MAX_PAIRS, WITH_SHARED>(load, part, cta, h, idx, wt, ys, out, arrivals, n, k, T, d, I);
}

using klc::launched;

size_t align256(size_t b) { return (b + 255) & ~(size_t)255; }

bool shapes_ok(const klc_wq &w13, const klc_wq &w2, int d, int I, int E) {
  return klc::wq_codes_ok(w13) && w2.bits == w13.bits && w2.codes == w13.codes && klc::wq_codes_ok(w2) && w13.N == E * 2 * I && w13.K == d && w2.N == E * d && w2.K == I &&
         w13.group > 0 && w2.group > 0;
}

// Runs of 8 codes never straddle a word pair or a group, and each run is one aligned load.
bool small_wq_wanted(int T, int k, int d, int I, const klc_wq &w13, const klc_wq &w2, const float *x, const float *h) {
  return klc::small_batch_enabled() && T * k <= SMALL_MAX_PAIRS && T <= MAX_TOKENS && d % 8 == 0 && I % 8 == 0 &&
         w13.group % 8 == 0 && d % w13.group == 0 && w2.group % 8 == 0 && I % w2.group == 0 && I <= 32 * 8 * MAX_DOWN_UNITS &&
         klc_small::aligned16(x) && klc_small::aligned16(h) && klc_small::aligned16(w13.w_packed) && klc_small::aligned16(w2.w_packed);
}

// WITH_SHARED: s13 and s2 are the shared expert, run as one more expert, and out is written; otherwise they are unused.
template <Codes C, bool WITH_SHARED>
int moe_wq_small(klc_ctx *ctx, const float *x, const int *idx, const float *w, const klc_wq &w13, const klc_wq &w2, const klc_wq &s13,
                 const klc_wq &s2, float *out, const klc::MoeRooms &room, int T, int d, int I, int k) {
  const int n = T * k;
  float *h = room.gu;
  const dim3 up_grid((I + WARPS - 1) / WARPS, n + shared_slices<WITH_SHARED, UP_TOKENS>(T));
  int rc = klc::launched(klc::launch_pdl(ctx, moe_wq_up_kernel<C, WITH_SHARED>, up_grid, THREADS, 0, x, idx, w13, s13, h, n, k, T, d, I),
                         "the quantized MoE gate/up projections (small batch)");
  if (rc) return rc;
  const bool wide = I > 32 * 8 * 4;
  const int cols = WARPS * (wide ? 2 : 4), blocks = (d + cols - 1) / cols;
  int *arrivals = nullptr;
  if ((rc = klc::moe_down_arrivals(ctx, T, blocks, &arrivals))) return rc;
  if (arrivals) {
    const dim3 grid(blocks, n + shared_slices<WITH_SHARED, DOWN_SHARED_TOKENS>(T));
    const cudaError_t e =
        wide ? klc::launch_pdl(ctx, moe_wq_down_expert_kernel<C, MAX_DOWN_UNITS, 2, WITH_SHARED>, grid, THREADS, 0, h, idx, w, w2, s2, room.y, out,
                               arrivals, n, k, T, d, I)
             : klc::launch_pdl(ctx, moe_wq_down_expert_kernel<C, 4, 4, WITH_SHARED>, grid, THREADS, 0, h, idx, w, w2, s2, room.y, out, arrivals, n, k,
                               T, d, I);
    return klc::launched(e, "the quantized MoE down projections (small batch, by expert)");
  }
  const dim3 grid((d + WARPS - 1) / WARPS);
  const cudaError_t e =
      !wide ? klc::launch_pdl(ctx, moe_wq_down_kernel<C, 4, WITH_SHARED>, grid, THREADS, 0, h, idx, w, w2, s2, out, n, k, T, d, I)
                      : klc::launch_pdl(ctx, moe_wq_down_kernel<C, MAX_DOWN_UNITS, WITH_SHARED>, grid, THREADS, 0, h, idx, w, w2, s2, out, n, k, T, d, I);
  return klc::launched(e, "the quantized MoE down projections (small batch)");
}

template <bool WITH_SHARED>
int moe_wq_small_codes(klc_ctx *ctx, const float *x, const int *idx, const float *w, const klc_wq &w13, const klc_wq &w2, const klc_wq &s13,
                       const klc_wq &s2, float *out, const klc::MoeRooms &room, int T, int d, int I, int k) {
  const Codes codes = codes_of(w13);
  if (codes == Codes::Int4) return moe_wq_small<Codes::Int4, WITH_SHARED>(ctx, x, idx, w, w13, w2, s13, s2, out, room, T, d, I, k);
  if (codes == Codes::Int8) return moe_wq_small<Codes::Int8, WITH_SHARED>(ctx, x, idx, w, w13, w2, s13, s2, out, room, T, d, I, k);
  return moe_wq_small<Codes::E4M3, WITH_SHARED>(ctx, x, idx, w, w13, w2, s13, s2, out, room, T, d, I, k);
}


// Experts dequantized to bf16 at a time for the tensor-core GEMMs: a buffer of 32 experts (453 MB at
// the 48B shapes) instead of all 256 (3.6 GB), which a small card needs for the weights themselves.
constexpr int MOE_DENSE_GROUP = 32;

// Where quantized experts are dequantized: W13 rows of experts [e0, e1) into d13, W2 rows into d2,
// bf16 or fp32 per f32.
struct DenseGroup {
  const klc_wq &w13, &w2;
  void *d13, *d2;
  int d, I, f32;
};

int dequant_group(klc_ctx *ctx, const void *arg, int e0, int e1) {
  const DenseGroup &g = *static_cast<const DenseGroup *>(arg);
  const int rc = klc::wq_dequant(ctx, g.w13, e0 * 2 * g.I, (e1 - e0) * 2 * g.I, g.d13, g.f32);
  return rc ? rc : klc::wq_dequant(ctx, g.w2, e0 * g.d, (e1 - e0) * g.d, g.d2, g.f32);
}

}  // namespace

extern "C" {

KLC_API size_t klc_moe_dense_bytes(int d, int I, int E, int dense_f32) {
  const size_t experts = dense_f32 ? E : std::min(E, MOE_DENSE_GROUP), el = dense_f32 ? 4 : 2;
  return align256(experts * 2 * I * d * el) + experts * d * I * el;
}

KLC_API int klc_moe_experts_wq(klc_ctx *ctx, const float *x, const int32_t *idx, const float *w, const klc_wq *w13,
                               const klc_wq *w2, float *out, void *ws, size_t ws_bytes, void *dense, int dense_f32, int T, int d,
                               int I, int E, int k) {
  int rc = klc::use_device(ctx);
  if (rc) return rc;
  if (!x || !idx || !w || !w13 || !w2 || !out || !ws || T < 1 || d < 1 || I < 1 || E < 1 || k < 1 || !shapes_ok(*w13, *w2, d, I, E))
    return klc::fail(KLC_E_ARG, "klc_moe_experts_wq: bad pointers or shape (w13 [E * 2I, d], w2 [E * d, I], both INT4, both INT8 or both E4M3)");
  if (ws_bytes < klc_moe_workspace_bytes(T, d, I, E, k))
    return klc::fail(KLC_E_ARG, "klc_moe_experts_wq: workspace smaller than klc_moe_workspace_bytes()");
  const klc::MoeRooms room = klc::moe_rooms(ws, T * k, E, I);
  if (small_wq_wanted(T, k, d, I, *w13, *w2, x, room.gu))
    return moe_wq_small_codes<false>(ctx, x, idx, w, *w13, *w2, klc_wq{}, klc_wq{}, out, room, T, d, I, k);
  // Tensor cores: the grouped kernels read the codes where they lie (no dense buffer needed).
  if (!dense_f32 && ctx->tensor_cores && klc::moe_wq_gemm_wanted(*w13, *w2, d, I))
    return klc::moe_experts(ctx, x, idx, w, nullptr, nullptr, out, ws, T, d, I, E, k, 0, klc::MoeGroups{E, nullptr, nullptr, w13, w2});
  if (!dense) return klc::fail(KLC_E_ARG, "klc_moe_experts_wq: this many pairs needs the dense buffer (klc_moe_dense_bytes())");
  if (!dense_f32 && !ctx->tensor_cores) return klc::fail(KLC_E_ARG, "klc_moe_experts_wq: bf16 dequantization needs tensor cores on (dense_f32 = 1 without them)");
  // Exact mode: every expert in fp32 at once, for the CUDA-core GEMMs; tensor cores: a group at a time.
  const int group = dense_f32 ? E : std::min(E, MOE_DENSE_GROUP);
  const DenseGroup g{*w13, *w2, dense, static_cast<char *>(dense) + align256((size_t)group * 2 * I * d * (dense_f32 ? 4 : 2)), d, I, dense_f32};
  if (dense_f32) {
    if ((rc = dequant_group(ctx, &g, 0, E))) return rc;
    return klc_moe_experts(ctx, x, idx, w, g.d13, g.d2, out, ws, ws_bytes, T, d, I, E, k, 1);
  }
  return klc::moe_experts(ctx, x, idx, w, g.d13, g.d2, out, ws, T, d, I, E, k, 0, klc::MoeGroups{group, dequant_group, &g});
}

KLC_API int klc_moe_block_wq(klc_ctx *ctx, const float *x, const int32_t *idx, const float *w, const klc_wq *w13, const klc_wq *w2,
                             const klc_wq *shared_w13, const klc_wq *shared_w2, float *out, void *ws, size_t ws_bytes, void *dense,
                             int dense_f32, int T, int d, int I, int E, int k) {
  if (!shared_w13 || !shared_w2 || !w13 || T < 1 || T > KLC_MOE_BLOCK_MAX_ROWS || !shapes_ok(*shared_w13, *shared_w2, d, I, 1) ||
      codes_of(*shared_w13) != codes_of(*w13))
    return klc::fail(KLC_E_ARG, "klc_moe_block_wq: the shared expert must be [2I, d] and [d, I] in the routed experts' codes, for 1.." +
                                    std::to_string(KLC_MOE_BLOCK_MAX_ROWS) + " rows");
  int rc = klc::use_device(ctx);
  if (rc) return rc;
  if (!x || !idx || !w || !w2 || !out || !ws || d < 1 || I < 1 || E < 1 || k < 1 || !shapes_ok(*w13, *w2, d, I, E))
    return klc::fail(KLC_E_ARG, "klc_moe_block_wq: bad pointers or shape (w13 [E * 2I, d], w2 [E * d, I], both INT4, both INT8 or both E4M3)");
  if (ws_bytes < klc_moe_workspace_bytes(T, d, I, E, k))
    return klc::fail(KLC_E_ARG, "klc_moe_block_wq: workspace smaller than klc_moe_workspace_bytes()");
  const klc::MoeRooms room = klc::moe_rooms(ws, T * k, E, I);
  if (small_wq_wanted(T, k, d, I, *w13, *w2, x, room.gu) && small_wq_wanted(T, k, d, I, *shared_w13, *shared_w2, x, room.gu))
    return moe_wq_small_codes<true>(ctx, x, idx, w, *w13, *w2, *shared_w13, *shared_w2, out, room, T, d, I, k);
  // The shared expert alone writes out (its gate/up rows and SwiGLU in the workspace), then the routed experts add to it.
  float *gu = room.gu, *hs = room.gu + (size_t)T * 2 * I;
  if ((rc = klc_wq_gemv(ctx, x, d, shared_w13, gu, 2 * I, T, 0)) || (rc = klc_silu_mul(ctx, gu, hs, T, I)) ||
      (rc = klc_wq_gemv(ctx, hs, I, shared_w2, out, d, T, 0)))
    return rc;
  return klc_moe_experts_wq(ctx, x, idx, w, w13, w2, out, ws, ws_bytes, dense, dense_f32, T, d, I, E, k);
}

}  // extern "C"
