// Context, device discovery, memory and the error channel of the C API.
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>

#include "internal.h"
#include "pdl.cuh"

#ifndef KLC_BUILD_ARCHS
#define KLC_BUILD_ARCHS "unknown"
#endif

namespace {
thread_local std::string g_last_error;
}

namespace klc {

int fail(int code, const std::string &message) {
  g_last_error = message;
  return code;
}

int fail_cuda(cudaError_t err, const char *what) {
  cudaGetLastError();  // clear the sticky-free error so that the next call starts clean
  std::string detail = std::string(cudaGetErrorName(err)) + ": " + cudaGetErrorString(err);
  switch (err) {
    case cudaErrorInsufficientDriver:
    case cudaErrorSystemDriverMismatch:
    case cudaErrorCompatNotSupportedOnDevice:
      return fail(KLC_E_NO_DRIVER, std::string(what) + " failed: the NVIDIA driver is missing or older than CUDA 13 needs (" +
                                       detail + "). Install or update the NVIDIA driver, or use the onnx backend.");
    case cudaErrorNoDevice:
    case cudaErrorInvalidDevice:
    case cudaErrorDevicesUnavailable:
      return fail(KLC_E_NO_DEVICE, std::string(what) + " failed: no usable CUDA device (" + detail +
                                       "). Check that an NVIDIA GPU is visible (nvidia-smi, CUDA_VISIBLE_DEVICES), or use the onnx backend.");
    case cudaErrorInitializationError:
      return fail(KLC_E_NO_DRIVER, std::string(what) + " failed: the CUDA driver could not be initialised (" + detail +
                                       "). Usually no NVIDIA driver is installed here; use the onnx backend.");
    case cudaErrorNoKernelImageForDevice:
    case cudaErrorUnsupportedPtxVersion:
      return fail(KLC_E_ARCH, std::string(what) + " failed: this GPU is not supported by the built library (" + detail +
                                  "; built for " KLC_BUILD_ARCHS "). A GPU of compute capability 8.0 or newer is needed, or a newer driver for PTX.");
    case cudaErrorMemoryAllocation:
      return fail(KLC_E_OOM, std::string(what) + " failed: out of GPU memory (" + detail +
                                 "). Close other GPU programs or lower the context length.");
    default:
      return fail(KLC_E_CUDA, std::string(what) + " failed: " + detail);
  }
}

int check_cache_type(int cache_type, const char *who) {
  if (cache_type == KLC_CACHE_F32 || cache_type == KLC_CACHE_BF16) return KLC_OK;
  return fail(KLC_E_ARG, std::string(who) + ": cache_type " + std::to_string(cache_type) +
                             " is neither KLC_CACHE_F32 (0) nor KLC_CACHE_BF16 (1)");
}

int use_device(klc_ctx *ctx) {
  if (!ctx) return fail(KLC_E_ARG, "klc: the context is null (was it destroyed?)");
  cudaError_t e = cudaSetDevice(ctx->device);
  return e == cudaSuccess ? KLC_OK : fail_cuda(e, "cudaSetDevice");
}

bool pdl_on(klc_ctx *ctx) {
  if (ctx->pdl < 0) {
    int major = 0;
    if (cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, ctx->device) != cudaSuccess) cudaGetLastError();
    const char *env = std::getenv("KLC_PDL");
    ctx->pdl = major >= 9 && !(env && std::strcmp(env, "0") == 0) ? 1 : 0;
  }
  return ctx->pdl == 1;
}

}  // namespace klc

using namespace klc;

extern "C" {

int klc_abi_version(void) { return KLC_ABI_VERSION; }
const char *klc_build_archs(void) { return KLC_BUILD_ARCHS; }
const char *klc_last_error(void) { return g_last_error.c_str(); }

int klc_device_count(int *count) {
  if (!count) return fail(KLC_E_ARG, "klc_device_count: count is null");
  *count = 0;
  cudaError_t e = cudaGetDeviceCount(count);
  if (e != cudaSuccess) {
    *count = 0;
    return fail_cuda(e, "looking for CUDA devices");
  }
  if (*count == 0) return fail(KLC_E_NO_DEVICE, "no CUDA device found; use the onnx backend.");
  return KLC_OK;
}

int klc_device_query(int device, klc_device_info *info) {
  if (!info) return fail(KLC_E_ARG, "klc_device_query: info is null");
  std::memset(info, 0, sizeof *info);
  cudaDeviceProp p;
  cudaError_t e = cudaGetDeviceProperties(&p, device);
  if (e != cudaSuccess) return fail_cuda(e, "reading the device properties");
  std::snprintf(info->name, sizeof info->name, "%s", p.name);
  info->major = p.major;
  info->minor = p.minor;
  info->multiprocessors = p.multiProcessorCount;
  cudaDriverGetVersion(&info->driver_version);
  cudaRuntimeGetVersion(&info->runtime_version);
  if ((e = cudaSetDevice(device)) != cudaSuccess) return fail_cuda(e, "cudaSetDevice");
  size_t free_b = 0, total_b = 0;
  if ((e = cudaMemGetInfo(&free_b, &total_b)) != cudaSuccess) return fail_cuda(e, "reading free device memory");
  info->free_bytes = free_b;
  info->total_bytes = total_b;
  return KLC_OK;
}

int klc_create(int device, klc_ctx **out) {
  if (!out) return fail(KLC_E_ARG, "klc_create: out is null");
  *out = nullptr;
  int n = 0;
  int rc = klc_device_count(&n);
  if (rc) return rc;
  if (device < 0 || device >= n)
    return fail(KLC_E_NO_DEVICE, "CUDA device " + std::to_string(device) + " does not exist (" + std::to_string(n) +
                                     " found); pick a device index below " + std::to_string(n) + ".");
  cudaError_t e = cudaSetDevice(device);
  if (e != cudaSuccess) return fail_cuda(e, "cudaSetDevice");
  if ((e = kda_probe_image()) != cudaSuccess) return fail_cuda(e, "loading the KDA kernels");
  klc_ctx *ctx = new (std::nothrow) klc_ctx();
  if (!ctx) return fail(KLC_E_OOM, "klc_create: out of host memory");
  ctx->device = device;
  // A blocking stream: it orders with the legacy default stream that other libraries in the
  // process (a test's torch, say) use for the same buffers.
  if ((e = cudaStreamCreate(&ctx->own_stream)) != cudaSuccess) {
    delete ctx;
    return fail_cuda(e, "creating a CUDA stream");
  }
  ctx->stream = ctx->own_stream;
  *out = ctx;
  return KLC_OK;
}

void klc_destroy(klc_ctx *ctx) {
  if (!ctx) return;
  cudaSetDevice(ctx->device);
  cudaStreamSynchronize(ctx->stream);
  if (ctx->kda_ws) cudaFree(ctx->kda_ws);
  if (ctx->wq_partial) cudaFree(ctx->wq_partial);
  if (ctx->wq_arrivals) cudaFree(ctx->wq_arrivals);
  if (ctx->arrivals) cudaFree(ctx->arrivals);
  release_tensor_cores(ctx);
  cudaStreamSynchronize(ctx->own_stream);
  cudaStreamDestroy(ctx->own_stream);
  delete ctx;
}

int klc_synchronize(klc_ctx *ctx) {
  int rc = use_device(ctx);
  if (rc) return rc;
  cudaError_t e = cudaStreamSynchronize(ctx->stream);
  return e == cudaSuccess ? KLC_OK : fail_cuda(e, "running the queued GPU work");
}

int klc_set_stream(klc_ctx *ctx, void *stream) {
  if (!ctx) return fail(KLC_E_ARG, "klc_set_stream: the context is null");
  ctx->stream = stream ? static_cast<cudaStream_t>(stream) : ctx->own_stream;
  return KLC_OK;
}

int klc_alloc(klc_ctx *ctx, size_t bytes, void **out) {
  if (!out) return fail(KLC_E_ARG, "klc_alloc: out is null");
  *out = nullptr;
  int rc = use_device(ctx);
  if (rc) return rc;
  cudaError_t e = cudaMalloc(out, bytes ? bytes : 1);
  if (e != cudaSuccess) {
    *out = nullptr;
    return fail_cuda(e, ("allocating " + std::to_string(bytes >> 20) + " MiB of GPU memory").c_str());
  }
  return KLC_OK;
}

int klc_free(klc_ctx *ctx, void *ptr) {
  int rc = use_device(ctx);
  if (rc) return rc;
  cudaStreamSynchronize(ctx->stream);
  cudaError_t e = cudaFree(ptr);
  return e == cudaSuccess ? KLC_OK : fail_cuda(e, "freeing GPU memory");
}

int klc_memset(klc_ctx *ctx, void *dst, int value, size_t bytes) {
  int rc = use_device(ctx);
  if (rc) return rc;
  cudaError_t e = cudaMemsetAsync(dst, value, bytes, ctx->stream);
  return e == cudaSuccess ? KLC_OK : fail_cuda(e, "clearing GPU memory");
}

int klc_upload(klc_ctx *ctx, void *dst, const void *src, size_t bytes) {
  int rc = use_device(ctx);
  if (rc) return rc;
  cudaError_t e = cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, ctx->stream);
  if (e == cudaSuccess) e = cudaStreamSynchronize(ctx->stream);
  return e == cudaSuccess ? KLC_OK : fail_cuda(e, "copying to the GPU");
}

int klc_download(klc_ctx *ctx, void *dst, const void *src, size_t bytes) {
  int rc = use_device(ctx);
  if (rc) return rc;
  cudaError_t e = cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, ctx->stream);
  if (e == cudaSuccess) e = cudaStreamSynchronize(ctx->stream);
  return e == cudaSuccess ? KLC_OK : fail_cuda(e, "copying from the GPU");
}

int klc_set_max_segment_tokens(klc_ctx *ctx, int tokens) {
  if (!ctx) return fail(KLC_E_ARG, "klc_set_max_segment_tokens: the context is null");
  if (tokens < 64) return fail(KLC_E_ARG, "max segment tokens must be at least 64, got " + std::to_string(tokens));
  ctx->max_segment_tokens = tokens;
  return KLC_OK;
}

int klc_kda_prefill(klc_ctx *ctx, const klc_kda_args *args) {
  int rc = use_device(ctx);
  if (rc) return rc;
  return kda_prefill(ctx, args);
}

int klc_kda_decode(klc_ctx *ctx, const klc_kda_args *args) {
  int rc = use_device(ctx);
  if (rc) return rc;
  return kda_decode(ctx, args);
}

int klc_kda_time(klc_ctx *ctx, const klc_kda_args *args, int decode, int iters, float *ms_per_call) {
  if (!ms_per_call || iters < 1) return fail(KLC_E_ARG, "klc_kda_time: needs iters >= 1 and an output pointer");
  int rc = use_device(ctx);
  if (rc) return rc;
  auto once = [&]() { return decode ? kda_decode(ctx, args) : kda_prefill(ctx, args); };
  if ((rc = once())) return rc;
  cudaEvent_t start, stop;
  cudaEventCreate(&start);
  cudaEventCreate(&stop);
  cudaEventRecord(start, ctx->stream);
  for (int i = 0; i < iters && rc == KLC_OK; ++i) rc = once();
  cudaEventRecord(stop, ctx->stream);
  cudaError_t e = cudaEventSynchronize(stop);
  float ms = 0;
  if (e == cudaSuccess) e = cudaEventElapsedTime(&ms, start, stop);
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  if (rc) return rc;
  if (e != cudaSuccess) return fail_cuda(e, "timing the KDA kernels");
  *ms_per_call = ms / iters;
  return KLC_OK;
}

}  // extern "C"
