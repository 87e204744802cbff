// Drives klc_cpu_moe_experts (native/src/cpu_experts.cpp) from files, for the unit test, and times
// it for the micro-benchmark.
//   run IN OUT [REPEAT]: IN holds int32 [T, d, I, E, k, bits, group13, group2, scales_f32, asym, accumulate,
//     threads, fp8 (E4M3 codes)], then x f32 [T*d], idx i32 [T*k], w f32 [T*k], for w13 then w2: codes i32, scales
//     (f32, or bf16 as u16), zero points i32 when asym, then out f32 [T*d] (the values accumulated
//     into). OUT gets out f32 [T*d]; stdout the ISA used. With REPEAT, the call runs REPEAT times on one pool, each
//     from the same out, and every result must have the first one's bits (exit 3 otherwise).
//   bench T d I E k bits group threads iters: random weights, prints one JSON line with the mean
//     time per call and the GB/s of weight bytes the chosen experts occupy.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "klc_cpu.h"

namespace {

[[noreturn]] void die(const std::string &m) {
  std::fprintf(stderr, "cpu-experts-driver: %s\n", m.c_str());
  std::exit(2);
}

struct Reader {
  FILE *f;
  template <typename V>
  std::vector<V> take(size_t n) {
    std::vector<V> v(n);
    if (n && std::fread(v.data(), sizeof(V), n, f) != n) die("input file too short");
    return v;
  }
};

struct Matrix {
  std::vector<int32_t> codes, zeros;
  std::vector<uint8_t> scales;
  klc_wq wq{};
};

size_t scale_count(int N, int K, int group) { return static_cast<size_t>(N) * (K / group); }
size_t zero_words(int N, int K, int group, int bits) { return static_cast<size_t>((N + 32 / bits - 1) / (32 / bits)) * (K / group); }

void finish(Matrix &m, int N, int K, int group, int bits, int f32, int codes) {
  m.wq = {m.codes.data(), m.scales.data(), m.zeros.empty() ? nullptr : m.zeros.data(), bits, N, K, group, f32, codes};
}

Matrix read_matrix(Reader &r, int N, int K, int group, int bits, int f32, int asym, int codes) {
  Matrix m;
  m.codes = r.take<int32_t>(static_cast<size_t>(N) * K * bits / 32);
  m.scales = r.take<uint8_t>(scale_count(N, K, group) * (f32 ? 4 : 2));
  if (asym) m.zeros = r.take<int32_t>(zero_words(N, K, group, bits));
  finish(m, N, K, group, bits, f32, codes);
  return m;
}

Matrix random_matrix(std::mt19937 &rng, int N, int K, int group, int bits) {
  Matrix m;
  m.codes.resize(static_cast<size_t>(N) * K * bits / 32);
  for (auto &c : m.codes) c = static_cast<int32_t>(rng());
  const size_t ns = scale_count(N, K, group);
  m.scales.resize(ns * 4);
  std::uniform_real_distribution<float> s(1e-3f, 2e-2f);
  for (size_t i = 0; i < ns; ++i) {
    const float v = s(rng);
    std::memcpy(m.scales.data() + 4 * i, &v, 4);
  }
  finish(m, N, K, group, bits, 1, KLC_WQ_INT);
  return m;
}

int run(const char *in, const char *out, int repeat) {
  FILE *f = std::fopen(in, "rb");
  if (!f) die(std::string("cannot open ") + in);
  Reader r{f};
  const auto hd = r.take<int32_t>(13);
  const int T = hd[0], d = hd[1], I = hd[2], E = hd[3], k = hd[4], bits = hd[5], g13 = hd[6], g2 = hd[7], f32 = hd[8], asym = hd[9],
            acc = hd[10], threads = hd[11], codes = hd[12] ? KLC_WQ_E4M3 : KLC_WQ_INT;
  auto x = r.take<float>(static_cast<size_t>(T) * d);
  auto idx = r.take<int32_t>(static_cast<size_t>(T) * k);
  auto w = r.take<float>(static_cast<size_t>(T) * k);
  Matrix m13 = read_matrix(r, E * 2 * I, d, g13, bits, f32, asym, codes);
  Matrix m2 = read_matrix(r, E * d, I, g2, bits, f32, asym, codes);
  const auto before = r.take<float>(static_cast<size_t>(T) * d);
  std::fclose(f);
  klc_cpu_pool *pool = nullptr;
  if (klc_cpu_pool_create(threads, &pool)) die(klc_cpu_last_error());
  std::vector<float> o;
  for (int it = 0; it < repeat; ++it) {
    std::vector<float> again = before;
    const int rc = klc_cpu_moe_experts(pool, x.data(), idx.data(), w.data(), &m13.wq, &m2.wq, again.data(), acc, T, d, I, E, k);
    if (rc) {
      std::printf("error %d: %s\n", rc, klc_cpu_last_error());
      klc_cpu_pool_free(pool);
      return 1;
    }
    if (it == 0) {
      o = again;
    } else if (std::memcmp(o.data(), again.data(), o.size() * sizeof(float)) != 0) {
      std::printf("call %d of %d gave other values than the first\n", it + 1, repeat);
      klc_cpu_pool_free(pool);
      return 3;
    }
  }
  klc_cpu_pool_free(pool);
  FILE *g = std::fopen(out, "wb");
  if (!g || std::fwrite(o.data(), sizeof(float), o.size(), g) != o.size()) die(std::string("cannot write ") + out);
  std::fclose(g);
  std::printf("%s\n", klc_cpu_isa());
  return 0;
}

int bench(char **a) {
  const int T = std::atoi(a[0]), d = std::atoi(a[1]), I = std::atoi(a[2]), E = std::atoi(a[3]), k = std::atoi(a[4]), bits = std::atoi(a[5]),
            group = std::atoi(a[6]), threads = std::atoi(a[7]), iters = std::atoi(a[8]);
  std::mt19937 rng(7);
  Matrix m13 = random_matrix(rng, E * 2 * I, d, group, bits), m2 = random_matrix(rng, E * d, I, group, bits);
  std::vector<float> x(static_cast<size_t>(T) * d), w(static_cast<size_t>(T) * k, 0.1f), o(x.size());
  std::normal_distribution<float> nd;
  for (auto &v : x) v = nd(rng);
  klc_cpu_pool *pool = nullptr;
  if (klc_cpu_pool_create(threads, &pool)) die(klc_cpu_last_error());
  // A fresh draw of k distinct experts per token each call, as decode routes: the weights come from memory, not cache.
  std::vector<std::vector<int32_t>> routes(iters + 1, std::vector<int32_t>(static_cast<size_t>(T) * k));
  double bytes = 0;
  const double per_expert = (3.0 * I * d * bits / 8) + (2.0 * I * (d / group) + static_cast<double>(d) * (I / group)) * 4;
  for (int it = 0; it <= iters; ++it) {
    std::vector<char> used(E, 0);
    for (int t = 0; t < T; ++t) {
      for (int s = 0; s < k; ++s) {
        int e;
        do e = static_cast<int>(rng() % E);
        while ([&] {
          for (int q = 0; q < s; ++q)
            if (routes[it][t * k + q] == e) return true;
          return false;
        }());
        routes[it][t * k + s] = e;
        used[e] = 1;
      }
    }
    if (it > 0)
      for (char u : used) bytes += u * per_expert;
  }
  if (klc_cpu_moe_experts(pool, x.data(), routes[0].data(), w.data(), &m13.wq, &m2.wq, o.data(), 0, T, d, I, E, k)) die(klc_cpu_last_error());
  const auto t0 = std::chrono::steady_clock::now();
  for (int it = 1; it <= iters; ++it) {
    if (klc_cpu_moe_experts(pool, x.data(), routes[it].data(), w.data(), &m13.wq, &m2.wq, o.data(), 0, T, d, I, E, k))
      die(klc_cpu_last_error());
  }
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("{\"isa\":\"%s\",\"threads\":%d,\"T\":%d,\"d\":%d,\"I\":%d,\"E\":%d,\"k\":%d,\"bits\":%d,\"group\":%d,\"msPerCall\":%.3f,\"weightGBps\":%.2f}\n",
              klc_cpu_isa(), klc_cpu_pool_threads(pool), T, d, I, E, k, bits, group, 1e3 * s / iters, bytes / s / 1e9);
  klc_cpu_pool_free(pool);
  return 0;
}

}  // namespace

int main(int argc, char **argv) {
  if ((argc == 4 || argc == 5) && std::strcmp(argv[1], "run") == 0) return run(argv[2], argv[3], argc == 5 ? std::atoi(argv[4]) : 1);
  if (argc == 11 && std::strcmp(argv[1], "bench") == 0) return bench(argv + 2);
  die("usage: run IN OUT [REPEAT] | bench T d I E k bits group threads iters");
}
