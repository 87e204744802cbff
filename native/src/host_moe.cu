// Routed experts in host memory (expert offload): pinned host allocations for their weights, and
// one MoE layer's routed experts run on the CPU (cpu_experts.cpp) between two halves of GPU work.
// klc_host_moe_begin queues the copy of the token rows and the routing to pinned buffers and
// records an event; the caller then queues the shared expert; klc_host_moe_finish waits only for
// that event (the shared expert keeps running), computes the experts on the CPU, and queues their
// upload and the add into out. The next begin's copies are queued after this upload on the same
// stream, so the pinned result is never overwritten before the GPU has read it.
#include <cstring>
#include <string>

#include "internal.h"
#include "klc_cpu.h"

struct klc_host_moe {
  klc_cpu_pool *pool = nullptr;
  float *x = nullptr, *w = nullptr, *y = nullptr;
  int32_t *idx = nullptr;
  int max_tokens = 0, d = 0, k = 0;
  cudaEvent_t ready = nullptr;
};

namespace {

void release(klc_host_moe *m) {
  if (!m) return;
  if (m->ready) cudaEventDestroy(m->ready);
  for (void *p : {static_cast<void *>(m->x), static_cast<void *>(m->w), static_cast<void *>(m->y), static_cast<void *>(m->idx)})
    if (p) cudaFreeHost(p);
  klc_cpu_pool_free(m->pool);
  delete m;
}

int pinned(size_t bytes, void **out, const char *what) {
  cudaError_t e = cudaHostAlloc(out, bytes ? bytes : 1, cudaHostAllocDefault);
  if (e != cudaSuccess) {
    *out = nullptr;
    return klc::fail_cuda(e, (std::string("allocating ") + std::to_string(bytes >> 20) + " MiB of pinned host memory for " + what).c_str());
  }
  return KLC_OK;
}

}  // namespace

extern "C" {

KLC_API int klc_host_alloc(klc_ctx *ctx, size_t bytes, void **out) {
  if (!out) return klc::fail(KLC_E_ARG, "klc_host_alloc: out is null");
  *out = nullptr;
  int rc = klc::use_device(ctx);
  return rc ? rc : pinned(bytes, out, "offloaded expert weights");
}

KLC_API int klc_host_free(klc_ctx *ctx, void *ptr) {
  int rc = klc::use_device(ctx);
  if (rc) return rc;
  cudaError_t e = cudaFreeHost(ptr);
  return e == cudaSuccess ? KLC_OK : klc::fail_cuda(e, "freeing pinned host memory");
}

KLC_API int klc_host_write(void *dst, const void *src, size_t bytes) {
  if (!dst || (!src && bytes)) return klc::fail(KLC_E_ARG, "klc_host_write: null pointer");
  std::memcpy(dst, src, bytes);
  return KLC_OK;
}

KLC_API int klc_copy_to_device_async(klc_ctx *ctx, void *dst, const void *src, size_t bytes) {
  int rc = klc::use_device(ctx);
  if (rc) return rc;
  if (!dst || !src) return klc::fail(KLC_E_ARG, "klc_copy_to_device_async: null pointer");
  cudaError_t e = cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, ctx->stream);
  return e == cudaSuccess ? KLC_OK : klc::fail_cuda(e, "copying offloaded experts to the GPU");
}

KLC_API int klc_host_moe_create(klc_ctx *ctx, int threads, int max_tokens, int d, int k, klc_host_moe **out) {
  if (!out) return klc::fail(KLC_E_ARG, "klc_host_moe_create: out is null");
  *out = nullptr;
  if (max_tokens < 1 || d < 1 || k < 1) return klc::fail(KLC_E_ARG, "klc_host_moe_create: max_tokens, d and k must be positive");
  int rc = klc::use_device(ctx);
  if (rc) return rc;
  auto *m = new klc_host_moe();
  m->max_tokens = max_tokens;
  m->d = d;
  m->k = k;
  const size_t rows = static_cast<size_t>(max_tokens) * d * sizeof(float), pairs = static_cast<size_t>(max_tokens) * k * sizeof(float);
  if ((rc = klc_cpu_pool_create(threads, &m->pool))) {
    rc = klc::fail(rc, klc_cpu_last_error());
  } else if (!(rc = pinned(rows, reinterpret_cast<void **>(&m->x), "the offloaded experts' inputs")) &&
             !(rc = pinned(rows, reinterpret_cast<void **>(&m->y), "the offloaded experts' outputs")) &&
             !(rc = pinned(pairs, reinterpret_cast<void **>(&m->w), "the routing weights")) &&
             !(rc = pinned(pairs, reinterpret_cast<void **>(&m->idx), "the routing indices"))) {
    cudaError_t e = cudaEventCreateWithFlags(&m->ready, cudaEventDisableTiming);
    if (e != cudaSuccess) rc = klc::fail_cuda(e, "creating the offloaded experts' event");
  }
  if (rc) {
    release(m);
    return rc;
  }
  *out = m;
  return KLC_OK;
}

KLC_API void klc_host_moe_free(klc_host_moe *m) { release(m); }

KLC_API int klc_host_moe_threads(const klc_host_moe *m) { return m ? klc_cpu_pool_threads(m->pool) : 0; }

KLC_API int klc_host_moe_begin(klc_ctx *ctx, klc_host_moe *m, const float *x, const int32_t *idx, const float *w, int T) {
  int rc = klc::use_device(ctx);
  if (rc) return rc;
  if (!m || !x || !idx || !w || T < 1 || T > m->max_tokens)
    return klc::fail(KLC_E_ARG, "klc_host_moe_begin: null pointer, or " + std::to_string(T) + " tokens where the job holds 1 to " +
                                    std::to_string(m ? m->max_tokens : 0));
  const size_t rows = static_cast<size_t>(T) * m->d * sizeof(float), pairs = static_cast<size_t>(T) * m->k;
  cudaError_t e = cudaMemcpyAsync(m->x, x, rows, cudaMemcpyDeviceToHost, ctx->stream);
  if (e == cudaSuccess) e = cudaMemcpyAsync(m->idx, idx, pairs * sizeof(int32_t), cudaMemcpyDeviceToHost, ctx->stream);
  if (e == cudaSuccess) e = cudaMemcpyAsync(m->w, w, pairs * sizeof(float), cudaMemcpyDeviceToHost, ctx->stream);
  if (e == cudaSuccess) e = cudaEventRecord(m->ready, ctx->stream);
  return e == cudaSuccess ? KLC_OK : klc::fail_cuda(e, "copying the offloaded experts' inputs to the host");
}

KLC_API int klc_host_moe_finish(klc_ctx *ctx, klc_host_moe *m, const klc_wq *w13, const klc_wq *w2, float *out, float *y_dev, int T, int d,
                                int I, int E, int k) {
  int rc = klc::use_device(ctx);
  if (rc) return rc;
  if (!m || !out || !y_dev || T < 1 || T > m->max_tokens || d != m->d || k != m->k)
    return klc::fail(KLC_E_ARG, "klc_host_moe_finish: null pointer or a shape other than begin's job");
  cudaError_t e = cudaEventSynchronize(m->ready);
  if (e != cudaSuccess) return klc::fail_cuda(e, "waiting for the offloaded experts' inputs");
  if ((rc = klc_cpu_moe_experts(m->pool, m->x, m->idx, m->w, w13, w2, m->y, 0, T, d, I, E, k))) return klc::fail(rc, klc_cpu_last_error());
  e = cudaMemcpyAsync(y_dev, m->y, static_cast<size_t>(T) * d * sizeof(float), cudaMemcpyHostToDevice, ctx->stream);
  if (e != cudaSuccess) return klc::fail_cuda(e, "copying the offloaded experts' outputs to the GPU");
  return klc_add(ctx, out, y_dev, static_cast<size_t>(T) * d);
}

}  // extern "C"
