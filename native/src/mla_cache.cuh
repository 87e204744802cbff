// The element type of an MLA latent cache (KLC_CACHE_F32 / KLC_CACHE_BF16 of klc_native.h). The
// cache-reading kernels are templates on it: one source, an fp32 form for exact mode and a bf16
// form for tensor-core mode, which halves the cache's memory and the bytes decode reads per key.
// Values are widened to fp32 as they are read, and all sums stay fp32.
#pragma once

#include <cuda_bf16.h>

namespace klc {

__device__ __forceinline__ float cache_f32(float x) { return x; }
__device__ __forceinline__ float cache_f32(__nv_bfloat16 x) { return __bfloat162float(x); }

// Rounds to the cache's type: bf16 to nearest even (as torch and the state files round).
__device__ __forceinline__ void cache_store(float *p, float x) { *p = x; }
__device__ __forceinline__ void cache_store(__nv_bfloat16 *p, float x) { *p = __float2bfloat16_rn(x); }

// Whether an entry point's cache_type argument names a type; it fails with a message when not.
int check_cache_type(int cache_type, const char *who);

}  // namespace klc
