// cuBLAS, loaded at run time from the user's CUDA install (libcublas.so.13, then .12), so that
// the library builds without cuBLAS headers and still loads where cuBLAS is missing. Only the few
// entry points and enum values used are declared here, with the values of cublas_api.h. Tensor
// core GEMMs take bf16 operands, accumulate in fp32 and write fp32 (or bf16 where the result feeds another
// tensor-core kernel).
#include <cuda_bf16.h>
#include <library_types.h>

#include <cstdlib>
#include <mutex>
#include <string>

#if defined(_WIN32)
#include <windows.h>
#else
#include <dlfcn.h>
#endif

#include "internal.h"

namespace {

using cublasHandle_t = void *;
using cublasStatus_t = int;
constexpr int CUBLAS_OP_N = 0, CUBLAS_OP_T = 1;
constexpr int CUBLAS_COMPUTE_32F = 68;
constexpr int CUBLAS_GEMM_DEFAULT = -1;

using create_fn = cublasStatus_t (*)(cublasHandle_t *);
using destroy_fn = cublasStatus_t (*)(cublasHandle_t);
using set_stream_fn = cublasStatus_t (*)(cublasHandle_t, cudaStream_t);
using get_version_fn = cublasStatus_t (*)(cublasHandle_t, int *);
using gemm_ex_fn = cublasStatus_t (*)(cublasHandle_t, int, int, int, int, int, const void *, const void *, cudaDataType, int,
                                      const void *, cudaDataType, int, const void *, void *, cudaDataType, int, int, int);
using gemm_strided_fn = cublasStatus_t (*)(cublasHandle_t, int, int, int, int, int, const void *, const void *, cudaDataType,
                                           int, long long, const void *, cudaDataType, int, long long, const void *, void *,
                                           cudaDataType, int, long long, int, int, int);

using gemm_batched_fn = cublasStatus_t (*)(cublasHandle_t, int, int, int, int, int, const void *, const void *const *,
                                           cudaDataType, int, const void *const *, cudaDataType, int, const void *, void *const *,
                                           cudaDataType, int, int, int, int);

struct Cublas {
  bool ok = false;
  std::string what;  // the file loaded, or why none was
  create_fn create = nullptr;
  destroy_fn destroy = nullptr;
  set_stream_fn set_stream = nullptr;
  get_version_fn get_version = nullptr;
  gemm_ex_fn gemm = nullptr;
  gemm_strided_fn gemm_strided = nullptr;
  gemm_batched_fn gemm_batched = nullptr;
};

void *open_library(const char *name) {
#if defined(_WIN32)
  return (void *)LoadLibraryA(name);
#else
  return dlopen(name, RTLD_NOW | RTLD_LOCAL);
#endif
}

void *symbol(void *lib, const char *name) {
#if defined(_WIN32)
  return (void *)GetProcAddress((HMODULE)lib, name);
#else
  return dlsym(lib, name);
#endif
}

// Loaded once per process; every context shares the functions and creates its own handle.
const Cublas &cublas() {
  static Cublas c;
  static std::once_flag once;
  std::call_once(once, [] {
    std::string tried;
    std::string names[6];
    int n = 0;
    if (const char *env = std::getenv("KLC_CUBLAS")) names[n++] = env;
#if defined(_WIN32)
    names[n++] = "cublas64_13.dll";
    names[n++] = "cublas64_12.dll";
#else
    names[n++] = "libcublas.so.13";
    names[n++] = "libcublas.so.12";
    names[n++] = "/usr/local/cuda/lib64/libcublas.so.13";
    names[n++] = "/usr/local/cuda/lib64/libcublas.so.12";
#endif
    void *lib = nullptr;
    for (int i = 0; i < n && !lib; ++i) {
      lib = open_library(names[i].c_str());
      if (lib) c.what = names[i];
      else tried += (tried.empty() ? "" : ", ") + names[i];
    }
    if (!lib) {
      c.what = "cuBLAS was not found (tried " + tried +
               "); install the CUDA toolkit's cuBLAS or point KLC_CUBLAS at libcublas.so";
      return;
    }
    auto pick = [&](const char *a, const char *b) { void *f = symbol(lib, a); return f ? f : symbol(lib, b); };
    c.create = (create_fn)pick("cublasCreate_v2", "cublasCreate");
    c.destroy = (destroy_fn)pick("cublasDestroy_v2", "cublasDestroy");
    c.set_stream = (set_stream_fn)pick("cublasSetStream_v2", "cublasSetStream");
    c.get_version = (get_version_fn)pick("cublasGetVersion_v2", "cublasGetVersion");
    c.gemm = (gemm_ex_fn)symbol(lib, "cublasGemmEx");
    c.gemm_strided = (gemm_strided_fn)symbol(lib, "cublasGemmStridedBatchedEx");
    c.gemm_batched = (gemm_batched_fn)symbol(lib, "cublasGemmBatchedEx");
    if (!c.create || !c.destroy || !c.set_stream || !c.gemm || !c.gemm_strided || !c.gemm_batched) {
      c.what += " lacks cublasGemmEx/cublasGemmStridedBatchedEx/cublasGemmBatchedEx; install cuBLAS 12 or newer";
      return;
    }
    c.ok = true;
  });
  return c;
}

int blas_fail(cublasStatus_t s, const char *what) {
  return klc::fail(s == 3 ? KLC_E_OOM : KLC_E_CUDA, std::string(what) + " failed: cuBLAS status " + std::to_string(s) +
                                                       (s == 3 ? " (out of GPU memory; lower the context length)" : ""));
}

// A handle bound to the context's current stream.
cublasHandle_t handle(klc_ctx *ctx) {
  cublas().set_stream(ctx->blas, ctx->stream);
  return ctx->blas;
}

}  // namespace

namespace klc {

int gemm_bf16_nt(klc_ctx *ctx, const void *x, int ldx, long long sx, const void *w, int ldw, long long sw, float *y, int ldy,
                 long long sy, int M, int N, int K, int batch, float beta) {
  const float alpha = 1.f;
  // Row-major Y = X Wᵀ is column-major Yᵀ = W Xᵀ: W [N, K] row-major is Wᵀ column-major, so op T.
  const cublasStatus_t s =
      batch == 1 ? cublas().gemm(handle(ctx), CUBLAS_OP_T, CUBLAS_OP_N, N, M, K, &alpha, w, CUDA_R_16BF, ldw, x, CUDA_R_16BF, ldx,
                                 &beta, y, CUDA_R_32F, ldy, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT)
                 : cublas().gemm_strided(handle(ctx), CUBLAS_OP_T, CUBLAS_OP_N, N, M, K, &alpha, w, CUDA_R_16BF, ldw, sw, x,
                                         CUDA_R_16BF, ldx, sx, &beta, y, CUDA_R_32F, ldy, sy, batch, CUBLAS_COMPUTE_32F,
                                         CUBLAS_GEMM_DEFAULT);
  return s ? blas_fail(s, "a tensor-core GEMM (cublasGemmEx)") : KLC_OK;
}

int gemm_bf16_nt_to_bf16(klc_ctx *ctx, const void *x, int ldx, long long sx, const void *w, int ldw, long long sw, void *y, int ldy,
                         long long sy, int M, int N, int K, int batch) {
  const float alpha = 1.f, beta = 0.f;
  const cublasStatus_t s = cublas().gemm_strided(handle(ctx), CUBLAS_OP_T, CUBLAS_OP_N, N, M, K, &alpha, w, CUDA_R_16BF, ldw, sw, x,
                                                 CUDA_R_16BF, ldx, sx, &beta, y, CUDA_R_16BF, ldy, sy, batch, CUBLAS_COMPUTE_32F,
                                                 CUBLAS_GEMM_DEFAULT);
  return s ? blas_fail(s, "a tensor-core GEMM with bf16 output (cublasGemmStridedBatchedEx)") : KLC_OK;
}

int gemm_bf16_nt_ptrs(klc_ctx *ctx, const void *const *x, int ldx, const void *const *w, int ldw, float *const *y, int ldy, int M,
                      int N, int K, int count) {
  const float alpha = 1.f, beta = 0.f;
  const cublasStatus_t s = cublas().gemm_batched(handle(ctx), CUBLAS_OP_T, CUBLAS_OP_N, N, M, K, &alpha, w, CUDA_R_16BF, ldw, x,
                                                 CUDA_R_16BF, ldx, &beta, reinterpret_cast<void *const *>(y), CUDA_R_32F, ldy,
                                                 count, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
  return s ? blas_fail(s, "a batched tensor-core GEMM (cublasGemmBatchedEx)") : KLC_OK;
}

int gemm_bf16_nn(klc_ctx *ctx, const void *x, int ldx, const void *b, int ldb, float *y, int ldy, int M, int N, int K) {
  const float alpha = 1.f, beta = 0.f;
  // Row-major Y = X B with B [K, N] row-major: column-major Yᵀ = Bᵀ Xᵀ, both already in that form.
  const cublasStatus_t s = cublas().gemm(handle(ctx), CUBLAS_OP_N, CUBLAS_OP_N, N, M, K, &alpha, b, CUDA_R_16BF, ldb, x,
                                         CUDA_R_16BF, ldx, &beta, y, CUDA_R_32F, ldy, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
  return s ? blas_fail(s, "a tensor-core GEMM (cublasGemmEx)") : KLC_OK;
}

int scratch(klc_ctx *ctx, int slot, size_t bytes, void **out) {
  if (ctx->scratch_bytes[slot] < bytes) {
    cudaStreamSynchronize(ctx->stream);
    if (ctx->scratch[slot]) cudaFree(ctx->scratch[slot]);
    ++ctx->buffers_moved;
    ctx->scratch[slot] = nullptr;
    ctx->scratch_bytes[slot] = 0;
    const size_t grown = bytes + bytes / 4;
    cudaError_t e = cudaMalloc(&ctx->scratch[slot], grown);
    if (e != cudaSuccess) {
      ctx->scratch[slot] = nullptr;
      return fail_cuda(e, ("allocating " + std::to_string(grown >> 20) + " MiB of tensor-core staging memory").c_str());
    }
    ctx->scratch_bytes[slot] = grown;
  }
  *out = ctx->scratch[slot];
  return KLC_OK;
}

void release_tensor_cores(klc_ctx *ctx) {
  for (int i = 0; i < KLC_SCRATCH_SLOTS; ++i)
    if (ctx->scratch[i]) cudaFree(ctx->scratch[i]);
  if (ctx->blas) cublas().destroy(ctx->blas);
  ctx->blas = nullptr;
}

}  // namespace klc

using namespace klc;

extern "C" {

int klc_set_tensor_cores(klc_ctx *ctx, int enable) {
  int rc = use_device(ctx);
  if (rc) return rc;
  ctx->tensor_cores = 0;
  if (!enable) return KLC_OK;
  const Cublas &c = cublas();
  if (!c.ok) return fail(KLC_E_NO_DRIVER, c.what);
  if (!ctx->blas) {
    const cublasStatus_t s = c.create(&ctx->blas);
    if (s) {
      ctx->blas = nullptr;
      return fail(KLC_E_CUDA, c.what + " loaded, but cublasCreate failed with status " + std::to_string(s) +
                                  " (a driver older than this cuBLAS needs?)");
    }
  }
  ctx->tensor_cores = 1;
  return KLC_OK;
}

const char *klc_gemm_engine(klc_ctx *ctx) {
  static thread_local std::string text;
  if (!ctx || !ctx->tensor_cores) {
    text = "fp32 CUDA-core kernels";
    return text.c_str();
  }
  int version = 0;
  if (cublas().get_version) cublas().get_version(ctx->blas, &version);
  text = "cuBLAS " + std::to_string(version / 10000) + "." + std::to_string(version / 100 % 100) + " tensor cores (" +
         cublas().what + "), bf16 activations";
  return text.c_str();
}

}  // extern "C"
