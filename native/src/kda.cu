// KDA (Kimi Delta Attention) kernels: chunked prefill (chunkwise WY/UT form, chunk 64) and the
// fused decode step. Math and notation follow spec sections 2.1, 2.3 and 2.4. State is fp32
// [B, H, K, V]; q, k, v and o are bf16; every exponent taken is of a non-positive quantity.
#include <cuda_bf16.h>

#include <string>

#include "internal.h"

namespace {

constexpr int KD = 128;   // key head dim
constexpr int VD = 128;   // value head dim
constexpr int CH = 64;    // chunk length
constexpr int KP = KD + 1;  // padded smem row strides: row- and column-wise reads hit distinct banks
constexpr int AP = CH + 1;
constexpr int PREFILL_THREADS = 256;
constexpr int STATE_BV = 32;  // value columns of the state owned by one CTA of the state pass
constexpr float LOG2E = 1.4426950408889634f;

// Per (sequence, head, chunk) workspace written by the intra-chunk kernel, read by the state pass.
constexpr int WS_W = 0;                     // W  = Tm (e^G * K)            [64][128]
constexpr int WS_U = WS_W + CH * KD;        // U  = Tm V                    [64][128]
constexpr int WS_QG = WS_U + CH * VD;       // scale * q * e^G              [64][128]
constexpr int WS_KG = WS_QG + CH * KD;      // k * e^(G_last - G)           [64][128]
constexpr int WS_AQK = WS_KG + CH * KD;     // intra-chunk q.k, lower incl. diagonal [64][64]
constexpr int WS_GL = WS_AQK + CH * CH;     // e^G_last                     [128]
constexpr int WS_PER_CHUNK = WS_GL + KD;

constexpr size_t PREFILL_SMEM = sizeof(float) * (2 * CH * KP + 2 * CH * AP + 2 * CH);
constexpr size_t STATE_SMEM = sizeof(float) * (2 * CH * KD + KD * STATE_BV + CH * (STATE_BV + 1));

__device__ __forceinline__ float softplus(float x) { return x > 20.f ? x : log1pf(expf(x)); }
__device__ __forceinline__ float sigmoid(float x) { return 1.f / (1.f + expf(-x)); }

__device__ __forceinline__ float warp_sum(float x) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) x += __shfl_xor_sync(0xffffffffu, x, o);
  return x;
}

// One CTA per (chunk, head, sequence): l2norm, gate, in-chunk cumsum, Aqk and Akk, the
// unit-lower-triangular inverse, W, U, and the decayed q/k the state pass needs.
__global__ void __launch_bounds__(PREFILL_THREADS) kda_intra(klc_kda_args a, int t0, int seg_chunks, float *ws) {
  const int ci = blockIdx.x, h = blockIdx.y, b = blockIdx.z, tid = threadIdx.x;
  const int lane = tid & 31, warp = tid >> 5;
  const int H = a.H, T = a.T;
  const int tstart = t0 + ci * CH;
  const int n = min(CH, T - tstart);

  extern __shared__ float smem[];
  float *sK = smem;                 // k, l2-normalised; later k * e^G
  float *sG = sK + CH * KP;         // in-chunk cumsum of g, log2 units; later v
  float *sA = sG + CH * KP;         // Akk (strictly lower)
  float *sX = sA + CH * AP;         // raw q (bf16) first; later Tm = (I + Akk)^-1 diag(beta)
  float *sBeta = sX + CH * AP;
  float *sQn = sBeta + CH;          // per-row l2 factor of q times scale
  __nv_bfloat16 *sQ = reinterpret_cast<__nv_bfloat16 *>(sX);

  const __nv_bfloat16 *q = static_cast<const __nv_bfloat16 *>(a.q);
  const __nv_bfloat16 *k = static_cast<const __nv_bfloat16 *>(a.k);
  const __nv_bfloat16 *v = static_cast<const __nv_bfloat16 *>(a.v);
  const float neg_a = a.raw_gates ? -expf(a.A_log[h]) : 0.f;

  for (int e = tid; e < CH * KD; e += PREFILL_THREADS) {
    const int r = e / KD, c = e % KD;
    const bool ok = r < n;
    const size_t gi = ((size_t)(b * T + tstart + r) * H + h) * KD + c;
    sK[r * KP + c] = ok ? __bfloat162float(k[gi]) : 0.f;
    sQ[r * KD + c] = ok ? q[gi] : __float2bfloat16(0.f);
    float g = 0.f;
    if (ok) {
      g = a.g[gi];
      if (a.raw_gates) g = neg_a * softplus(g + a.dt_bias[h * KD + c]);
    }
    sG[r * KP + c] = g * LOG2E;
  }
  if (tid < CH) {
    float bt = 0.f;
    if (tid < n) {
      bt = a.beta[(size_t)(b * T + tstart + tid) * H + h];
      if (a.raw_gates) bt = sigmoid(bt);
    }
    sBeta[tid] = bt;
  }
  __syncthreads();

  // Row norms (one warp per 8 rows) and the per-channel cumsum (threads 0..127, one channel each).
  for (int r = warp; r < CH; r += PREFILL_THREADS / 32) {
    float sk = 0.f, sq = 0.f;
    for (int c = lane; c < KD; c += 32) {
      float x = sK[r * KP + c];
      float y = __bfloat162float(sQ[r * KD + c]);
      sk += x * x;
      sq += y * y;
    }
    sk = warp_sum(sk);
    sq = warp_sum(sq);
    const float ik = a.l2norm_qk ? rsqrtf(sk + 1e-6f) : 1.f;
    const float iq = a.l2norm_qk ? rsqrtf(sq + 1e-6f) : 1.f;
    for (int c = lane; c < KD; c += 32) sK[r * KP + c] *= ik;
    if (lane == 0) sQn[r] = iq * a.scale;
  }
  if (tid < KD) {
    float run = 0.f;
    for (int r = 0; r < CH; ++r) {
      run += sG[r * KP + tid];
      sG[r * KP + tid] = run;
    }
  }
  __syncthreads();

  float *wsc = ws + ((size_t)(b * H + h) * seg_chunks + ci) * WS_PER_CHUNK;

  // Aqk[i][j] (j <= i) and Akk[i][j] (j < i) on the 136 lower 4x4 tiles. Each term is taken with
  // its own exp2(G_i - G_j) <= 0, so no gate strength can overflow (spec 2.4 numerical notes).
  if (tid < 136) {
    int ti = (int)((sqrtf(8.f * tid + 1.f) - 1.f) * 0.5f);
    while ((ti + 1) * (ti + 2) / 2 <= tid) ++ti;
    while (ti * (ti + 1) / 2 > tid) --ti;
    const int tj = tid - ti * (ti + 1) / 2;
    float aq[4][4] = {}, ak[4][4] = {};
    for (int c = 0; c < KD; ++c) {
      float qi[4], ki[4], gi[4], kj[4], gj[4];
#pragma unroll
      for (int r = 0; r < 4; ++r) {
        const int i = 4 * ti + r, j = 4 * tj + r;
        qi[r] = __bfloat162float(sQ[i * KD + c]);
        ki[r] = sK[i * KP + c];
        gi[r] = sG[i * KP + c];
        kj[r] = sK[j * KP + c];
        gj[r] = sG[j * KP + c];
      }
#pragma unroll
      for (int r = 0; r < 4; ++r)
#pragma unroll
        for (int s = 0; s < 4; ++s) {
          const float kd = kj[s] * exp2f(fminf(gi[r] - gj[s], 0.f));
          aq[r][s] = fmaf(qi[r], kd, aq[r][s]);
          ak[r][s] = fmaf(ki[r], kd, ak[r][s]);
        }
    }
#pragma unroll
    for (int r = 0; r < 4; ++r)
#pragma unroll
      for (int s = 0; s < 4; ++s) {
        const int i = 4 * ti + r, j = 4 * tj + s;
        if (j <= i) wsc[WS_AQK + i * CH + j] = aq[r][s] * sQn[i];
        if (j < i) sA[i * AP + j] = sBeta[i] * ak[r][s];
      }
  }
  __syncthreads();

  // Decayed copies: kg = k e^(G_last - G) and qg = scale q e^G for the state pass, k e^G for W.
  for (int e = tid; e < CH * KD; e += PREFILL_THREADS) {
    const int r = e / KD, c = e % KD;
    const float g = sG[r * KP + c], gl = sG[(CH - 1) * KP + c];
    const float kk = sK[r * KP + c];
    wsc[WS_KG + r * KD + c] = kk * exp2f(gl - g);
    wsc[WS_QG + r * KD + c] = __bfloat162float(sQ[r * KD + c]) * sQn[r] * exp2f(g);
    sK[r * KP + c] = kk * exp2f(g);
    if (r == 0) wsc[WS_GL + c] = exp2f(gl);
  }
  for (int e = tid; e < CH * CH; e += PREFILL_THREADS) {
    const int i = e / CH, j = e % CH;
    if (j > i) wsc[WS_AQK + e] = 0.f;
  }
  __syncthreads();

  // v goes where G was; the forward substitution X = (I + Akk)^-1 runs column-wise, four lanes
  // per column, so warps need no block-wide barrier between rows.
  for (int e = tid; e < CH * VD; e += PREFILL_THREADS) {
    const int r = e / VD, c = e % VD;
    sG[r * KP + c] = r < n ? __bfloat162float(v[((size_t)(b * T + tstart + r) * H + h) * VD + c]) : 0.f;
  }
  {
    const int j = warp * 8 + (lane >> 2), part = lane & 3;
    for (int i = 0; i < CH; ++i) {
      float s = 0.f;
      if (i > j)
        for (int m = j + part; m < i; m += 4) s = fmaf(sA[i * AP + m], m == j ? 1.f : sX[m * AP + j], s);
      s += __shfl_xor_sync(0xffffffffu, s, 1);
      s += __shfl_xor_sync(0xffffffffu, s, 2);
      if (part == 0) sX[i * AP + j] = i > j ? -s : (i == j ? 1.f : 0.f);
      __syncwarp();
    }
  }
  __syncthreads();
  for (int e = tid; e < CH * CH; e += PREFILL_THREADS) {
    const int i = e / CH, j = e % CH;
    sX[i * AP + j] *= sBeta[j];
  }
  __syncthreads();

  // W = Tm (k e^G), U = Tm v. Rows interleaved over warps to balance the triangular work.
  {
    float accw[8][4] = {}, accu[8][4] = {};
    const int jmax = CH - 8 + warp;
    for (int j = 0; j <= jmax; ++j) {
      float kj[4], vj[4];
#pragma unroll
      for (int m = 0; m < 4; ++m) {
        kj[m] = sK[j * KP + lane + 32 * m];
        vj[m] = sG[j * KP + lane + 32 * m];
      }
#pragma unroll
      for (int r = 0; r < 8; ++r) {
        const float t = sX[(warp + 8 * r) * AP + j];
#pragma unroll
        for (int m = 0; m < 4; ++m) {
          accw[r][m] = fmaf(t, kj[m], accw[r][m]);
          accu[r][m] = fmaf(t, vj[m], accu[r][m]);
        }
      }
    }
#pragma unroll
    for (int r = 0; r < 8; ++r)
#pragma unroll
      for (int m = 0; m < 4; ++m) {
        const int i = warp + 8 * r, c = lane + 32 * m;
        wsc[WS_W + i * KD + c] = accw[r][m];
        wsc[WS_U + i * VD + c] = accu[r][m];
      }
  }
}

// Sequential over the chunks of a segment, one CTA per (32 value columns, head, sequence):
// Vn = U - W S, o = qg S + Aqk Vn, S = e^G_last * S + kg^T Vn. Each operand is first copied
// into shared memory by the whole CTA (many independent loads in flight), because reading it
// row by row from L2 inside the loops left every step waiting on one load at a time.
__device__ __forceinline__ void stage(float *dst, const float *src, int nfloats) {
  const float4 *s4 = reinterpret_cast<const float4 *>(src);
  float4 *d4 = reinterpret_cast<float4 *>(dst);
  for (int e = threadIdx.x; e < nfloats / 4; e += PREFILL_THREADS) d4[e] = __ldcg(s4 + e);
}

__global__ void __launch_bounds__(PREFILL_THREADS) kda_state_pass(klc_kda_args a, int t0, int seg_chunks, const float *ws) {
  const int v0 = blockIdx.x * STATE_BV, h = blockIdx.y, b = blockIdx.z;
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int H = a.H, T = a.T;
  extern __shared__ float smem[];
  float *sW = smem;                 // W then Aqk then kg
  float *sQG = sW + CH * KD;        // qg
  float(*sS)[STATE_BV] = reinterpret_cast<float(*)[STATE_BV]>(sQG + CH * KD);
  float(*sVn)[STATE_BV + 1] = reinterpret_cast<float(*)[STATE_BV + 1]>(sQG + CH * KD + KD * STATE_BV);

  float *state = a.state + (size_t)(b * H + h) * KD * VD;
  for (int e = tid; e < KD * STATE_BV; e += PREFILL_THREADS) {
    const int c = e / STATE_BV, vv = e % STATE_BV;
    sS[c][vv] = state[c * VD + v0 + vv];
  }

  __nv_bfloat16 *o = static_cast<__nv_bfloat16 *>(a.o);
  const int nchunks = min(seg_chunks, (T - t0 + CH - 1) / CH);
  for (int ci = 0; ci < nchunks; ++ci) {
    const float *wsc = ws + ((size_t)(b * H + h) * seg_chunks + ci) * WS_PER_CHUNK;
    const int tstart = t0 + ci * CH;
    const int n = min(CH, T - tstart);

    float u[8];
#pragma unroll
    for (int r = 0; r < 8; ++r) u[r] = __ldcg(wsc + WS_U + (warp + 8 * r) * VD + v0 + lane);
    stage(sW, wsc + WS_W, CH * KD);
    stage(sQG, wsc + WS_QG, CH * KD);
    __syncthreads();

    float acc_v[8], acc_o[8];
#pragma unroll
    for (int r = 0; r < 8; ++r) {
      acc_v[r] = 0.f;
      acc_o[r] = 0.f;
    }
    for (int c = 0; c < KD; c += 4) {
      const float s0 = sS[c][lane], s1 = sS[c + 1][lane], s2 = sS[c + 2][lane], s3 = sS[c + 3][lane];
#pragma unroll
      for (int r = 0; r < 8; ++r) {
        const int i = warp + 8 * r;
        const float4 w = *reinterpret_cast<const float4 *>(sW + i * KD + c);
        const float4 qg = *reinterpret_cast<const float4 *>(sQG + i * KD + c);
        acc_v[r] = fmaf(w.x, s0, fmaf(w.y, s1, fmaf(w.z, s2, fmaf(w.w, s3, acc_v[r]))));
        acc_o[r] = fmaf(qg.x, s0, fmaf(qg.y, s1, fmaf(qg.z, s2, fmaf(qg.w, s3, acc_o[r]))));
      }
    }
#pragma unroll
    for (int r = 0; r < 8; ++r) sVn[warp + 8 * r][lane] = u[r] - acc_v[r];
    __syncthreads();
    stage(sW, wsc + WS_AQK, CH * CH);
    stage(sQG, wsc + WS_KG, CH * KD);
    float gl[16];
#pragma unroll
    for (int m = 0; m < 16; ++m) gl[m] = __ldcg(wsc + WS_GL + 16 * warp + m);
    __syncthreads();

    // Intra-chunk output; Aqk is zero above the diagonal, so the loop may run past row i.
    const int jmax = CH - 8 + warp;
    for (int j = 0; j <= jmax; j += 4) {
      const float n0 = sVn[j][lane], n1 = sVn[j + 1][lane], n2 = sVn[j + 2][lane], n3 = sVn[j + 3][lane];
#pragma unroll
      for (int r = 0; r < 8; ++r) {
        const int i = warp + 8 * r;
        const float4 p = *reinterpret_cast<const float4 *>(sW + i * CH + j);
        acc_o[r] = fmaf(p.x, n0, fmaf(p.y, n1, fmaf(p.z, n2, fmaf(p.w, n3, acc_o[r]))));
      }
    }
#pragma unroll
    for (int r = 0; r < 8; ++r) {
      const int i = warp + 8 * r;
      if (i < n) o[((size_t)(b * T + tstart + i) * H + h) * VD + v0 + lane] = __float2bfloat16(acc_o[r]);
    }

    // State update: rows c = 16*warp .. 16*warp+15 of S (owned by this warp alone), column `lane`.
    {
      float acc[16];
#pragma unroll
      for (int m = 0; m < 16; ++m) acc[m] = gl[m] * sS[16 * warp + m][lane];
      for (int i = 0; i < CH; ++i) {
        const float vn = sVn[i][lane];
        const float4 *kg4 = reinterpret_cast<const float4 *>(sQG + i * KD + 16 * warp);
#pragma unroll
        for (int m = 0; m < 4; ++m) {
          const float4 kg = kg4[m];
          acc[4 * m] = fmaf(kg.x, vn, acc[4 * m]);
          acc[4 * m + 1] = fmaf(kg.y, vn, acc[4 * m + 1]);
          acc[4 * m + 2] = fmaf(kg.z, vn, acc[4 * m + 2]);
          acc[4 * m + 3] = fmaf(kg.w, vn, acc[4 * m + 3]);
        }
      }
#pragma unroll
      for (int m = 0; m < 16; ++m) sS[16 * warp + m][lane] = acc[m];
    }
    __syncthreads();
  }

  for (int e = tid; e < KD * STATE_BV; e += PREFILL_THREADS) {
    const int c = e / STATE_BV, vv = e % STATE_BV;
    state[c * VD + v0 + vv] = sS[c][vv];
  }
}

// One decode step. One CTA of 128 threads per (32 value columns, head, sequence): warp w owns
// key rows 32w..32w+31 of those columns, lane = column, so the K reductions are in-thread plus
// one exchange through shared memory.
__global__ void __launch_bounds__(128) kda_decode_step(klc_kda_args a) {
  const int v0 = blockIdx.x * 32, h = blockIdx.y, b = blockIdx.z;
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int H = a.H;
  __shared__ float sq[KD], sk[KD], salpha[KD], sred[2][4][32], snorm[2][4];
  const size_t row = (size_t)b * H + h;

  {
    const float qv = __bfloat162float(static_cast<const __nv_bfloat16 *>(a.q)[row * KD + tid]);
    const float kv = __bfloat162float(static_cast<const __nv_bfloat16 *>(a.k)[row * KD + tid]);
    float g = a.g[row * KD + tid];
    if (a.raw_gates) g = -expf(a.A_log[h]) * softplus(g + a.dt_bias[h * KD + tid]);
    salpha[tid] = expf(g);
    const float wq = warp_sum(qv * qv), wk = warp_sum(kv * kv);
    if (lane == 0) {
      snorm[0][warp] = wq;
      snorm[1][warp] = wk;
    }
    __syncthreads();
    const float nq = a.l2norm_qk ? rsqrtf(snorm[0][0] + snorm[0][1] + snorm[0][2] + snorm[0][3] + 1e-6f) : 1.f;
    const float nk = a.l2norm_qk ? rsqrtf(snorm[1][0] + snorm[1][1] + snorm[1][2] + snorm[1][3] + 1e-6f) : 1.f;
    sq[tid] = qv * nq * a.scale;
    sk[tid] = kv * nk;
  }
  float beta = a.beta[row];
  if (a.raw_gates) beta = sigmoid(beta);
  __syncthreads();

  float *S = a.state + row * KD * VD + v0 + lane;
  float s[32];
  float part = 0.f;
#pragma unroll
  for (int m = 0; m < 32; ++m) {
    const int c = 32 * warp + m;
    s[m] = S[(size_t)c * VD] * salpha[c];
    part = fmaf(s[m], sk[c], part);
  }
  sred[0][warp][lane] = part;
  __syncthreads();
  const float vv = __bfloat162float(static_cast<const __nv_bfloat16 *>(a.v)[row * VD + v0 + lane]);
  const float u = beta * (vv - (sred[0][0][lane] + sred[0][1][lane] + sred[0][2][lane] + sred[0][3][lane]));
  part = 0.f;
#pragma unroll
  for (int m = 0; m < 32; ++m) {
    const int c = 32 * warp + m;
    s[m] = fmaf(sk[c], u, s[m]);
    part = fmaf(s[m], sq[c], part);
    S[(size_t)c * VD] = s[m];
  }
  sred[1][warp][lane] = part;
  __syncthreads();
  if (warp == 0) {
    const float out = sred[1][0][lane] + sred[1][1][lane] + sred[1][2][lane] + sred[1][3][lane];
    static_cast<__nv_bfloat16 *>(a.o)[row * VD + v0 + lane] = __float2bfloat16(out);
  }
}

}  // namespace

namespace klc {

cudaError_t kda_probe_image() {
  cudaFuncAttributes attr;
  cudaError_t e = cudaFuncGetAttributes(&attr, kda_intra);
  if (e != cudaSuccess) return e;
  e = cudaFuncSetAttribute(kda_intra, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)PREFILL_SMEM);
  if (e != cudaSuccess) return e;
  return cudaFuncSetAttribute(kda_state_pass, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)STATE_SMEM);
}

int kda_check_args(const klc_kda_args *a, bool decode) {
  const char *what = decode ? "KDA decode" : "KDA prefill";
  if (!a) return fail(KLC_E_ARG, std::string(what) + ": arguments are null");
  if (a->K != KD || a->V != VD)
    return fail(KLC_E_ARG, std::string(what) + ": head dims K=" + std::to_string(a->K) + ", V=" + std::to_string(a->V) +
                               " are not built; this library supports K = V = 128 (Kimi Linear).");
  if (a->B < 1 || a->H < 1 || a->T < 1 || a->B > 65535 || a->H > 65535)
    return fail(KLC_E_ARG, std::string(what) + ": needs 1 <= B, H <= 65535 and T >= 1, got B=" + std::to_string(a->B) +
                               " H=" + std::to_string(a->H) + " T=" + std::to_string(a->T));
  if (decode && a->T != 1) return fail(KLC_E_ARG, "KDA decode: T must be 1, got " + std::to_string(a->T));
  if (!a->q || !a->k || !a->v || !a->g || !a->beta || !a->state || !a->o)
    return fail(KLC_E_ARG, std::string(what) + ": q, k, v, g, beta, state and o must all be set");
  if (a->raw_gates && (!a->A_log || !a->dt_bias))
    return fail(KLC_E_ARG, std::string(what) + ": raw_gates needs A_log and dt_bias");
  return KLC_OK;
}

int kda_prefill(klc_ctx *ctx, const klc_kda_args *a) {
  int rc = kda_check_args(a, false);
  if (rc) return rc;
  const int total_chunks = (a->T + CH - 1) / CH;
  int seg_chunks = ctx->max_segment_tokens / (CH * a->B);
  if (seg_chunks < 1) seg_chunks = 1;
  if (seg_chunks > total_chunks) seg_chunks = total_chunks;
  const size_t need = (size_t)a->B * a->H * seg_chunks * WS_PER_CHUNK;
  if (need > ctx->kda_ws_floats) {
    if (ctx->kda_ws) {
      cudaStreamSynchronize(ctx->stream);
      cudaFree(ctx->kda_ws);
      ctx->kda_ws = nullptr;
      ctx->kda_ws_floats = 0;
    }
    cudaError_t e = cudaMalloc(&ctx->kda_ws, need * sizeof(float));
    if (e != cudaSuccess)
      return fail_cuda(e, ("allocating the KDA prefill workspace (" + std::to_string(need * 4 >> 20) + " MiB)").c_str());
    ctx->kda_ws_floats = need;
  }
  for (int t0 = 0; t0 < a->T; t0 += seg_chunks * CH) {
    const int chunks = min(seg_chunks, (a->T - t0 + CH - 1) / CH);
    kda_intra<<<dim3(chunks, a->H, a->B), PREFILL_THREADS, PREFILL_SMEM, ctx->stream>>>(*a, t0, seg_chunks, ctx->kda_ws);
    kda_state_pass<<<dim3(VD / STATE_BV, a->H, a->B), PREFILL_THREADS, STATE_SMEM, ctx->stream>>>(*a, t0, seg_chunks, ctx->kda_ws);
  }
  cudaError_t e = cudaGetLastError();
  return e == cudaSuccess ? KLC_OK : fail_cuda(e, "launching the KDA prefill");
}

int kda_decode(klc_ctx *ctx, const klc_kda_args *a) {
  int rc = kda_check_args(a, true);
  if (rc) return rc;
  kda_decode_step<<<dim3(VD / 32, a->H, a->B), 128, 0, ctx->stream>>>(*a);
  cudaError_t e = cudaGetLastError();
  return e == cudaSuccess ? KLC_OK : fail_cuda(e, "launching the KDA decode step");
}

}  // namespace klc
