/*
 * klc_cpu: the routed experts of offloaded MoE layers computed on the CPU (native/src/cpu_experts.cpp),
 * host C++ only, so it builds and is tested without CUDA. Weights are klc_wq matrices (klc_native.h)
 * whose pointers are host memory (pinned when the GPU copies to and from it). Errors return a
 * negative KLC_E_* code with the reason in klc_cpu_last_error() (per thread).
 */
#ifndef KLC_CPU_H
#define KLC_CPU_H

#include "klc_native.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct klc_cpu_pool klc_cpu_pool;

/* A persistent pool of `threads` workers (the caller counts as one; <= 0: one per CPU this process may run on). */
KLC_API int klc_cpu_pool_create(int threads, klc_cpu_pool **out);
KLC_API void klc_cpu_pool_free(klc_cpu_pool *pool);
KLC_API int klc_cpu_pool_threads(const klc_cpu_pool *pool);
/* The vector code the CPU kernels run here: "avx512" (AVX-512F, AVX2 and FMA present), "avx2" (AVX2 and FMA) or
 * "scalar"; KLC_CPU_ISA=avx2 or scalar forces a narrower one (for comparisons). */
KLC_API const char *klc_cpu_isa(void);
KLC_API const char *klc_cpu_last_error(void);

/* out[t] (+ out[t] when accumulate) = sum_s w[t, s] * W2_e (SiLU(W1_e x[t]) * (W3_e x[t])), e = idx[t, s],
 * on the CPU: klc_moe_experts_wq's arithmetic (weights fp32((q − z) · s) or fp32(e4m3(code)) · s, fp32 activations and
 * accumulation, each token's experts summed in slot order). x [T, d], idx and w [T, k], out [T, d]
 * are host memory; w13 is [E * 2I, d] (per expert W1 rows then W3 rows), w2 [E * d, I], both INT4,
 * both INT8 or both E4M3, groups multiples of 8 dividing the row. One call at a time per pool. */
KLC_API int klc_cpu_moe_experts(klc_cpu_pool *pool, const float *x, const int32_t *idx, const float *w, const klc_wq *w13,
                                const klc_wq *w2, float *out, int accumulate, int T, int d, int I, int E, int k);

#ifdef __cplusplus
}
#endif

#endif
