// CUDA graphs of the context's stream: a decode step queues a few hundred small launches, and the
// host takes longer to queue them than the GPU to run them. The CUDA backend records one step's
// launches once and replays them; what changes between steps (token ids, the MLA lengths) is read
// from device memory by the recorded kernels (see klc_mla_decode's positions).
#include <new>

#include "internal.h"

struct klc_graph {
  cudaGraphExec_t exec = nullptr;
  unsigned long long buffers_moved = 0;  // the context's count when recording began
};

namespace klc {

int refuse_capture(klc_ctx *ctx, const char *what) {
  cudaStreamCaptureStatus status = cudaStreamCaptureStatusNone;
  cudaError_t e = cudaStreamIsCapturing(ctx->stream, &status);
  if (e != cudaSuccess) return fail_cuda(e, "asking whether the stream records a CUDA graph");
  if (status == cudaStreamCaptureStatusNone) return KLC_OK;
  return fail(KLC_E_ARG, std::string(what) + " cannot be recorded in a CUDA graph: a replay would repeat this call's arguments");
}

}  // namespace klc

using namespace klc;

extern "C" {

int klc_graph_begin(klc_ctx *ctx) {
  int rc = use_device(ctx);
  if (rc) return rc;
  // Thread-local: work another thread queues meanwhile (a test's torch, say) is not recorded, and
  // an unsafe call on this thread (a cudaMalloc, a synchronisation) fails instead of corrupting it.
  cudaError_t e = cudaStreamBeginCapture(ctx->stream, cudaStreamCaptureModeThreadLocal);
  if (e != cudaSuccess) return fail_cuda(e, "starting to record a CUDA graph");
  ctx->capture_moved = ctx->buffers_moved;
  return KLC_OK;
}

int klc_graph_end(klc_ctx *ctx, klc_graph **out) {
  if (out) *out = nullptr;
  int rc = use_device(ctx);
  if (rc) return rc;
  cudaGraph_t graph = nullptr;
  cudaError_t e = cudaStreamEndCapture(ctx->stream, &graph);
  if (!out) {
    // Discarding: the recording may have been invalidated by the call that failed inside it.
    if (graph) cudaGraphDestroy(graph);
    cudaGetLastError();
    return KLC_OK;
  }
  if (e != cudaSuccess) return fail_cuda(e, "recording a CUDA graph (a call inside it was not recordable)");
  if (ctx->buffers_moved != ctx->capture_moved) {
    cudaGraphDestroy(graph);
    return fail(KLC_E_ARG, "recording a CUDA graph: a workspace of the context moved while it was recorded");
  }
  cudaGraphExec_t exec = nullptr;
  e = cudaGraphInstantiate(&exec, graph, 0);
  cudaGraphDestroy(graph);
  if (e != cudaSuccess) return fail_cuda(e, "instantiating a CUDA graph");
  klc_graph *g = new (std::nothrow) klc_graph();
  if (!g) {
    cudaGraphExecDestroy(exec);
    return fail(KLC_E_OOM, "klc_graph_end: out of host memory");
  }
  g->exec = exec;
  g->buffers_moved = ctx->capture_moved;
  *out = g;
  return KLC_OK;
}

int klc_graph_launch(klc_ctx *ctx, klc_graph *g, int *launched) {
  if (launched) *launched = 0;
  int rc = use_device(ctx);
  if (rc) return rc;
  if (!g || !launched) return fail(KLC_E_ARG, "klc_graph_launch: the graph or `launched` is null");
  if (g->buffers_moved != ctx->buffers_moved) return KLC_OK;
  cudaError_t e = cudaGraphLaunch(g->exec, ctx->stream);
  if (e != cudaSuccess) return fail_cuda(e, "replaying a CUDA graph");
  *launched = 1;
  return KLC_OK;
}

int klc_graph_free(klc_ctx *ctx, klc_graph *g) {
  if (!g) return KLC_OK;
  int rc = use_device(ctx);
  if (rc) return rc;
  cudaStreamSynchronize(ctx->stream);
  cudaError_t e = cudaGraphExecDestroy(g->exec);
  delete g;
  return e == cudaSuccess ? KLC_OK : fail_cuda(e, "freeing a CUDA graph");
}

}  // extern "C"
