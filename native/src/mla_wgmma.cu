// MLA prefill attention on Hopper: the key-block step of klc_mla_prefill_heads (mla_flash.cu) with
// warpgroup MMA (wgmma, sm_90a). Why not mma.sync there: a warp's m16n8k16 reads its B fragment
// from shared memory for 16 query rows only, so shared-memory bandwidth caps it near half the tensor
// peak; wgmma reads B once for the warpgroup's 64 rows, straight from shared memory.
//
// A CTA is two warpgroups, 128 queries of one head (64 per warpgroup). Q (scaled, bf16) stays in
// shared memory; tiles of 128 keys and their values are double-buffered with cp.async (the next
// tile's copies issued while the score product runs), one barrier per tile. Per tile and warpgroup: S = Q Kᵀ (m64n128, K = 192, both operands from shared memory),
// masking and the online softmax in registers, then O += P V with P taken from the accumulator
// registers as the A operand (the accumulator's layout is the A fragment's, so no shuffles) and V
// from shared memory. Values come transposed ([dv, keys], keys fastest), so both products read
// K-major operands with one descriptor scheme: 128-byte swizzle, rows of 64 bf16 (128 bytes), 8-row
// atoms of 1024 bytes, panels of 64 columns.
//
// Built only for sm_90a (tools/build-native.mjs passes KLC_MLA_WGMMA=1 with that target); other
// builds get mla_wgmma_ready() == false and klc_mla_prefill_heads keeps the mma.sync kernel.
#include <cuda_bf16.h>

#include <cstdint>

#include "internal.h"
#include "mma_bf16.cuh"
#include "wgmma.cuh"

#if KLC_MLA_WGMMA
#if defined(__CUDA_ARCH__) && !defined(__CUDA_ARCH_FEAT_SM90_ALL)
#error "mla_wgmma.cu with KLC_MLA_WGMMA=1 must be compiled for sm_90a only (-gencode arch=compute_90a,code=sm_90a)"
#endif

namespace {

using bf16 = __nv_bfloat16;

constexpr int QK = 192, DV = 128;
constexpr int BM = klc::MLA_WGMMA_QUERIES, BN = 128;  // queries per CTA, keys per tile
constexpr int THREADS = 256;                          // two warpgroups
constexpr int PANEL_Q = BM * 128, PANEL_K = BN * 128, PANEL_V = DV * 128;  // bytes of one 64-column panel
constexpr int Q_BYTES = (QK / 64) * PANEL_Q;
constexpr int K_BYTES = (QK / 64) * PANEL_K;
constexpr int V_BYTES = (BN / 64) * PANEL_V;
constexpr int STAGE_BYTES = K_BYTES + V_BYTES;
constexpr int SMEM = Q_BYTES + 2 * STAGE_BYTES + 1024;  // + room to align the base to 1024 bytes
static_assert(PANEL_Q % 1024 == 0 && PANEL_K % 1024 == 0 && PANEL_V % 1024 == 0, "panels must keep 1024-byte atoms aligned");

using klc_mma::smem_addr;
using namespace klc_wgmma;

// Byte offset of 16-byte chunk `chunk` (0..7) of row `row` inside a panel: the 128-byte swizzle
// (chunk index XOR row mod 8), the pattern wgmma undoes given a 1024-byte-aligned panel.
__device__ __forceinline__ unsigned swz(int row, int chunk) { return (unsigned)(row * 128 + ((chunk ^ (row & 7)) << 4)); }

__device__ __forceinline__ void cp16(unsigned dst, const void *src, int bytes) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "r"(bytes));
}
__device__ __forceinline__ void cp_commit() { asm volatile("cp.async.commit_group;\n" ::); }
__device__ __forceinline__ void cp_wait_all() { asm volatile("cp.async.wait_group 0;\n" ::: "memory"); }

__device__ __forceinline__ unsigned pack_bf16(float lo, float hi) {
  __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
  return *reinterpret_cast<unsigned *>(&v);
}

// Where one CTA works: its head, first query token, key tiles, and the shared-memory panels.
struct Cta {
  int h, q0, tiles;
  unsigned sq, sk;          // shared addresses of the Q panels and of stage 0
  unsigned char *qs;        // generic pointer to the Q panels
  const bf16 *kg, *vg;      // this head's keys [nk, 192] and transposed values [128, ldv]
};

// The last query tiles see the most keys: they start first.
__device__ __forceinline__ Cta locate(const klc::MlaBlock &a, unsigned char *smem_raw) {
  Cta t;
  const unsigned raw = smem_addr(smem_raw);
  const unsigned base = (raw + 1023) & ~1023u;
  t.qs = smem_raw + (base - raw);
  t.sq = base;
  t.sk = base + Q_BYTES;
  t.h = blockIdx.y;
  t.q0 = ((a.T + BM - 1) / BM - 1 - (int)blockIdx.x) * BM;
  // Local keys any row of this tile may see, in whole tiles.
  const int last_t = min(t.q0 + BM, a.T) - 1;
  const int kend = min(a.nk, a.start + last_t + 1 - a.k0);
  t.tiles = kend > 0 ? (kend + BN - 1) / BN : 0;
  t.kg = static_cast<const bf16 *>(a.k) + (size_t)t.h * a.nk * QK;
  t.vg = static_cast<const bf16 *>(a.vt) + (size_t)t.h * DV * a.ldv;
  return t;
}

// Q rows r0 .. r0 + rows of the CTA's tile, scaled into log2 units, rounded to bf16 (rows past T
// are zeros), stored by `n` threads, this one being `i`.
__device__ __forceinline__ void load_q(const klc::MlaBlock &a, const Cta &t, int r0, int rows, int i, int n) {
  for (int e = i; e < rows * (QK / 8); e += n) {
    const int r = r0 + e / (QK / 8), ch = e % (QK / 8), tok = t.q0 + r;
    float4 x0 = make_float4(0.f, 0.f, 0.f, 0.f), x1 = x0;
    if (tok < a.T) {
      const float4 *src = reinterpret_cast<const float4 *>(a.q + ((size_t)tok * a.H + t.h) * QK + ch * 8);
      x0 = src[0];
      x1 = src[1];
    }
    const float s = a.scale_log2;
    const uint4 v = make_uint4(pack_bf16(x0.x * s, x0.y * s), pack_bf16(x0.z * s, x0.w * s), pack_bf16(x1.x * s, x1.y * s),
                               pack_bf16(x1.z * s, x1.w * s));
    *reinterpret_cast<uint4 *>(t.qs + (ch >> 3) * PANEL_Q + swz(r, ch & 7)) = v;
  }
}

// Key tile j into `stage`, by `n` threads, this one being `i`. Keys past the block are zero-filled
// (cp.async reads `bytes` and fills the rest with zeros), so masked probabilities (exact zeros) never
// meet stale values.
__device__ __forceinline__ void load_keys(const klc::MlaBlock &a, const Cta &t, int j, int stage, int i, int n) {
  const unsigned kd = t.sk + stage * STAGE_BYTES;
  for (int e = i; e < BN * (QK / 8); e += n) {
    const int r = e / (QK / 8), ch = e % (QK / 8), key = j * BN + r;
    const bool ok = key < a.nk;
    cp16(kd + (ch >> 3) * PANEL_K + swz(r, ch & 7), t.kg + (size_t)(ok ? key : 0) * QK + ch * 8, ok ? 16 : 0);
  }
}

// The values of key tile j (transposed) into `stage`, zero-filled past the block as the keys are.
__device__ __forceinline__ void load_values(const klc::MlaBlock &a, const Cta &t, int j, int stage, int i, int n) {
  const unsigned vd = t.sk + stage * STAGE_BYTES + K_BYTES;
  for (int e = i; e < DV * (BN / 8); e += n) {
    const int d = e / (BN / 8), ch = e % (BN / 8), key = j * BN + ch * 8;
    const int bytes = max(0, min(16, (a.nk - key) * 2));
    cp16(vd + (ch >> 3) * PANEL_V + swz(d, ch & 7), t.vg + (size_t)d * a.ldv + (bytes ? key : 0), bytes);
  }
}

__device__ __forceinline__ void load_tile(const klc::MlaBlock &a, const Cta &t, int j, int stage, int i, int n) {
  load_keys(a, t, j, stage, i, n);
  load_values(a, t, j, stage, i, n);
}

// The running softmax of one thread's two rows (row0 and row0 + 8) over the keys seen so far.
// Accumulator layout (per warp of a warpgroup, 16 rows): element 4n + e of a 64-register
// accumulator is row g + 8 (e >> 1), column 8n + 2c + (e & 1), with g = lane / 4, c = lane % 4.
struct Rows {
  float o[64], m[2], l[2];
  int row0, c;
};

__device__ __forceinline__ void start_rows(const klc::MlaBlock &a, const Cta &t, int wg, Rows &st) {
  const int lane = threadIdx.x & 31, warp = (threadIdx.x >> 5) & 3;
  st.c = lane & 3;
  st.row0 = t.q0 + wg * 64 + warp * 16 + (lane >> 2);
#pragma unroll
  for (int i = 0; i < 2; ++i) {
    const int tok = st.row0 + 8 * i;
    const size_t r = (size_t)tok * a.H + t.h;
    const bool have = (a.mode & klc::MLA_READ_CARRY) && tok < a.T;
#pragma unroll
    for (int n = 0; n < DV / 8; ++n) {
      const float2 x = have ? *reinterpret_cast<const float2 *>(a.carry + r * DV + n * 8 + 2 * st.c) : make_float2(0.f, 0.f);
      st.o[4 * n + 2 * i] = x.x;
      st.o[4 * n + 2 * i + 1] = x.y;
    }
    st.m[i] = have ? a.ml[2 * r] : -INFINITY;
    // The carried sum counts once: the four threads of a row add their parts at the end.
    st.l[i] = have && st.c == 0 ? a.ml[2 * r + 1] : 0.f;
  }
}

// Issues S = Q K_jᵀ (m64n128, K = 192, both operands from shared memory) for warpgroup wg's 64
// rows into s, zeroed first; the caller commits and waits. Registers the caller changed since its
// last wgmma must be pinned (hold) before this call: the fence here orders them before the MMAs.
__device__ __forceinline__ void issue_scores(const Cta &t, int wg, unsigned kb, float (&s)[64]) {
#pragma unroll
  for (int i = 0; i < 64; ++i) s[i] = 0.f;
  hold(s);
  wg_fence();
#pragma unroll
  for (int ks = 0; ks < QK / 16; ++ks)
    wgmma_ss(s, desc(t.sq + (ks >> 2) * PANEL_Q + wg * 64 * 128 + (ks & 3) * 32), desc(kb + (ks >> 2) * PANEL_K + (ks & 3) * 32));
}

// Tile j's scores s become probabilities p (the A fragments of P V) against the running max, which
// moves; the running sum follows. alpha is the factor the unnormalised output must be scaled by
// before this tile's P V is added: left to the caller, whose previous P V may still be in flight.
__device__ __forceinline__ void softmax_tile(const klc::MlaBlock &a, const Cta &t, int j, Rows &st, float (&s)[64], unsigned (&p)[BN / 16][4],
                                             float (&alpha)[2]) {
  // Hide keys past the block or past the row's position; whole tiles below every row's
  // diagonal inside the block skip the test.
  const bool full = (j + 1) * BN <= a.nk && a.k0 + (j + 1) * BN - 1 <= a.start + t.q0;
  float mx[2] = {st.m[0], st.m[1]};
#pragma unroll
  for (int n = 0; n < BN / 8; ++n) {
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      if (!full) {
        const int key = j * BN + n * 8 + 2 * st.c + (e & 1);
        if (key >= a.nk || a.k0 + key > a.start + st.row0 + 8 * (e >> 1)) s[4 * n + e] = -INFINITY;
      }
      mx[e >> 1] = fmaxf(mx[e >> 1], s[4 * n + e]);
    }
  }
  float base[2];
#pragma unroll
  for (int i = 0; i < 2; ++i) {
    mx[i] = fmaxf(mx[i], __shfl_xor_sync(0xffffffffu, mx[i], 1));
    mx[i] = fmaxf(mx[i], __shfl_xor_sync(0xffffffffu, mx[i], 2));
    // A row that has seen no key yet keeps everything at zero.
    base[i] = mx[i] == -INFINITY ? 0.f : mx[i];
    alpha[i] = exp2f(st.m[i] - base[i]);
    st.m[i] = mx[i];
    st.l[i] *= alpha[i];
  }
#pragma unroll
  for (int i = 0; i < 64; ++i) {
    s[i] = exp2f(s[i] - base[(i >> 1) & 1]);
    st.l[(i >> 1) & 1] += s[i];
  }
  // Columns 16kk .. 16kk + 15 of P are accumulator chunks 2kk and 2kk + 1: the A fragment of k-step kk.
#pragma unroll
  for (int kk = 0; kk < BN / 16; ++kk) {
    p[kk][0] = pack_bf16(s[8 * kk + 0], s[8 * kk + 1]);
    p[kk][1] = pack_bf16(s[8 * kk + 2], s[8 * kk + 3]);
    p[kk][2] = pack_bf16(s[8 * kk + 4], s[8 * kk + 5]);
    p[kk][3] = pack_bf16(s[8 * kk + 6], s[8 * kk + 7]);
  }
}

__device__ __forceinline__ void rescale(Rows &st, const float (&alpha)[2]) {
#pragma unroll
  for (int n = 0; n < DV / 8; ++n) {
    st.o[4 * n] *= alpha[0];
    st.o[4 * n + 1] *= alpha[0];
    st.o[4 * n + 2] *= alpha[1];
    st.o[4 * n + 3] *= alpha[1];
  }
}

// Issues O += P V (P from registers as the A operand: the accumulator's layout is the A fragment's,
// so no shuffles; V from shared memory); the caller fences before, commits and waits after, and
// leaves p and the output untouched until then.
__device__ __forceinline__ void issue_values(Rows &st, const unsigned (&p)[BN / 16][4], unsigned vb) {
#pragma unroll
  for (int kk = 0; kk < BN / 16; ++kk) wgmma_rs(st.o, p[kk], desc(vb + (kk >> 2) * PANEL_V + (kk & 3) * 32));
}

// Key tile j (its stage at kb, vb) for warpgroup wg's 64 rows, one product after the other.
// `during` runs while the tensor cores compute the scores. Returns once the stage's last read has completed.
template <typename During>
__device__ __forceinline__ void attend_tile(const klc::MlaBlock &a, const Cta &t, int wg, int j, unsigned kb, unsigned vb, Rows &st,
                                            During during) {
  float s[64];
  issue_scores(t, wg, kb, s);
  wg_commit();
  during();
  wg_wait<0>();
  hold(s);
  unsigned p[BN / 16][4];
  float alpha[2];
  softmax_tile(a, t, j, st, s, p, alpha);
  rescale(st, alpha);
#pragma unroll
  for (int kk = 0; kk < BN / 16; ++kk) hold(p[kk]);
  hold(st.o);
  wg_fence();
  issue_values(st, p, vb);
  wg_commit();
  wg_wait<0>();
  hold(st.o);
}

__device__ __forceinline__ void finish_rows(const klc::MlaBlock &a, const Cta &t, Rows &st) {
#pragma unroll
  for (int i = 0; i < 2; ++i) {
    st.l[i] += __shfl_xor_sync(0xffffffffu, st.l[i], 1);
    st.l[i] += __shfl_xor_sync(0xffffffffu, st.l[i], 2);
    const int tok = st.row0 + 8 * i;
    if (tok >= a.T) continue;
    const size_t r = (size_t)tok * a.H + t.h;
    if (a.mode & klc::MLA_WRITE_CARRY) {
#pragma unroll
      for (int n = 0; n < DV / 8; ++n)
        *reinterpret_cast<float2 *>(a.carry + r * DV + n * 8 + 2 * st.c) = make_float2(st.o[4 * n + 2 * i], st.o[4 * n + 2 * i + 1]);
      if (st.c == 0) {
        a.ml[2 * r] = st.m[i];
        a.ml[2 * r + 1] = st.l[i];
      }
    } else {
      const float inv = 1.f / st.l[i];
#pragma unroll
      for (int n = 0; n < DV / 8; ++n)
        *reinterpret_cast<float2 *>(a.out + r * DV + n * 8 + 2 * st.c) =
            make_float2(st.o[4 * n + 2 * i] * inv, st.o[4 * n + 2 * i + 1] * inv);
    }
  }
}

// Grid (query tiles that see this key block, H). Query token t sees absolute keys j <= start + t.
// Both warpgroups load: tile j + 1's copies are issued while tile j's scores are computed, and one
// barrier per tile hands the stages over.
__global__ void __launch_bounds__(THREADS, 1) mla_wgmma_kernel(const klc::MlaBlock a) {
  extern __shared__ unsigned char smem_raw[];
  const Cta t = locate(a, smem_raw);
  const int tid = threadIdx.x, wg = tid >> 7;
  load_q(a, t, 0, BM, tid, THREADS);
  Rows st;
  start_rows(a, t, wg, st);
  if (t.tiles > 0) load_tile(a, t, 0, 0, tid, THREADS);
  cp_commit();
  for (int j = 0; j < t.tiles; ++j) {
    // Tile j has landed for every thread, and every warpgroup is done with tile j - 1, whose stage
    // the load of tile j + 1 overwrites while this one is computed.
    cp_wait_all();
    fence_async_smem();
    __syncthreads();
    const unsigned kb = t.sk + (j & 1) * STAGE_BYTES;
    attend_tile(a, t, wg, j, kb, kb + K_BYTES, st, [&] {
      if (j + 1 < t.tiles) load_tile(a, t, j + 1, (j + 1) & 1, tid, THREADS);
      cp_commit();
    });
  }
  cp_wait_all();
  finish_rows(a, t, st);
}

// The same CTA with each warpgroup's softmax overlapped with its own tensor-core work, as
// FlashAttention-3's intra-warpgroup pipelining does: tile j's scores are issued, then the previous
// tile's P V, and tile j's softmax runs while P V computes; the output is rescaled once P V has
// landed. Keys and values move through their stages a tile apart: at the top of iteration j
// (one barrier) every thread is past the scores of tile j - 1 and the P V of tile j - 2, so the
// keys of tile j + 1 and the values of tile j are copied there, a whole iteration ahead of use.
__global__ void __launch_bounds__(THREADS, 1) mla_wgmma_pipe_kernel(const klc::MlaBlock a) {
  extern __shared__ unsigned char smem_raw[];
  const Cta t = locate(a, smem_raw);
  const int tid = threadIdx.x, wg = tid >> 7;
  const auto keys = [&](int j) { return t.sk + (j & 1) * STAGE_BYTES; };
  load_q(a, t, 0, BM, tid, THREADS);
  Rows st;
  start_rows(a, t, wg, st);
  if (t.tiles > 0) load_keys(a, t, 0, 0, tid, THREADS);
  cp_commit();
  // Tile j's keys (and the previous tile's values) have landed for every thread; the stages the
  // next copies overwrite are free.
  const auto next_tile = [&](int j) {
    cp_wait_all();
    fence_async_smem();
    __syncthreads();
    if (j + 1 < t.tiles) load_keys(a, t, j + 1, (j + 1) & 1, tid, THREADS);
    if (j < t.tiles) load_values(a, t, j, j & 1, tid, THREADS);
    cp_commit();
  };
  float s[64], alpha[2];
  unsigned p[BN / 16][4];
  if (t.tiles > 0) {
    next_tile(0);
    issue_scores(t, wg, keys(0), s);
    wg_commit();
    wg_wait<0>();
    hold(s);
    softmax_tile(a, t, 0, st, s, p, alpha);
    rescale(st, alpha);
  }
  // The loop body has no branch around a wgmma: ptxas serializes them when one path defines an
  // accumulator another path hands to the tensor cores.
  for (int j = 1; j < t.tiles; ++j) {
    next_tile(j);
    hold(st.o);
#pragma unroll
    for (int kk = 0; kk < BN / 16; ++kk) hold(p[kk]);
    issue_scores(t, wg, keys(j), s);
    wg_commit();
    issue_values(st, p, keys(j - 1) + K_BYTES);
    wg_commit();
    wg_wait<1>();  // the scores; P V of tile j - 1 still runs
    hold(s);
    unsigned next[BN / 16][4];
    softmax_tile(a, t, j, st, s, next, alpha);
    wg_wait<0>();
    hold(st.o);
#pragma unroll
    for (int kk = 0; kk < BN / 16; ++kk) hold(p[kk]);
    rescale(st, alpha);
#pragma unroll
    for (int kk = 0; kk < BN / 16; ++kk)
#pragma unroll
      for (int r = 0; r < 4; ++r) p[kk][r] = next[kk][r];
  }
  if (t.tiles > 0) {
    next_tile(t.tiles);
    hold(st.o);
#pragma unroll
    for (int kk = 0; kk < BN / 16; ++kk) hold(p[kk]);
    wg_fence();
    issue_values(st, p, keys(t.tiles - 1) + K_BYTES);
    wg_commit();
    wg_wait<0>();
    hold(st.o);
  }
  finish_rows(a, t, st);
}

// ---- warp-specialized form: a producer warpgroup loads, two consumer warpgroups compute ----

constexpr int WS_THREADS = 384;

__device__ __forceinline__ void mbar_init(unsigned bar, unsigned count) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(bar), "r"(count) : "memory");
}
__device__ __forceinline__ void mbar_arrive(unsigned bar) {
  asm volatile("{\n.reg .b64 state;\nmbarrier.arrive.shared::cta.b64 state, [%0];\n}\n" ::"r"(bar) : "memory");
}
// Waits for the phase of `parity` to complete. A wait past 10 s means a broken handshake: the
// kernel traps (the call fails with a CUDA error) instead of hanging the GPU.
__device__ __forceinline__ void mbar_wait(unsigned bar, unsigned parity) {
  unsigned done = 0;
  unsigned long long t0 = 0;
  for (;;) {
    asm volatile("{\n.reg .pred p;\nmbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\nselp.u32 %0, 1, 0, p;\n}\n"
                 : "=r"(done)
                 : "r"(bar), "r"(parity)
                 : "memory");
    if (done) return;
    unsigned long long now;
    asm volatile("mov.u64 %0, %%globaltimer;\n" : "=l"(now));
    if (!t0) t0 = now;
    else if (now - t0 > 10000000000ull) __trap();
  }
}

// Warpgroup 0 produces: for each tile it waits until both consumers released the stage, copies
// the tile, waits for its own copies, makes them visible to the tensor cores and signals the stage
// full. Warpgroups 1 and 2 each take 64 query rows and never wait for each other. Registers move
// from the producer (few needed) to the consumers (setmaxnreg).
__global__ void __launch_bounds__(WS_THREADS, 1) mla_wgmma_ws_kernel(const klc::MlaBlock a) {
  extern __shared__ unsigned char smem_raw[];
  const Cta t = locate(a, smem_raw);
  const unsigned bars = t.sk + 2 * STAGE_BYTES;  // full[0], full[1], empty[0], empty[1]
  const int tid = threadIdx.x, wg = tid >> 7, wtid = tid & 127;
  if (tid == 0) {
    mbar_init(bars, 128);
    mbar_init(bars + 8, 128);
    mbar_init(bars + 16, 256);
    mbar_init(bars + 24, 256);
    asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
  }
  __syncthreads();
  if (wg == 0) {
    asm volatile("setmaxnreg.dec.sync.aligned.u32 40;\n");
    for (int j = 0; j < t.tiles; ++j) {
      const int s = j & 1, use = j >> 1;
      if (use > 0) mbar_wait(bars + 16 + 8 * s, (use - 1) & 1);
      load_tile(a, t, j, s, wtid, 128);
      cp_commit();
      cp_wait_all();
      fence_async_smem();
      mbar_arrive(bars + 8 * s);
    }
  } else {
    asm volatile("setmaxnreg.inc.sync.aligned.u32 232;\n");
    const int cw = wg - 1;  // this consumer's 64 rows
    load_q(a, t, cw * 64, 64, wtid, 128);
    fence_async_smem();
    asm volatile("bar.sync %0, 128;\n" ::"r"(1 + cw) : "memory");
    Rows st;
    start_rows(a, t, cw, st);
    for (int j = 0; j < t.tiles; ++j) {
      const int s = j & 1;
      mbar_wait(bars + 8 * s, (j >> 1) & 1);
      const unsigned kb = t.sk + s * STAGE_BYTES;
      attend_tile(a, t, cw, j, kb, kb + K_BYTES, st, [] {});
      mbar_arrive(bars + 16 + 8 * s);
    }
    finish_rows(a, t, st);
  }
}

}  // namespace

namespace klc {

bool mla_wgmma_ready(klc_ctx *ctx) {
  int major = 0, minor = 0;
  if (cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, ctx->device) != cudaSuccess ||
      cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, ctx->device) != cudaSuccess) {
    cudaGetLastError();
    return false;
  }
  if (major != 9 || minor != 0) return false;
  // sm_90a machine code runs on compute capability 9.0 alone; the attribute query says whether it loads.
  cudaFuncAttributes attr;
  const bool ok = cudaFuncGetAttributes(&attr, mla_wgmma_kernel) == cudaSuccess;
  cudaGetLastError();  // a failed probe must not surface as the next launch's error
  return ok;
}

int mla_wgmma_block(klc_ctx *ctx, const MlaBlock &b, MlaHopper form) {
  const bool ws = form == MlaHopper::warp_specialized;
  const auto kernel = ws ? mla_wgmma_ws_kernel : form == MlaHopper::pipelined ? mla_wgmma_pipe_kernel : mla_wgmma_kernel;
  const int smem = SMEM + (ws ? 32 : 0);  // + the four mbarriers after the stages
  const cudaError_t e = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem);
  if (e != cudaSuccess) return fail_cuda(e, "configuring the Hopper MLA prefill kernel");
  const int qtiles = (b.T + BM - 1) / BM;
  // Query tokens t with start + t >= k0 see this block.
  const int first_tile = (b.k0 > b.start ? b.k0 - b.start : 0) / BM;
  kernel<<<dim3(qtiles - first_tile, b.H), ws ? WS_THREADS : THREADS, smem, ctx->stream>>>(b);
  const cudaError_t l = cudaGetLastError();
  return l == cudaSuccess ? KLC_OK : fail_cuda(l, "the Hopper MLA prefill kernel");
}

}  // namespace klc

#else

namespace klc {

bool mla_wgmma_ready(klc_ctx *) { return false; }

int mla_wgmma_block(klc_ctx *, const MlaBlock &, MlaHopper) {
  return fail(KLC_E_ARG, "the Hopper MLA prefill kernel is not in this build (built without sm_90 in --archs)");
}

}  // namespace klc

#endif
