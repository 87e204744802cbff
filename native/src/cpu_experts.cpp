// The routed experts of an offloaded MoE layer on the CPU (klc_cpu.h): the weights stay in host
// memory as compressed-tensors packs them, and only the few experts the tokens chose are read, so a
// decode step reads k experts per layer at memory speed instead of copying them to the GPU.
//
// Three phases over a persistent thread pool, each a list of tasks taken from an atomic counter:
//   up:      (chosen expert, block of intermediate rows): h[p] = SiLU(W1_e x) * (W3_e x) for every
//            pair p = t * k + s that chose e, each row's codes decoded once per 4 tokens;
//   down:    (chosen expert, block of output columns): y[p] = W2_e h[p];
//   combine: out[t] (+)= sum_s w[t, s] * y[t * k + s], in slot order.
// Codes become (q − z) exactly as integers, or an E4M3 byte its exact value, times the group's scale
// (the portable loop scales each group's dot once instead), and activations and sums are fp32: the
// dequantized weights fp32((q − z) · s) or fp32(e4m3) · s that the GPU kernels and the reference
// backend compute with, up to the order of fp32 rounding. AVX-512 or AVX2+FMA+F16C where the CPU has
// it (checked at run time, so one build runs everywhere), else a portable loop of the same arithmetic.
#include "klc_cpu.h"

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <mutex>
#include <new>
#include <string>
#include <thread>
#include <vector>

#ifdef __linux__
#include <sched.h>
#endif

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#define KLC_CPU_X86 1
#endif

namespace {

thread_local std::string g_error;

int fail(int code, const std::string &message) {
  g_error = message;
  return code;
}

// ---- thread pool -----------------------------------------------------------------------------

// A wait that spins for about SPIN_NS before it sleeps: a call's three phases follow one another within
// microseconds, and waking a sleeping worker through the kernel cost ~20 µs a phase (a third of a small call).
constexpr auto SPIN_NS = std::chrono::nanoseconds(50000);

inline void cpu_relax() {
#ifdef KLC_CPU_X86
  _mm_pause();
#endif
}

class Pool {
 public:
  explicit Pool(int threads) {
    for (int i = 1; i < threads; ++i) workers_.emplace_back([this] { loop(); });
  }
  ~Pool() {
    {
      std::lock_guard<std::mutex> lk(m_);
      stop_.store(true);
      generation_.fetch_add(1, std::memory_order_release);
    }
    start_.notify_all();
    for (auto &t : workers_) t.join();
  }
  int threads() const { return static_cast<int>(workers_.size()) + 1; }

  // Runs fn(0) .. fn(n − 1) on the workers and the calling thread; returns when all are done.
  void run(int n, const std::function<void(int)> &fn) {
    if (n <= 0) return;
    if (workers_.empty() || n == 1) {
      for (int i = 0; i < n; ++i) fn(i);
      return;
    }
    // The job is published by the generation's release; a worker reads it after acquiring the new generation.
    job_ = &fn;
    tasks_ = n;
    next_.store(0, std::memory_order_relaxed);
    busy_.store(static_cast<int>(workers_.size()), std::memory_order_relaxed);
    {
      std::lock_guard<std::mutex> lk(m_);  // a worker about to sleep then sees the new generation
      generation_.fetch_add(1, std::memory_order_release);
    }
    start_.notify_all();
    drain(fn, n);
    if (!spin_until([this] { return busy_.load(std::memory_order_acquire) == 0; })) {
      std::unique_lock<std::mutex> lk(m_);
      done_.wait(lk, [this] { return busy_.load(std::memory_order_acquire) == 0; });
    }
    job_ = nullptr;
  }

  // Scratch kept across calls (one call at a time per pool).
  std::vector<float> h, y;
  std::vector<int> order, first, experts;

 private:
  template <class Ready>
  static bool spin_until(Ready ready) {
    const auto until = std::chrono::steady_clock::now() + SPIN_NS;
    for (int i = 0; !ready(); ++i) {
      cpu_relax();
      if ((i & 63) == 63) {
        if (std::chrono::steady_clock::now() > until) return ready();
        std::this_thread::yield();  // where threads outnumber cores, the ones with work run
      }
    }
    return true;
  }
  void drain(const std::function<void(int)> &fn, int n) {
    for (int i; (i = next_.fetch_add(1)) < n;) fn(i);
  }
  void loop() {
    unsigned seen = 0;
    for (;;) {
      const auto fresh = [&] { return generation_.load(std::memory_order_acquire) != seen; };
      if (!spin_until(fresh)) {
        std::unique_lock<std::mutex> lk(m_);
        start_.wait(lk, fresh);
      }
      seen = generation_.load(std::memory_order_acquire);
      if (stop_.load()) return;
      drain(*job_, tasks_);
      if (busy_.fetch_sub(1, std::memory_order_acq_rel) == 1) {
        std::lock_guard<std::mutex> lk(m_);
        done_.notify_one();
      }
    }
  }

  std::vector<std::thread> workers_;
  std::mutex m_;
  std::condition_variable start_, done_;
  const std::function<void(int)> *job_ = nullptr;
  int tasks_ = 0;
  std::atomic<int> busy_{0};
  std::atomic<unsigned> generation_{0};
  std::atomic<bool> stop_{false};
  std::atomic<int> next_{0};
};

// ---- one quantized matrix ----------------------------------------------------------------------

// What a matrix's codes are; the kernels are instantiated per kind (the index of Kernels::dot).
enum Codes { INT4 = 0, INT8 = 1, E4M3 = 2 };
constexpr int bits_of(Codes c) { return c == INT4 ? 4 : 8; }

// The value of every E4M3 byte (float8_e4m3fn): sign, 4 exponent bits of bias 7, 3 mantissa bits,
// exponent 0 subnormal. The NaN bytes 0x7f and 0xff read as ±480, as in the GPU kernels.
const float *e4m3_values() {
  static const std::array<float, 256> table = [] {
    std::array<float, 256> t{};
    for (int b = 0; b < 256; ++b) {
      const int e = (b >> 3) & 15, m = b & 7;
      const float mag = e ? std::ldexp(static_cast<float>(8 + m), e - 10) : std::ldexp(static_cast<float>(m), -9);
      t[b] = b & 0x80 ? -mag : mag;
    }
    return t;
  }();
  return table.data();
}

struct Mat {
  const int32_t *packed;
  const void *scales;
  const int32_t *zeros;
  Codes codes;
  int bits, K, group, groups, words, scales_f32;

  explicit Mat(const klc_wq &w)
      : packed(w.w_packed), scales(w.scales), zeros(w.zero_points), codes(w.codes == KLC_WQ_E4M3 ? E4M3 : w.bits == 4 ? INT4 : INT8),
        bits(w.bits), K(w.K), group(w.group), groups(w.K / w.group), words(w.K * w.bits / 32), scales_f32(w.scales_f32) {}

  const int32_t *row(size_t r) const { return packed + r * words; }
};

// One row's scales and zero points, located once per row (the group loop reads them in order).
struct RowMeta {
  const float *sf;
  const uint16_t *sb;
  const int32_t *zw;  // the row's zero-point words, one per group; null when symmetric
  int shift, mask, dflt;

  RowMeta(const Mat &m, size_t row) {
    const size_t at = row * m.groups;
    sf = m.scales_f32 ? static_cast<const float *>(m.scales) + at : nullptr;
    sb = m.scales_f32 ? nullptr : static_cast<const uint16_t *>(m.scales) + at;
    const int per_word = 32 / m.bits;
    zw = m.zeros ? m.zeros + (row / per_word) * m.groups : nullptr;
    shift = m.bits * static_cast<int>(row % per_word);
    mask = (1 << m.bits) - 1;
    dflt = 1 << (m.bits - 1);
  }
  float scale(int g) const {
    if (sf) return sf[g];
    const uint32_t bits32 = static_cast<uint32_t>(sb[g]) << 16;
    float f;
    std::memcpy(&f, &bits32, sizeof f);
    return f;
  }
  int zero(int g) const { return zw ? static_cast<int>((static_cast<uint32_t>(zw[g]) >> shift) & static_cast<uint32_t>(mask)) : dflt; }
};

// y[j] = W[row] . xs[j] for j < NX: per group sum((q − z) x) or sum(e4m3 · x), times the group's scale.
template <Codes C, int NX>
void dot_scalar(const Mat &m, size_t row, const float *const *xs, float *y) {
  const uint32_t *r = reinterpret_cast<const uint32_t *>(m.row(row));
  constexpr int BITS = bits_of(C);
  constexpr int PER_WORD = 32 / BITS;
  constexpr uint32_t MASK = (1u << BITS) - 1u;
  const float *e4m3 = e4m3_values();
  const RowMeta meta(m, row);
  float tot[NX] = {};
  for (int g = 0; g < m.groups; ++g) {
    const int z = meta.zero(g);
    float acc[NX] = {};
    for (int c = g * m.group; c < (g + 1) * m.group; ++c) {
      const uint32_t code = (r[c / PER_WORD] >> (BITS * (c % PER_WORD))) & MASK;
      const float f = C == E4M3 ? e4m3[code] : static_cast<float>(static_cast<int>(code) - z);
      for (int j = 0; j < NX; ++j) acc[j] = std::fma(f, xs[j][c], acc[j]);
    }
    const float s = meta.scale(g);
    for (int j = 0; j < NX; ++j) tot[j] = std::fma(acc[j], s, tot[j]);
  }
  for (int j = 0; j < NX; ++j) y[j] = tot[j];
}

#ifdef KLC_CPU_X86
#define KLC_AVX2 __attribute__((target("avx2,fma,f16c")))

KLC_AVX2 inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// Eight consecutive codes (run u of the row) as 8 int32 lanes.
template <int BITS>
KLC_AVX2 inline __m256i codes8(const int32_t *r, int u, __m256i shifts, __m256i mask);
template <>
KLC_AVX2 inline __m256i codes8<4>(const int32_t *r, int u, __m256i shifts, __m256i mask) {
  return _mm256_and_si256(_mm256_srlv_epi32(_mm256_set1_epi32(r[u]), shifts), mask);
}
template <>
KLC_AVX2 inline __m256i codes8<8>(const int32_t *r, int u, __m256i, __m256i) {
  return _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i *>(r + 2 * u)));
}

// Eight consecutive E4M3 codes (run u of the row) as their values times 2^-8, exactly: each byte's
// sign and 7 low bits placed as an f16 (exponent bias 15 against 7: the 2^-8; subnormals onto
// subnormals), then converted.
KLC_AVX2 inline __m256 e4m3x8_over_256(const int32_t *r, int u) {
  const __m128i b = _mm_cvtepu8_epi16(_mm_loadl_epi64(reinterpret_cast<const __m128i *>(r + 2 * u)));
  const __m128i sign = _mm_slli_epi16(_mm_and_si128(b, _mm_set1_epi16(0x80)), 8);
  const __m128i rest = _mm_slli_epi16(_mm_and_si128(b, _mm_set1_epi16(0x7f)), 7);
  return _mm256_cvtph_ps(_mm_or_si128(sign, rest));
}

// A run of 8 codes (run u of the row) as fp32 values times the group's scale s (E4M3: s already times 2^8).
template <Codes C>
KLC_AVX2 inline __m256 run8(const int32_t *r, int u, __m256i z, __m256 s, __m256i shifts, __m256i mask) {
  if constexpr (C == E4M3) return _mm256_mul_ps(e4m3x8_over_256(r, u), s);
  else return _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(codes8<bits_of(C)>(r, u, shifts, mask), z)), s);
}

// y[j] = W[row] . xs[j] for j < NX: every run of 8 codes decoded, scaled and multiplied into A independent
// accumulators per vector, taken in turn. UPG > 0 is the runs in a group known at compile time (groups of 32, 64
// and 128 codes): then a group is straight-line code, where the loop's setup cost as much as the 4 runs of a
// group of 32; a symmetric matrix's zero point is set once per row.
template <Codes C, int NX, int UPG>
KLC_AVX2 void dot_avx2_groups(const Mat &m, size_t row, const float *const *xs, float *y) {
  constexpr int A = NX == 1 ? 4 : NX == 2 ? 2 : 1;
  const int32_t *r = m.row(row);
  const __m256i shifts = _mm256_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28);
  const __m256i mask = _mm256_set1_epi32(15);
  const int units = UPG > 0 ? UPG : m.group / 8;
  const RowMeta meta(m, row);
  const __m256i symmetric_zero = _mm256_set1_epi32(meta.dflt);
  __m256 acc[NX][A];
  for (int j = 0; j < NX; ++j)
    for (int a = 0; a < A; ++a) acc[j][a] = _mm256_setzero_ps();
  for (int g = 0, u = 0; g < m.groups; ++g) {
    const __m256i z = meta.zw ? _mm256_set1_epi32(meta.zero(g)) : symmetric_zero;
    // E4M3 values are read times 2^-8: the scale takes the 2^8 back, exactly.
    const __m256 s = _mm256_set1_ps(C == E4M3 ? meta.scale(g) * 256.f : meta.scale(g));
    if constexpr (UPG > 0) {
#pragma GCC unroll 16
      for (int a = 0; a < UPG; ++a) {
        const __m256 f = run8<C>(r, u + a, z, s, shifts, mask);
        for (int j = 0; j < NX; ++j) acc[j][a % A] = _mm256_fmadd_ps(f, _mm256_loadu_ps(xs[j] + 8 * (u + a)), acc[j][a % A]);
      }
      u += UPG;
    } else {
      const int u1 = u + units;
      for (; u + A <= u1; u += A) {
        for (int a = 0; a < A; ++a) {
          const __m256 f = run8<C>(r, u + a, z, s, shifts, mask);
          for (int j = 0; j < NX; ++j) acc[j][a] = _mm256_fmadd_ps(f, _mm256_loadu_ps(xs[j] + 8 * (u + a)), acc[j][a]);
        }
      }
      for (; u < u1; ++u) {
        const __m256 f = run8<C>(r, u, z, s, shifts, mask);
        for (int j = 0; j < NX; ++j) acc[j][0] = _mm256_fmadd_ps(f, _mm256_loadu_ps(xs[j] + 8 * u), acc[j][0]);
      }
    }
  }
  for (int j = 0; j < NX; ++j) {
    __m256 sum = acc[j][0];
    for (int a = 1; a < A; ++a) sum = _mm256_add_ps(sum, acc[j][a]);
    y[j] = hsum(sum);
  }
}

template <Codes C, int NX>
KLC_AVX2 void dot_avx2(const Mat &m, size_t row, const float *const *xs, float *y) {
  switch (m.group) {
    case 32: return dot_avx2_groups<C, NX, 4>(m, row, xs, y);
    case 64: return dot_avx2_groups<C, NX, 8>(m, row, xs, y);
    case 128: return dot_avx2_groups<C, NX, 16>(m, row, xs, y);
    default: return dot_avx2_groups<C, NX, 0>(m, row, xs, y);
  }
}

bool has_avx2() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
}

// AVX-512: two runs (16 codes) an instruction, for the group sizes dot_avx2 unrolls; other groups take dot_avx2's loop.
// GCC 12's AVX-512 intrinsics start their results from a deliberately undefined register, which -Wuninitialized
// and -Wmaybe-uninitialized report once they are inlined here: silenced for this part only.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#define KLC_AVX512 __attribute__((target("avx512f,avx2,fma,f16c")))

// Runs u and u + 1 (16 consecutive codes) as 16 int32 lanes.
template <int BITS>
KLC_AVX512 inline __m512i codes16(const int32_t *r, int u, __m512i shifts, __m512i mask);
template <>
KLC_AVX512 inline __m512i codes16<4>(const int32_t *r, int u, __m512i shifts, __m512i mask) {
  // Word u in lanes 0-7, word u + 1 in lanes 8-15, each lane shifted to its nibble.
  const __m512i pick = _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1);
  const __m512i words = _mm512_permutexvar_epi32(pick, _mm512_castsi128_si512(_mm_loadl_epi64(reinterpret_cast<const __m128i *>(r + u))));
  return _mm512_and_si512(_mm512_srlv_epi32(words, shifts), mask);
}
template <>
KLC_AVX512 inline __m512i codes16<8>(const int32_t *r, int u, __m512i, __m512i) {
  return _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i *>(r + 2 * u)));
}

// Runs u and u + 1 of E4M3 codes as their values times 2^-8 (as e4m3x8_over_256).
KLC_AVX512 inline __m512 e4m3x16_over_256(const int32_t *r, int u) {
  const __m256i b = _mm256_cvtepu8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i *>(r + 2 * u)));
  const __m256i sign = _mm256_slli_epi16(_mm256_and_si256(b, _mm256_set1_epi16(0x80)), 8);
  const __m256i rest = _mm256_slli_epi16(_mm256_and_si256(b, _mm256_set1_epi16(0x7f)), 7);
  return _mm512_cvtph_ps(_mm256_or_si256(sign, rest));
}

template <Codes C>
KLC_AVX512 inline __m512 run16(const int32_t *r, int u, __m512i z, __m512 s, __m512i shifts, __m512i mask) {
  if constexpr (C == E4M3) return _mm512_mul_ps(e4m3x16_over_256(r, u), s);
  else return _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(codes16<bits_of(C)>(r, u, shifts, mask), z)), s);
}

// dot_avx2_groups for UPG runs a group (even), 16 codes an instruction.
template <Codes C, int NX, int UPG>
KLC_AVX512 void dot_avx512_groups(const Mat &m, size_t row, const float *const *xs, float *y) {
  static_assert(UPG % 2 == 0, "a group is whole pairs of runs");
  constexpr int A = NX == 1 ? 4 : NX == 2 ? 2 : 1;
  const int32_t *r = m.row(row);
  const __m512i shifts = _mm512_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28, 0, 4, 8, 12, 16, 20, 24, 28);
  const __m512i mask = _mm512_set1_epi32(15);
  const RowMeta meta(m, row);
  const __m512i symmetric_zero = _mm512_set1_epi32(meta.dflt);
  __m512 acc[NX][A];
  for (int j = 0; j < NX; ++j)
    for (int a = 0; a < A; ++a) acc[j][a] = _mm512_setzero_ps();
  for (int g = 0, u = 0; g < m.groups; ++g, u += UPG) {
    const __m512i z = meta.zw ? _mm512_set1_epi32(meta.zero(g)) : symmetric_zero;
    const __m512 s = _mm512_set1_ps(C == E4M3 ? meta.scale(g) * 256.f : meta.scale(g));
#pragma GCC unroll 8
    for (int a = 0; a < UPG / 2; ++a) {
      const __m512 f = run16<C>(r, u + 2 * a, z, s, shifts, mask);
      for (int j = 0; j < NX; ++j) acc[j][a % A] = _mm512_fmadd_ps(f, _mm512_loadu_ps(xs[j] + 8 * (u + 2 * a)), acc[j][a % A]);
    }
  }
  for (int j = 0; j < NX; ++j) {
    __m512 sum = acc[j][0];
    for (int a = 1; a < A; ++a) sum = _mm512_add_ps(sum, acc[j][a]);
    y[j] = _mm512_reduce_add_ps(sum);
  }
}

template <Codes C, int NX>
KLC_AVX512 void dot_avx512(const Mat &m, size_t row, const float *const *xs, float *y) {
  switch (m.group) {
    case 32: return dot_avx512_groups<C, NX, 4>(m, row, xs, y);
    case 64: return dot_avx512_groups<C, NX, 8>(m, row, xs, y);
    case 128: return dot_avx512_groups<C, NX, 16>(m, row, xs, y);
    default: return dot_avx2_groups<C, NX, 0>(m, row, xs, y);
  }
}

bool has_avx512() {
  __builtin_cpu_init();
  return has_avx2() && __builtin_cpu_supports("avx512f");
}
#pragma GCC diagnostic pop
#endif

using DotFn = void (*)(const Mat &, size_t, const float *const *, float *);
constexpr int MAX_NX = 4;

struct Kernels {
  DotFn dot[3][MAX_NX];  // [Codes][nx − 1]
  const char *isa;
};

// The widest kernels the CPU runs, or KLC_CPU_ISA's (scalar, avx2 or avx512) where it runs them.
Kernels pick_kernels() {
  const char *forced = std::getenv("KLC_CPU_ISA");
  const auto allowed = [&](const char *isa) { return !forced || !*forced || std::strcmp(forced, isa) == 0; };
  const bool scalar = forced && std::strcmp(forced, "scalar") == 0;
#ifdef KLC_CPU_X86
  if (!scalar && allowed("avx512") && has_avx512()) {
    return {{{dot_avx512<INT4, 1>, dot_avx512<INT4, 2>, dot_avx512<INT4, 3>, dot_avx512<INT4, 4>},
             {dot_avx512<INT8, 1>, dot_avx512<INT8, 2>, dot_avx512<INT8, 3>, dot_avx512<INT8, 4>},
             {dot_avx512<E4M3, 1>, dot_avx512<E4M3, 2>, dot_avx512<E4M3, 3>, dot_avx512<E4M3, 4>}},
            "avx512"};
  }
  if (!scalar && has_avx2()) {
    return {{{dot_avx2<INT4, 1>, dot_avx2<INT4, 2>, dot_avx2<INT4, 3>, dot_avx2<INT4, 4>},
             {dot_avx2<INT8, 1>, dot_avx2<INT8, 2>, dot_avx2<INT8, 3>, dot_avx2<INT8, 4>},
             {dot_avx2<E4M3, 1>, dot_avx2<E4M3, 2>, dot_avx2<E4M3, 3>, dot_avx2<E4M3, 4>}},
            "avx2"};
  }
#endif
  (void)scalar;
  return {{{dot_scalar<INT4, 1>, dot_scalar<INT4, 2>, dot_scalar<INT4, 3>, dot_scalar<INT4, 4>},
           {dot_scalar<INT8, 1>, dot_scalar<INT8, 2>, dot_scalar<INT8, 3>, dot_scalar<INT8, 4>},
           {dot_scalar<E4M3, 1>, dot_scalar<E4M3, 2>, dot_scalar<E4M3, 3>, dot_scalar<E4M3, 4>}},
          "scalar"};
}

const Kernels &kernels() {
  static const Kernels k = pick_kernels();
  return k;
}

// y[j] = W[row] . xs[j] for any number of vectors, MAX_NX per pass over the row.
void dot_rows(const Mat &m, size_t row, const float *const *xs, int n, float *y) {
  const DotFn *dot = kernels().dot[m.codes];
  for (int j = 0; j < n; j += MAX_NX) dot[std::min(MAX_NX, n - j) - 1](m, row, xs + j, y + j);
}

constexpr int UP_ROWS = 16;     // intermediate rows per up task
constexpr int DOWN_COLS = 32;   // output columns per down task
constexpr int COMBINE_TOKENS = 16;

// The CPUs this process may run on (its affinity mask, which containers narrow), else the hardware threads.
int usable_cpus() {
#ifdef __linux__
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) > 0) return CPU_COUNT(&set);
#endif
  return static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
}

bool codes_ok(const klc_wq &w) {
  return (w.codes == KLC_WQ_INT && (w.bits == 4 || w.bits == 8)) || (w.codes == KLC_WQ_E4M3 && w.bits == 8 && !w.zero_points);
}

bool layout_ok(const klc_wq &w, int N, int K) {
  return w.w_packed && w.scales && codes_ok(w) && w.N == N && w.K == K && w.group > 0 && w.group % 8 == 0 && K % w.group == 0;
}

}  // namespace

struct klc_cpu_pool {
  Pool pool;
  explicit klc_cpu_pool(int threads) : pool(threads) {}
};

extern "C" {

KLC_API const char *klc_cpu_last_error(void) { return g_error.c_str(); }

KLC_API const char *klc_cpu_isa(void) { return kernels().isa; }

KLC_API int klc_cpu_pool_create(int threads, klc_cpu_pool **out) {
  if (!out) return fail(KLC_E_ARG, "klc_cpu_pool_create: out is null");
  *out = nullptr;
  const int n = threads > 0 ? threads : usable_cpus();
  try {
    *out = new klc_cpu_pool(n);
  } catch (const std::exception &e) {
    return fail(KLC_E_ARG, std::string("could not start ") + std::to_string(n) + " CPU threads for the offloaded experts: " + e.what());
  }
  return KLC_OK;
}

KLC_API void klc_cpu_pool_free(klc_cpu_pool *pool) { delete pool; }

KLC_API int klc_cpu_pool_threads(const klc_cpu_pool *pool) { return pool ? pool->pool.threads() : 0; }

KLC_API int klc_cpu_moe_experts(klc_cpu_pool *pool, const float *x, const int32_t *idx, const float *w, const klc_wq *w13,
                                const klc_wq *w2, float *out, int accumulate, int T, int d, int I, int E, int k) {
  if (!pool || !x || !idx || !w || !w13 || !w2 || !out || T < 1 || d < 1 || I < 1 || E < 1 || k < 1)
    return fail(KLC_E_ARG, "klc_cpu_moe_experts: null pointer or empty shape");
  if (!layout_ok(*w13, E * 2 * I, d) || !layout_ok(*w2, E * d, I) || w2->bits != w13->bits || w2->codes != w13->codes)
    return fail(KLC_E_ARG, "klc_cpu_moe_experts: w13 must be [E * 2I, d] and w2 [E * d, I], both INT4, both INT8 or both E4M3 (no zero points), groups multiples of 8 dividing the row");
  const int n = T * k;
  for (int p = 0; p < n; ++p) {
    if (idx[p] < 0 || idx[p] >= E)
      return fail(KLC_E_ARG, "klc_cpu_moe_experts: expert index " + std::to_string(idx[p]) + " of pair " + std::to_string(p) +
                                 " is outside 0.." + std::to_string(E - 1));
  }
  Pool &P = pool->pool;
  try {
    P.h.resize(static_cast<size_t>(n) * I);
    P.y.resize(static_cast<size_t>(n) * d);
    P.order.resize(n);
    P.first.assign(E + 1, 0);
    P.experts.clear();
  } catch (const std::bad_alloc &) {
    return fail(KLC_E_OOM, "klc_cpu_moe_experts: out of host memory for " + std::to_string(n) + " token-expert pairs");
  }
  // Pairs grouped by expert (counting sort, ascending pair index within an expert).
  for (int p = 0; p < n; ++p) ++P.first[idx[p] + 1];
  for (int e = 0; e < E; ++e) {
    if (P.first[e + 1] > 0) P.experts.push_back(e);
    P.first[e + 1] += P.first[e];
  }
  {
    std::vector<int> fill(P.first.begin(), P.first.end() - 1);
    for (int p = 0; p < n; ++p) P.order[fill[idx[p]]++] = p;
  }
  const Mat m13(*w13), m2(*w2);
  const int chosen = static_cast<int>(P.experts.size());
  float *h = P.h.data(), *y = P.y.data();
  const int *order = P.order.data(), *first = P.first.data(), *experts = P.experts.data();

  const int up_blocks = (I + UP_ROWS - 1) / UP_ROWS;
  P.run(chosen * up_blocks, [&](int task) {
    const int e = experts[task / up_blocks];
    const int r0 = (task % up_blocks) * UP_ROWS, r1 = std::min(I, r0 + UP_ROWS);
    const float *xs[MAX_NX];
    float g[MAX_NX], u[MAX_NX];
    for (int i = r0; i < r1; ++i) {
      const size_t gate = static_cast<size_t>(e) * 2 * I + i, up = gate + I;
      for (int q0 = first[e]; q0 < first[e + 1]; q0 += MAX_NX) {
        const int nq = std::min(MAX_NX, first[e + 1] - q0);
        for (int j = 0; j < nq; ++j) xs[j] = x + static_cast<size_t>(order[q0 + j] / k) * d;
        dot_rows(m13, gate, xs, nq, g);
        dot_rows(m13, up, xs, nq, u);
        for (int j = 0; j < nq; ++j) h[static_cast<size_t>(order[q0 + j]) * I + i] = g[j] / (1.f + std::exp(-g[j])) * u[j];
      }
    }
  });

  const int down_blocks = (d + DOWN_COLS - 1) / DOWN_COLS;
  P.run(chosen * down_blocks, [&](int task) {
    const int e = experts[task / down_blocks];
    const int c0 = (task % down_blocks) * DOWN_COLS, c1 = std::min(d, c0 + DOWN_COLS);
    const float *hs[MAX_NX];
    float v[MAX_NX];
    for (int c = c0; c < c1; ++c) {
      const size_t row = static_cast<size_t>(e) * d + c;
      for (int q0 = first[e]; q0 < first[e + 1]; q0 += MAX_NX) {
        const int nq = std::min(MAX_NX, first[e + 1] - q0);
        for (int j = 0; j < nq; ++j) hs[j] = h + static_cast<size_t>(order[q0 + j]) * I;
        dot_rows(m2, row, hs, nq, v);
        for (int j = 0; j < nq; ++j) y[static_cast<size_t>(order[q0 + j]) * d + c] = v[j];
      }
    }
  });

  P.run((T + COMBINE_TOKENS - 1) / COMBINE_TOKENS, [&](int task) {
    const int t1 = std::min(T, (task + 1) * COMBINE_TOKENS);
    for (int t = task * COMBINE_TOKENS; t < t1; ++t) {
      float *o = out + static_cast<size_t>(t) * d;
      for (int c = 0; c < d; ++c) {
        float acc = 0.f;
        for (int s = 0; s < k; ++s) acc = std::fma(w[t * k + s], y[static_cast<size_t>(t * k + s) * d + c], acc);
        o[c] = accumulate ? o[c] + acc : acc;
      }
    }
  });
  return KLC_OK;
}

}  // extern "C"
