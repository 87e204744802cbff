// Weight-only quantized linear layer for a few rows (decode, batched decode): Y[M, N] (+)= X[M, K] Wᵀ
// with M <= 8 and W in compressed-tensors' pack-quantized layout as stored in the checkpoint (no
// repacking at load), 4-bit (W4A16) or 8-bit (W8A16) codes: 32 / BITS codes per int32, lowest K index
// in the lowest bits; one bf16 or fp32 scale per `group` columns of a row; zero points (asymmetric)
// packed 32 / BITS rows to an int32 down the columns of [N, K / group]. FP8 E4M3 bytes (a
// float-quantized checkpoint's weight as stored) take the 8-bit path with their own decode.
//
// Batch 1 reads 4 or 8 bits of weight per multiply-add, so the kernel is built to keep HBM busy:
//   - a warp owns R weight rows and its lanes take consecutive 16-byte chunks of each row, so every
//     load instruction of the warp reads 512 contiguous bytes of a row; the next chunk of every row
//     is in flight while the current one is multiplied (R x 2 loads of 16 bytes per lane), and the
//     one after is prefetched into L2;
//   - X is staged once per CTA in shared memory, swizzled (float4 f of a row lives at f ^ (f / 8 % 8)),
//     so the quarter-warp reading one float4 per lane hits 8 distinct bank groups: the lanes' chunks
//     are 128 (4-bit) or 64 (8-bit) bytes of X apart, which read from global memory touches one
//     cache line per lane; each X value read serves the R rows of the warp;
//   - a code becomes (q − z) exactly in fp32 with one byte permute (the code byte under the exponent
//     of 2^23) and one subtraction of 2^23 + stored z; an E4M3 byte becomes its value times 2^-8
//     with bit operations and an f16 conversion (wq.cuh), the 2^8 going into the scale; a chunk lies
//     in one group, so its sum is scaled once;
//   - when the rows give too few CTAs for the GPU (or X's slice would not fit in shared memory),
//     K is split across CTAs: each writes its partial sums, and the last CTA of a row tile to arrive
//     adds them in split order, so results do not depend on scheduling;
//   - one launch computes up to KLC_WQ_JOBS_MAX matrices (klc_wq_gemv_many: a KDA layer's q/k/v, f_a
//     and g_a of the same rows, or its f_b and g_b of two different ones), each block working for
//     one of them: at decode most projections are a few microseconds of loads, and a launch and its
//     drain cost about as much;
//   - launched with Programmatic Dependent Launch (pdl.cuh), a block requests its first chunks of
//     weights and prefetches the next before it waits for the kernel that writes X.
#include <cuda_bf16.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <string>

#include "internal.h"
#include "pdl.cuh"
#include "small_vec.cuh"
#include "wq.cuh"

namespace {

using namespace klc_small;
using klc_wq_dev::Codes;
using klc_wq_dev::bits_of;

constexpr int WARPS = 8, THREADS = 32 * WARPS;
constexpr int MAX_ROWS = 8;
// The slice of X a CTA stages: within the 48 KiB a launch may use without opting in, less room
// for the kernel's static shared memory.
constexpr int X_SMEM_MAX = 48 * 1024 - 128;
// A K split is at least one chunk per lane.
constexpr int MIN_SPLIT_CHUNKS = 32;

// Weight rows per warp: 4 for one or two rows of X, 2 for more (each row of X adds R accumulators).
template <int ROWS>
struct Tile {
  static constexpr int R = ROWS <= 2 ? 4 : 2;
  static constexpr int BLOCK_ROWS = WARPS * R;
};

__device__ __forceinline__ int swizzle(int f) { return f ^ ((f >> 3) & 7); }

// One matrix of a launch: its call, its split of K and where its blocks and split-K room begin.
struct Job {
  const float *x;
  int ldx;
  klc_wq w;
  float *y;
  int ldy, accumulate;
  int tiles;       // row tiles
  int span;        // chunks (16-byte vectors of a row) per K split
  int splits;
  int stride4;     // float4s per row of X in shared memory (a multiple of 8)
  int group_shift; // log2(chunks per group) when that is a power of two, else -1
  int first;       // the launch's first block of this job
  float *partial;  // [splits, M, N] when splits > 1
  int *arrivals;   // [tiles] when splits > 1; zero between launches
};

struct Args {
  Job jobs[KLC_WQ_JOBS_MAX];
  int n, M;
};

// One chunk of each of the warp's R rows, with the raw bits of its scale (fp32, or bf16 in the low
// half) and of its zero-point word: decoded where they are used, so nothing waits on these loads
// before the chunk before is multiplied.
template <int R>
struct Batch {
  uint4 v[R];
  uint32_t s[R], z[R];
};

// y[m, row] gets v, or v added when accumulating.
__device__ __forceinline__ void store(const Job &a, int m, int row, float v) {
  float *dst = a.y + (size_t)m * a.ldy + row;
  *dst = a.accumulate ? *dst + v : v;
}

template <Codes C, int ROWS>
__global__ void __launch_bounds__(THREADS, ROWS <= 2 ? 2 : 1) wq_gemv_kernel(const __grid_constant__ Args args) {
  constexpr int BITS = bits_of<C>;
  constexpr int R = Tile<ROWS>::R, BLOCK_ROWS = Tile<ROWS>::BLOCK_ROWS;
  constexpr int PER_VEC = 128 / BITS;  // codes per 16-byte chunk
  constexpr int F4 = PER_VEC / 4;      // float4s of X per chunk
  constexpr int PER_WORD = 32 / BITS;
  constexpr uint32_t MASK = (1u << BITS) - 1u;
  constexpr int OFFSET = 1 << (BITS - 1);
  extern __shared__ float4 xs[];
  __shared__ int last;

  int job = 0;
#pragma unroll
  for (int j = 1; j < KLC_WQ_JOBS_MAX; ++j) job = j < args.n && (int)blockIdx.x >= args.jobs[j].first ? j : job;
  const Job &a = args.jobs[job];
  const klc_wq &w = a.w;
  const int M = args.M, N = w.N;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int tile = ((int)blockIdx.x - a.first) % a.tiles, split = ((int)blockIdx.x - a.first) / a.tiles;
  const int chunks = w.K / PER_VEC;
  const int c0 = split * a.span, c1 = min(chunks, c0 + a.span);
  const int row0 = tile * BLOCK_ROWS + warp * R;
  const bool active = row0 < N;  // warps past N only join the barriers
  const int groups = w.K / w.group, chunks_per_group = w.group / PER_VEC;

  const uint4 *wp[R];
  const int32_t *zp[R];
  size_t srow[R];
  int zshift[R];
#pragma unroll
  for (int r = 0; r < R; ++r) {
    const int row = min(row0 + r, N - 1);  // rows past N are computed and not written
    wp[r] = reinterpret_cast<const uint4 *>(w.w_packed) + (size_t)row * chunks;
    srow[r] = (size_t)row * groups;
    zp[r] = w.zero_points ? w.zero_points + (size_t)(row / PER_WORD) * groups : nullptr;
    zshift[r] = BITS * (row % PER_WORD);
  }
  auto group_of = [&](int c) { return a.group_shift >= 0 ? c >> a.group_shift : c / chunks_per_group; };
  auto load = [&](int c) {
    Batch<R> b;
#pragma unroll
    for (int r = 0; r < R; ++r) b.v[r] = load_stream(wp[r] + c);
    const int g = group_of(c);
    // One uniform branch per kind, not one per row.
    if (w.scales_f32) {
#pragma unroll
      for (int r = 0; r < R; ++r) b.s[r] = __float_as_uint(__ldg(static_cast<const float *>(w.scales) + srow[r] + g));
    } else {
#pragma unroll
      for (int r = 0; r < R; ++r) b.s[r] = __ldg(static_cast<const uint16_t *>(w.scales) + srow[r] + g);
    }
#pragma unroll
    for (int r = 0; r < R; ++r) b.z[r] = 0u;
    if (w.zero_points) {
#pragma unroll
      for (int r = 0; r < R; ++r) b.z[r] = static_cast<uint32_t>(__ldg(zp[r] + g));
    }
    return b;
  };
  auto prefetch = [&](int c) {
    const int g = group_of(c);
#pragma unroll
    for (int r = 0; r < R; ++r) {
      prefetch_l2(wp[r] + c);
      prefetch_l2(static_cast<const char *>(w.scales) + (srow[r] + g) * (w.scales_f32 ? 4 : 2));
      if (w.zero_points) prefetch_l2(zp[r] + g);
    }
  };

  // The first chunks are requested (and the next ones prefetched) before X is staged, so HBM is
  // busy from the start, even before the kernel that writes X has finished.
  int c = c0 + lane;
  Batch<R> cur;
  if (active && c < c1) cur = load(c);
  if (active && c + 32 < c1) prefetch(c + 32);
  pdl_wait();
  pdl_trigger();

  // STAGE loads per thread are issued before any is stored, so staging waits on about one L2
  // round trip (8 KiB of X per STAGE x THREADS float4s) rather than one per float4.
  constexpr int STAGE = 8;
  const int f4 = (c1 - c0) * F4, total = M * f4;
  for (int i0 = threadIdx.x; i0 < total; i0 += STAGE * THREADS) {
    float4 v[STAGE];
#pragma unroll
    for (int u = 0; u < STAGE; ++u) {
      const int i = i0 + u * THREADS, m = i / f4, f = i - m * f4;
      if (i < total) v[u] = *reinterpret_cast<const float4 *>(a.x + (size_t)m * a.ldx + (size_t)c0 * PER_VEC + 4 * f);
    }
#pragma unroll
    for (int u = 0; u < STAGE; ++u) {
      const int i = i0 + u * THREADS, m = i / f4, f = i - m * f4;
      if (i < total) xs[m * a.stride4 + swizzle(f)] = v[u];
    }
  }
  __syncthreads();

  float acc[R][ROWS] = {};
  if (active) {
    while (c < c1) {
      const int cn = c + 32;
      Batch<R> nxt = cur;
      if (cn < c1) nxt = load(cn);
      if (cn + 32 < c1) prefetch(cn + 32);
      const int l = c - c0;
      float scale[R], bias[R];
#pragma unroll
      for (int r = 0; r < R; ++r) {
        scale[r] = __uint_as_float(w.scales_f32 ? cur.s[r] : cur.s[r] << 16);
        if constexpr (C == Codes::E4M3) {
          scale[r] *= 256.f;
        } else {
          const int z = w.zero_points ? static_cast<int>((cur.z[r] >> zshift[r]) & MASK) : OFFSET;
          bias[r] = 8388608.0f + static_cast<float>(z);
        }
      }
      float part[R][ROWS] = {};
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        // X at the word's PER_WORD consecutive k, for every row of X.
        float xv[ROWS][PER_WORD];
#pragma unroll
        for (int m = 0; m < ROWS; ++m) {
          if (m > 0 && m >= M) break;  // M >= 1: row 0 of X always exists
          const float4 *xrow = xs + m * a.stride4;
          if constexpr (BITS == 4) {
            const float4 p = xrow[swizzle(l * F4 + 2 * j)], q = xrow[swizzle(l * F4 + 2 * j + 1)];
            const float v[8] = {p.x, p.y, p.z, p.w, q.x, q.y, q.z, q.w};
#pragma unroll
            for (int i = 0; i < 8; ++i) xv[m][i] = v[i];
          } else {
            const float4 p = xrow[swizzle(l * F4 + j)];
            xv[m][0] = p.x, xv[m][1] = p.y, xv[m][2] = p.z, xv[m][3] = p.w;
          }
        }
#pragma unroll
        for (int r = 0; r < R; ++r) {
          const uint4 &v = cur.v[r];
          const uint32_t word = j == 0 ? v.x : j == 1 ? v.y : j == 2 ? v.z : v.w;
          // Code i of the word as the low byte of 2^23's bit pattern is the float 2^23 + code, exactly.
          float q[PER_WORD];
          if constexpr (C == Codes::E4M3) {
            klc_wq_dev::e4m3x4_over_256(word, q);
          } else if constexpr (BITS == 4) {
            const uint32_t even = word & 0x0F0F0F0Fu, odd = (word >> 4) & 0x0F0F0F0Fu;
#pragma unroll
            for (int i = 0; i < 4; ++i) {
              q[2 * i] = __uint_as_float(__byte_perm(even, 0x4B000000u, 0x7440u + i)) - bias[r];
              q[2 * i + 1] = __uint_as_float(__byte_perm(odd, 0x4B000000u, 0x7440u + i)) - bias[r];
            }
          } else {
#pragma unroll
            for (int i = 0; i < 4; ++i) q[i] = __uint_as_float(__byte_perm(word, 0x4B000000u, 0x7440u + i)) - bias[r];
          }
#pragma unroll
          for (int m = 0; m < ROWS; ++m) {
            if (m > 0 && m >= M) break;
#pragma unroll
            for (int i = 0; i < PER_WORD; ++i) part[r][m] = fmaf(q[i], xv[m][i], part[r][m]);
          }
        }
      }
#pragma unroll
      for (int r = 0; r < R; ++r)
#pragma unroll
        for (int m = 0; m < ROWS; ++m) acc[r][m] = fmaf(scale[r], part[r][m], acc[r][m]);
      cur = nxt;
      c = cn;
    }
  }
#pragma unroll
  for (int r = 0; r < R; ++r)
#pragma unroll
    for (int m = 0; m < ROWS; ++m) acc[r][m] = group_sum<32>(acc[r][m]);

  // Lane 0 of each warp writes its rows' sums: into y, or with K split into this split's partial sums.
  if (active && lane == 0) {
#pragma unroll
    for (int r = 0; r < R; ++r) {
      if (row0 + r >= N) break;
#pragma unroll
      for (int m = 0; m < ROWS; ++m) {
        if (m >= M) break;
        if (a.splits == 1) store(a, m, row0 + r, acc[r][m]);
        else a.partial[((size_t)split * M + m) * N + row0 + r] = acc[r][m];
      }
    }
  }
  if (a.splits == 1) return;

  // Split K: the last CTA of the tile to arrive adds the partial sums in split order.
  __threadfence();
  __syncthreads();
  if (threadIdx.x == 0) last = atomicAdd(a.arrivals + tile, 1) == a.splits - 1;
  __syncthreads();
  if (!last) return;
  __threadfence();
  const int first = tile * BLOCK_ROWS, rows = min(BLOCK_ROWS, N - first);
  for (int i = threadIdx.x; i < M * rows; i += THREADS) {
    const int m = i / rows, row = first + i % rows;
    float sum = 0.f;
    for (int s = 0; s < a.splits; ++s) sum += __ldcg(a.partial + ((size_t)s * M + m) * N + row);
    store(a, m, row, sum);
  }
  if (threadIdx.x == 0) a.arrivals[tile] = 0;
}

// The split of K and the shared memory of one matrix.
struct Plan {
  int tiles, splits, span, stride4;
  size_t smem;
};

template <int BITS, int ROWS>
Plan plan_for(const klc_wq_job &c, int M, int sms) {
  constexpr int PER_VEC = 128 / BITS, F4 = PER_VEC / 4;
  // An 8-bit chunk is 4 float4s and a shared row is padded to 8: spans are then even.
  constexpr int SPAN_STEP = F4 == 8 ? 1 : 2;
  Plan p{};
  p.tiles = (c.w.N + Tile<ROWS>::BLOCK_ROWS - 1) / Tile<ROWS>::BLOCK_ROWS;
  const int chunks = c.w.K / PER_VEC;
  const int cap = X_SMEM_MAX / (16 * F4 * M) / SPAN_STEP * SPAN_STEP;
  int splits = (chunks + cap - 1) / cap;
  if (p.tiles < sms) {
    const int wanted = (2 * sms + p.tiles - 1) / p.tiles, most = chunks / MIN_SPLIT_CHUNKS;
    splits = std::max(splits, std::min(wanted, most));
  }
  p.span = ((chunks + splits - 1) / splits + SPAN_STEP - 1) / SPAN_STEP * SPAN_STEP;
  p.splits = (chunks + p.span - 1) / p.span;
  p.stride4 = (p.span * F4 + 7) / 8 * 8;
  p.smem = (size_t)M * p.stride4 * 16;
  return p;
}

// Grows the context's split-K room (partial sums, zeroed arrival counters) to hold `floats` and `tiles`.
int split_room(klc_ctx *ctx, size_t floats, size_t tiles) {
  if (ctx->wq_partial_floats < floats || ctx->wq_arrivals_count < tiles) {
    // Earlier launches may still read the old room.
    cudaError_t e = cudaStreamSynchronize(ctx->stream);
    if (e != cudaSuccess) return klc::fail_cuda(e, "the quantized linear layer (waiting to grow its split-K room)");
    ++ctx->buffers_moved;
    if (ctx->wq_partial_floats < floats) {
      if (ctx->wq_partial) cudaFree(ctx->wq_partial);
      ctx->wq_partial = nullptr;
      ctx->wq_partial_floats = 0;
      const size_t grown = floats + floats / 4;
      if ((e = cudaMalloc(&ctx->wq_partial, grown * sizeof(float))) != cudaSuccess) {
        ctx->wq_partial = nullptr;
        return klc::fail_cuda(e, ("allocating " + std::to_string((grown * 4) >> 10) + " KiB of split-K room for the quantized linear layer").c_str());
      }
      ctx->wq_partial_floats = grown;
    }
    if (ctx->wq_arrivals_count < tiles) {
      if (ctx->wq_arrivals) cudaFree(ctx->wq_arrivals);
      ctx->wq_arrivals = nullptr;
      ctx->wq_arrivals_count = 0;
      const size_t grown = tiles + tiles / 4;
      if ((e = cudaMalloc(&ctx->wq_arrivals, grown * sizeof(int))) != cudaSuccess ||
          (e = cudaMemsetAsync(ctx->wq_arrivals, 0, grown * sizeof(int), ctx->stream)) != cudaSuccess) {
        if (ctx->wq_arrivals) cudaFree(ctx->wq_arrivals);
        ctx->wq_arrivals = nullptr;
        return klc::fail_cuda(e, "allocating the split-K counters of the quantized linear layer");
      }
      ctx->wq_arrivals_count = grown;
    }
  }
  return KLC_OK;
}

template <Codes C, int ROWS>
int launch_rows(klc_ctx *ctx, const klc_wq_job *jobs, int n, int M, int sms) {
  constexpr int BITS = bits_of<C>;
  Args a{};
  a.n = n;
  a.M = M;
  Plan plans[KLC_WQ_JOBS_MAX];
  size_t floats = 0, tiles = 0, smem = 0;
  int blocks = 0;
  for (int j = 0; j < n; ++j) {
    const Plan p = plans[j] = plan_for<BITS, ROWS>(jobs[j], M, sms);
    if (p.splits > 1) {
      floats += (size_t)p.splits * M * jobs[j].w.N;
      tiles += p.tiles;
    }
    smem = std::max(smem, p.smem);
    // Groups of 32, 64 or 128 codes are 1, 2 or 4 chunks at 4 bits: a shift finds a chunk's group.
    const int per_group = jobs[j].w.group / (128 / BITS);
    int shift = 0;
    while ((1 << shift) < per_group) ++shift;
    a.jobs[j] = Job{jobs[j].x, jobs[j].ldx, jobs[j].w, jobs[j].y, jobs[j].ldy, jobs[j].accumulate, p.tiles, p.span, p.splits, p.stride4,
                    (1 << shift) == per_group ? shift : -1, blocks, nullptr, nullptr};
    blocks += p.tiles * p.splits;
  }
  if (floats > 0) {
    if (int rc = split_room(ctx, floats, tiles)) return rc;
    // Each split job gets its own stretch of the room, so the jobs of one launch never share counters.
    size_t f = 0, t = 0;
    for (int j = 0; j < n; ++j) {
      if (plans[j].splits == 1) continue;
      a.jobs[j].partial = ctx->wq_partial + f;
      a.jobs[j].arrivals = ctx->wq_arrivals + t;
      f += (size_t)plans[j].splits * M * jobs[j].w.N;
      t += plans[j].tiles;
    }
  }
  // Resident CTAs are what keep loads in flight: ask for the shared-memory side of the L1 split
  // (this kernel streams its weights past L1), once per device. Only a hint, so a refusal is dropped.
  static std::atomic<uint32_t> carveout_set{0};
  const uint32_t bit = 1u << (ctx->device & 31);
  if (!(carveout_set.load() & bit)) {
    if (cudaFuncSetAttribute(wq_gemv_kernel<C, ROWS>, cudaFuncAttributePreferredSharedMemoryCarveout, cudaSharedmemCarveoutMaxShared) !=
        cudaSuccess)
      cudaGetLastError();
    carveout_set.fetch_or(bit);
  }
  const cudaError_t e = klc::launch_pdl(ctx, wq_gemv_kernel<C, ROWS>, dim3(blocks), dim3(THREADS), smem, a);
  return e == cudaSuccess ? KLC_OK : klc::fail_cuda(e, "the quantized linear layer (few rows)");
}

template <Codes C>
int launch_codes(klc_ctx *ctx, const klc_wq_job *jobs, int n, int M, int sms) {
  if (M == 1) return launch_rows<C, 1>(ctx, jobs, n, M, sms);
  if (M <= 2) return launch_rows<C, 2>(ctx, jobs, n, M, sms);
  if (M <= 4) return launch_rows<C, 4>(ctx, jobs, n, M, sms);
  return launch_rows<C, MAX_ROWS>(ctx, jobs, n, M, sms);
}

int launch(klc_ctx *ctx, const klc_wq_job *jobs, int n, int M) {
  if (ctx->multiprocessors < 1) {
    cudaDeviceGetAttribute(&ctx->multiprocessors, cudaDevAttrMultiProcessorCount, ctx->device);
    if (ctx->multiprocessors < 1) ctx->multiprocessors = 1;
  }
  const int sms = ctx->multiprocessors;
  const Codes codes = klc_wq_dev::codes_of(jobs[0].w);
  if (codes == Codes::Int4) return launch_codes<Codes::Int4>(ctx, jobs, n, M, sms);
  if (codes == Codes::Int8) return launch_codes<Codes::Int8>(ctx, jobs, n, M, sms);
  return launch_codes<Codes::E4M3>(ctx, jobs, n, M, sms);
}

int check(const klc_wq_job &c, int M) {
  const klc_wq &w = c.w;
  if (!c.x || !w.w_packed || !w.scales || !c.y) return klc::fail(KLC_E_ARG, "quantized gemv: x, w_packed, scales and y are required");
  if (int rc = klc::wq_check_codes(w, "quantized gemv")) return rc;
  if (M < 1 || M > MAX_ROWS) return klc::fail(KLC_E_ARG, "quantized gemv: M must be 1..8 (use a GEMM for more rows)");
  const int per_vec = 128 / w.bits;
  if (w.N < 1 || w.K < per_vec || w.K % per_vec != 0) {
    return klc::fail(KLC_E_ARG, "quantized gemv: K must be a positive multiple of " + std::to_string(per_vec) + " at " + std::to_string(w.bits) + " bits");
  }
  if (w.group < per_vec || w.group % per_vec != 0 || w.K % w.group != 0) {
    return klc::fail(KLC_E_ARG, "quantized gemv: group must be a multiple of " + std::to_string(per_vec) + " dividing K (K for one scale per row)");
  }
  if (c.ldx < w.K || c.ldy < w.N || c.ldx % 4 != 0 || !aligned16(c.x) || !aligned16(w.w_packed)) {
    return klc::fail(KLC_E_ARG, "quantized gemv: x and w_packed must be 16-byte aligned, ldx a multiple of 4 and >= K, ldy >= N");
  }
  return KLC_OK;
}

// Checks each job and that one kernel can read them all: the same codes (INT4, INT8 or E4M3).
int check_jobs(const klc_wq_job *jobs, int n, int M) {
  if (!jobs || n < 1 || n > KLC_WQ_JOBS_MAX) {
    return klc::fail(KLC_E_ARG, "quantized gemv: 1.." + std::to_string(KLC_WQ_JOBS_MAX) + " matrices per launch, got " + std::to_string(n));
  }
  for (int j = 0; j < n; ++j) {
    if (int rc = check(jobs[j], M)) return rc;
    if (klc_wq_dev::codes_of(jobs[j].w) != klc_wq_dev::codes_of(jobs[0].w)) {
      return klc::fail(KLC_E_ARG, "quantized gemv: matrix " + std::to_string(j) + " has other codes than matrix 0 (INT4, INT8 and FP8 take separate launches)");
    }
  }
  return KLC_OK;
}

}  // namespace

namespace klc {

bool wq_gemv_supported(const klc_wq &w) {
  if (!klc::wq_codes_ok(w)) return false;
  const int per_vec = 128 / w.bits;
  return w.K % per_vec == 0 && w.group % per_vec == 0 && w.K % w.group == 0 && aligned16(w.w_packed);
}

}  // namespace klc

extern "C" {

KLC_API int klc_wq_gemv(klc_ctx *ctx, const float *x, int ldx, const klc_wq *w, float *y, int ldy, int M, int accumulate) {
  if (!w) return klc::fail(KLC_E_ARG, "quantized gemv: the weight is required");
  const klc_wq_job job{x, ldx, *w, y, ldy, accumulate};
  return klc_wq_gemv_many(ctx, &job, 1, M);
}

KLC_API int klc_wq_gemv_many(klc_ctx *ctx, const klc_wq_job *jobs, int n, int M) {
  if (int rc = check_jobs(jobs, n, M)) return rc;
  if (int rc = klc::use_device(ctx)) return rc;
  return launch(ctx, jobs, n, M);
}

KLC_API int klc_wq_gemv_time(klc_ctx *ctx, const float *x, int ldx, const klc_wq *w, int nw, float *y, int ldy, int M, int iters,
                             float *ms_per_call) {
  if (!w || nw < 1) return klc::fail(KLC_E_ARG, "quantized gemv time: at least one weight is required");
  if (iters < 1 || !ms_per_call) return klc::fail(KLC_E_ARG, "quantized gemv time: iters must be >= 1 and ms_per_call set");
  auto job = [&](int i) { return klc_wq_job{x, ldx, w[i % nw], y, ldy, 0}; };
  for (int i = 0; i < nw; ++i) {
    const klc_wq_job j = job(i);
    if (int rc = check(j, M)) return rc;
  }
  if (int rc = klc::use_device(ctx)) return rc;
  // One call first: it grows the split-K room outside the timed span.
  const klc_wq_job first = job(0);
  if (int rc = launch(ctx, &first, 1, M)) return rc;
  cudaEvent_t start, stop;
  cudaEventCreate(&start);
  cudaEventCreate(&stop);
  cudaEventRecord(start, ctx->stream);
  int rc = KLC_OK;
  for (int i = 0; i < iters && rc == KLC_OK; ++i) {
    const klc_wq_job j = job(i);
    rc = launch(ctx, &j, 1, M);
  }
  cudaEventRecord(stop, ctx->stream);
  cudaError_t e = cudaEventSynchronize(stop);
  float ms = 0.f;
  if (e == cudaSuccess) e = cudaEventElapsedTime(&ms, start, stop);
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  if (rc) return rc;
  if (e != cudaSuccess) return klc::fail_cuda(e, "timing the quantized linear layer");
  *ms_per_call = ms / iters;
  return KLC_OK;
}

}  // extern "C"
