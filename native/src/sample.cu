// Token choice on the GPU, one token per row of lm_head logits, by the rule of pickToken
// (src/engine/sampler.ts; restated at klc_token_pick in klc_native.h). Greedy rows take a block
// argmax. Sampling rows are ordered by one stable radix sort (cub) of (row, logit descending) keys,
// so equal logits keep the lower index first; then one block per row computes the weights in
// double, the nucleus cut and the draw by prefix sums. Only the chosen ids stay on the device.
// The sums run in a parallel order, not pickToken's left-to-right one, so a pick can differ from
// the host's only when the draw or the top-p cut lies within rounding (~1e-16 relative) of a boundary.
#include <cub/device/device_radix_sort.cuh>

#include <climits>
#include <cstdint>
#include <string>

#include "internal.h"

namespace {

constexpr int SP_THREADS = 1024, SP_ITEMS = 8, SP_WARPS = SP_THREADS / 32;
constexpr uint32_t EXCLUDED = 0xffffffffu;  // sorts after every real logit (a NaN pattern)

struct SampleParams {
  const float *logits;
  int ld, rows;
  int32_t *ids;
  const uint64_t *keys;  // sorted keys of the sampling rows, `ld` per slot
  const int32_t *order;  // token id of each sorted key
  klc_token_pick pick[KLC_MAX_DECODE_BATCH];
  int slot[KLC_MAX_DECODE_BATCH];  // sampling rows: position among the sorted rows; -1: greedy
};

__host__ __device__ inline bool greedy(const klc_token_pick &p) { return p.temperature <= 0.0 || p.top_k == 1; }

// Descending order of floats as ascending unsigned keys; -0 is counted as +0, as the JS comparison does.
__device__ __forceinline__ uint32_t desc_bits(float x) {
  const uint32_t u = __float_as_uint(x + 0.0f);
  const uint32_t asc = (u & 0x80000000u) ? ~u : (u | 0x80000000u);
  return ~asc;
}

__device__ __forceinline__ float from_desc_bits(uint32_t d) {
  const uint32_t asc = ~d;
  return __uint_as_float((asc & 0x80000000u) ? (asc & 0x7fffffffu) : ~asc);
}

__global__ void sample_keys_kernel(const SampleParams p, uint64_t *keys, int32_t *vals) {
  const int r = blockIdx.y, s = p.slot[r];
  if (s < 0) return;
  const int vocab = p.pick[r].vocab;
  const float *row = p.logits + (size_t)r * p.ld;
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < p.ld; i += gridDim.x * blockDim.x) {
    const uint32_t d = i < vocab ? desc_bits(row[i]) : EXCLUDED;
    keys[(size_t)s * p.ld + i] = ((uint64_t)s << 32) | d;
    vals[(size_t)s * p.ld + i] = i;
  }
}

// The first j < n whose running sum of weight(0..j) satisfies pred (n if none), with that sum in
// `at`; `total` gets the sum over all j < n scanned (all of them when nothing is found). Items are
// summed per thread in runs of SP_ITEMS, then across the block, SP_THREADS * SP_ITEMS per chunk.
template <typename Weight, typename Pred>
__device__ int first_prefix(int n, Weight weight, Pred pred, double &at, double &total) {
  __shared__ double warp_tot[SP_WARPS];
  __shared__ int s_found;
  __shared__ double s_at;
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  if (tid == 0) s_found = INT_MAX;
  __syncthreads();
  double carry = 0.0;
  for (int cs = 0; cs < n; cs += SP_THREADS * SP_ITEMS) {
    double w[SP_ITEMS], local = 0.0;
    const int base = cs + tid * SP_ITEMS;
#pragma unroll
    for (int i = 0; i < SP_ITEMS; ++i) {
      w[i] = base + i < n ? weight(base + i) : 0.0;
      local += w[i];
    }
    double x = local;
#pragma unroll
    for (int o = 1; o < 32; o <<= 1) {
      const double y = __shfl_up_sync(0xffffffffu, x, o);
      if (lane >= o) x += y;
    }
    if (lane == 31) warp_tot[warp] = x;
    __syncthreads();
    if (warp == 0) {
      double v = warp_tot[lane];
#pragma unroll
      for (int o = 1; o < 32; o <<= 1) {
        const double y = __shfl_up_sync(0xffffffffu, v, o);
        if (lane >= o) v += y;
      }
      warp_tot[lane] = v;
    }
    __syncthreads();
    double c = carry + (warp > 0 ? warp_tot[warp - 1] : 0.0) + (x - local);
    int mine = INT_MAX;
    double mine_at = 0.0;
#pragma unroll
    for (int i = 0; i < SP_ITEMS; ++i) {
      if (mine == INT_MAX && base + i < n) {
        c += w[i];
        if (pred(c)) {
          mine = base + i;
          mine_at = c;
        }
      }
    }
    if (mine != INT_MAX) atomicMin(&s_found, mine);
    const double chunk_total = warp_tot[SP_WARPS - 1];
    __syncthreads();
    if (mine != INT_MAX && mine == s_found) s_at = mine_at;
    carry += chunk_total;
    __syncthreads();
    if (s_found != INT_MAX) break;
  }
  total = carry;
  at = s_at;
  const int found = s_found;
  __syncthreads();
  return found == INT_MAX ? n : found;
}

__global__ void __launch_bounds__(SP_THREADS) sample_pick_kernel(const __grid_constant__ SampleParams p) {
  const int r = blockIdx.x, tid = threadIdx.x;
  const klc_token_pick &pk = p.pick[r];
  const int vocab = pk.vocab;
  if (greedy(pk)) {
    __shared__ float bv[SP_WARPS];
    __shared__ int bi[SP_WARPS];
    const float *row = p.logits + (size_t)r * p.ld;
    float best = -INFINITY;
    int idx = INT_MAX;
    for (int i = tid; i < vocab; i += SP_THREADS) {
      const float v = row[i];
      if (idx == INT_MAX || v > best) {
        best = v;
        idx = i;
      }
    }
    const int lane = tid & 31, warp = tid >> 5;
    auto better = [](float v, int i, float bv2, int bi2) { return bi2 == INT_MAX || (i != INT_MAX && (v > bv2 || (v == bv2 && i < bi2))); };
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
      const float v = __shfl_xor_sync(0xffffffffu, best, o);
      const int i = __shfl_xor_sync(0xffffffffu, idx, o);
      if (better(v, i, best, idx)) {
        best = v;
        idx = i;
      }
    }
    if (lane == 0) {
      bv[warp] = best;
      bi[warp] = idx;
    }
    __syncthreads();
    if (tid == 0) {
      for (int w = 1; w < SP_WARPS; ++w)
        if (better(bv[w], bi[w], best, idx)) {
          best = bv[w];
          idx = bi[w];
        }
      p.ids[r] = idx;
    }
    return;
  }
  const size_t off = (size_t)p.slot[r] * p.ld;
  const uint64_t *keys = p.keys + off;
  const int32_t *order = p.order + off;
  const int n = pk.top_k > 0 ? min(pk.top_k, vocab) : vocab;
  const double mx = from_desc_bits((uint32_t)keys[0]);
  const double temp = pk.temperature;
  auto weight = [&](int j) { return exp(((double)from_desc_bits((uint32_t)keys[j]) - mx) / temp); };
  double at = 0.0, total = 0.0, ignored = 0.0;
  first_prefix(n, weight, [](double) { return false; }, at, total);
  int keep = n;
  double kept_total = total;
  if (pk.top_p < 1.0) {
    const double top_p = pk.top_p;
    const int j = first_prefix(n, weight, [&](double c) { return c / total >= top_p; }, at, ignored);
    if (j < n) {
      keep = j + 1;
      kept_total = at;
    }
  }
  const double r0 = pk.uniform * kept_total;
  const int j = first_prefix(keep, weight, [&](double c) { return c > r0; }, at, ignored);
  if (tid == 0) p.ids[r] = order[j < keep ? j : keep - 1];
}

size_t align256(size_t b) { return (b + 255) & ~(size_t)255; }

size_t sort_temp_bytes(int items) {
  size_t temp = 0;
  cub::DeviceRadixSort::SortPairs(nullptr, temp, (const uint64_t *)nullptr, (uint64_t *)nullptr, (const int32_t *)nullptr,
                                  (int32_t *)nullptr, items, 0, 64);
  return temp;
}

using klc::launched;

}  // namespace

using namespace klc;

extern "C" {

size_t klc_sample_workspace_bytes(int rows, int ld) {
  if (rows < 1 || ld < 1) return 0;
  const size_t n = (size_t)rows * ld;
  return 2 * align256(n * sizeof(uint64_t)) + 2 * align256(n * sizeof(int32_t)) + align256(sort_temp_bytes((int)n));
}

int klc_sample(klc_ctx *ctx, const float *logits, int ld, int rows, const klc_token_pick *picks, int32_t *ids, void *ws,
               size_t ws_bytes) {
  int rc = use_device(ctx);
  if (rc) return rc;
  if (!logits || !picks || !ids || !ws || rows < 1 || rows > KLC_MAX_DECODE_BATCH || ld < 1 || (size_t)rows * ld > INT_MAX)
    return fail(KLC_E_ARG, "klc_sample: bad pointers or shape (1 to " + std::to_string(KLC_MAX_DECODE_BATCH) + " rows)");
  SampleParams p{};
  p.logits = logits;
  p.ld = ld;
  p.rows = rows;
  p.ids = ids;
  int sampling = 0;
  for (int r = 0; r < rows; ++r) {
    const klc_token_pick &pk = picks[r];
    if (pk.vocab < 1 || pk.vocab > ld)
      return fail(KLC_E_ARG, "klc_sample: row " + std::to_string(r) + " has vocab " + std::to_string(pk.vocab) +
                                 ", outside 1.." + std::to_string(ld));
    if (!(pk.uniform >= 0.0 && pk.uniform < 1.0) || pk.top_k < 0 || !(pk.top_p > 0.0))
      return fail(KLC_E_ARG, "klc_sample: row " + std::to_string(r) + " needs uniform in [0, 1), top_k >= 0 and top_p > 0");
    p.pick[r] = pk;
    p.slot[r] = greedy(pk) ? -1 : sampling++;
  }
  if (sampling > 0) {
    const size_t n = (size_t)sampling * ld;
    if (ws_bytes < klc_sample_workspace_bytes(sampling, ld))
      return fail(KLC_E_ARG, "klc_sample: workspace smaller than klc_sample_workspace_bytes()");
    char *base = static_cast<char *>(ws);
    uint64_t *keys_in = reinterpret_cast<uint64_t *>(base);
    uint64_t *keys_out = reinterpret_cast<uint64_t *>(base + align256(n * sizeof(uint64_t)));
    int32_t *vals_in = reinterpret_cast<int32_t *>(base + 2 * align256(n * sizeof(uint64_t)));
    int32_t *vals_out = reinterpret_cast<int32_t *>(reinterpret_cast<char *>(vals_in) + align256(n * sizeof(int32_t)));
    void *temp = reinterpret_cast<char *>(vals_out) + align256(n * sizeof(int32_t));
    size_t temp_bytes = sort_temp_bytes((int)n);
    sample_keys_kernel<<<dim3((ld + 255) / 256 < 1024 ? (ld + 255) / 256 : 1024, rows), 256, 0, ctx->stream>>>(p, keys_in, vals_in);
    if ((rc = launched("preparing the sampling sort"))) return rc;
    int end_bit = 32;
    while ((1 << (end_bit - 32)) < sampling) ++end_bit;
    cudaError_t e = cub::DeviceRadixSort::SortPairs(temp, temp_bytes, keys_in, keys_out, vals_in, vals_out, (int)n, 0, end_bit,
                                                    ctx->stream);
    if (e != cudaSuccess) return fail_cuda(e, "sorting the logits for sampling");
    p.keys = keys_out;
    p.order = vals_out;
  }
  sample_pick_kernel<<<rows, SP_THREADS, 0, ctx->stream>>>(p);
  return launched("the token pick");
}

}  // extern "C"
