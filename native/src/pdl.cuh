// Programmatic Dependent Launch (Hopper and later) for the decode step's kernels. A decode step is
// a few hundred kernels of a few microseconds each, and between two of them the GPU would drain
// the first, then start the second and wait for its first loads. A kernel launched with
// launch_pdl may start while the kernel before it on the stream is finishing: it must call
// pdl_wait() before it reads anything an earlier kernel wrote and before it writes anything (the
// wait returns once every earlier kernel has finished and its writes are visible); what it does
// before (requesting weights, which no kernel writes) overlaps the earlier kernel's tail.
// pdl_trigger() lets the next such kernel start; a kernel calls it after its own wait, so at most
// one kernel's blocks wait at a time. Without the launch attribute both are no-ops, and before
// sm_90 they compile to nothing. KLC_PDL=0 launches without the attribute (for comparisons).
#pragma once

#include <cuda_runtime.h>

#include <utility>

#include "internal.h"

__device__ __forceinline__ void pdl_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}

__device__ __forceinline__ void pdl_trigger() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}

namespace klc {

// Whether ctx's device takes the attribute (compute capability 9.0 or later) and KLC_PDL is not 0.
bool pdl_on(klc_ctx *ctx);

// kernel<<<grid, block, smem, ctx->stream>>>(args...), with the launch attribute when pdl_on(ctx).
template <typename... Params, typename... Args>
cudaError_t launch_pdl(klc_ctx *ctx, void (*kernel)(Params...), dim3 grid, dim3 block, size_t smem, Args &&...args) {
  cudaLaunchAttribute attr;
  attr.id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr.val.programmaticStreamSerializationAllowed = 1;
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = grid;
  cfg.blockDim = block;
  cfg.dynamicSmemBytes = smem;
  cfg.stream = ctx->stream;
  cfg.attrs = &attr;
  cfg.numAttrs = pdl_on(ctx) ? 1 : 0;
  return cudaLaunchKernelEx(&cfg, kernel, std::forward<Args>(args)...);
}

}  // namespace klc
