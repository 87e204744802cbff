// Shared by the translation units of klc_native: the context and the error channel.
#pragma once

#include <cuda_runtime.h>

#include <string>

#include "klc_native.h"

struct klc_ctx {
  int device = 0;
  cudaStream_t stream = nullptr;  // where work is queued: own_stream or one set by the caller
  cudaStream_t own_stream = nullptr;
  // Intra-chunk workspace of the KDA prefill, grown on demand and kept across calls.
  float *kda_ws = nullptr;
  size_t kda_ws_floats = 0;
  int max_segment_tokens = 16384;
};

namespace klc {

// Records a user-facing message for klc_last_error() and returns `code`.
int fail(int code, const std::string &message);
// Maps a CUDA error of `what` to a KLC_E_* code with a message saying what to do.
int fail_cuda(cudaError_t err, const char *what);
// Makes ctx's device current on the calling thread.
int use_device(klc_ctx *ctx);

int kda_prefill(klc_ctx *ctx, const klc_kda_args *a);
int kda_decode(klc_ctx *ctx, const klc_kda_args *a);
// Validates a KDA call's shapes and pointers; `decode` requires T == 1.
int kda_check_args(const klc_kda_args *a, bool decode);
// Probes that this build has a kernel image for the current device.
cudaError_t kda_probe_image();

}  // namespace klc
