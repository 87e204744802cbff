// The KDA token recurrence with fp32 q, k, v and o for any head size K <= 128 (klc_kda_recurrent_f32):
// the exact form of spec 2.1, beside the bf16 chunked prefill and decode of kda.cu.
#include "internal.h"
#include "ops_common.cuh"

namespace {

using namespace klc_ops;

__device__ __forceinline__ float softplusf_(float x) { return x > 20.f ? x : log1pf(expf(x)); }

// KDA token recurrence in fp32 for any K, V <= 128 (spec 2.1 steps 4-8): one warp per
// (head, 32 value columns); lane j keeps its state column S[:, j] in registers across tokens.
constexpr int KMAX = 128;
__global__ void __launch_bounds__(32) kda_recurrent_kernel(klc_kda_args a) {
  const int h = blockIdx.x, lane = threadIdx.x, b = blockIdx.z;
  const int j = blockIdx.y * 32 + lane;
  const int H = a.H, K = a.K, V = a.V;
  __shared__ float sq[KMAX], sk[KMAX], sa[KMAX];
  const float *q = static_cast<const float *>(a.q);
  const float *k = static_cast<const float *>(a.k);
  const float *v = static_cast<const float *>(a.v);
  float *o = static_cast<float *>(a.o);
  float *S = a.state + ((size_t)b * H + h) * K * V;
  float s[KMAX];
#pragma unroll
  for (int c = 0; c < KMAX; ++c) s[c] = (c < K && j < V) ? S[(size_t)c * V + j] : 0.f;
  const float neg_a = a.raw_gates ? -expf(a.A_log[h]) : 0.f;
  for (int t = 0; t < a.T; ++t) {
    const size_t base = ((size_t)(b * a.T + t) * H + h);
    float nq = 0.f, nk = 0.f;
    for (int c = lane; c < K; c += 32) {
      const float qv = q[base * K + c], kv = k[base * K + c];
      sq[c] = qv;
      sk[c] = kv;
      nq += qv * qv;
      nk += kv * kv;
      float g = a.g[base * K + c];
      if (a.raw_gates) g = neg_a * softplusf_(g + a.dt_bias[h * K + c]);
      sa[c] = expf(g);
    }
    nq = warp_sum(nq);
    nk = warp_sum(nk);
    const float iq = (a.l2norm_qk ? rsqrtf(nq + 1e-6f) : 1.f) * a.scale;
    const float ik = a.l2norm_qk ? rsqrtf(nk + 1e-6f) : 1.f;
    float beta = a.beta[base];
    if (a.raw_gates) beta = sigmoidf_(beta);
    __syncwarp();
    float u = 0.f;
#pragma unroll
    for (int c = 0; c < KMAX; ++c) {
      if (c < K) {
        s[c] *= sa[c];
        u = fmaf(s[c], sk[c] * ik, u);
      }
    }
    u = (j < V ? v[base * V + j] : 0.f) - u;
    const float bu = beta * u;
    float out = 0.f;
#pragma unroll
    for (int c = 0; c < KMAX; ++c) {
      if (c < K) {
        s[c] = fmaf(sk[c] * ik, bu, s[c]);
        out = fmaf(s[c], sq[c] * iq, out);
      }
    }
    if (j < V) o[base * V + j] = out;
    __syncwarp();
  }
  if (j < V)
#pragma unroll
    for (int c = 0; c < KMAX; ++c)
      if (c < K) S[(size_t)c * V + j] = s[c];
}

using klc::launched;

}  // namespace

using namespace klc;

extern "C" {

int klc_kda_recurrent_f32(klc_ctx *ctx, const klc_kda_args *a) {
  int rc = use_device(ctx);
  if (rc) return rc;
  if (!a || a->K < 1 || a->K > KMAX || a->V < 1 || a->B < 1 || a->H < 1 || a->T < 1 || a->B > 65535 || a->V > 32 * 65535)
    return fail(KLC_E_ARG, "KDA recurrence: needs 1 <= K <= 128, V >= 1, B, H, T >= 1");
  if (!a->q || !a->k || !a->v || !a->g || !a->beta || !a->state || !a->o)
    return fail(KLC_E_ARG, "KDA recurrence: q, k, v, g, beta, state and o must all be set");
  if (a->raw_gates && (!a->A_log || !a->dt_bias)) return fail(KLC_E_ARG, "KDA recurrence: raw_gates needs A_log and dt_bias");
  kda_recurrent_kernel<<<dim3(a->H, (a->V + 31) / 32, a->B), 32, 0, ctx->stream>>>(*a);
  return launched("the KDA recurrence");
}

}  // extern "C"
