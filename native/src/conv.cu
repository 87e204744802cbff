// The short causal depthwise conv + SiLU of the KDA layers' q, k and v projections, with the
// tails of raw inputs it carries from call to call.
#include <cuda_bf16.h>

#include "internal.h"
#include "ops_common.cuh"

namespace {

using bf16 = __nv_bfloat16;
using namespace klc_ops;

// Short causal depthwise conv + SiLU over C channels (q, k and v projections side by side),
// one thread per channel. tail [C, W-1] holds the inputs before x (oldest first) and is advanced.
// Channel c belongs to stream s = c / split and is written to out + s * T * split.
// One thread per (token, channel): output t reads the raw inputs t-W+1..t, taking those before this
// call from tail, so every token runs at once (a thread per channel walking the tokens left the GPU
// mostly idle: 20 ms per KDA layer at 32k tokens). The tail moves on in short_conv_tail_kernel.
__global__ void short_conv_kernel(const float *x, const float *w, const float *tail, float *yf, bf16 *yb, int T, int C, int W,
                                  int split) {
  const size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= (size_t)T * C) return;
  const int t = (int)(i / C), c = (int)(i % C);
  const int keep = W - 1;
  const float *wc = w + (size_t)c * W;
  // Same arithmetic order as the recurrent form: the current tap first, then the oldest input on.
  float acc = wc[keep] * x[i];
  for (int j = 0; j < keep; ++j) {
    const int p = t - keep + j;
    acc = fmaf(wc[j], p >= 0 ? x[(size_t)p * C + c] : tail[(size_t)c * keep + p + keep], acc);
  }
  const float v = siluf_(acc);
  const int s = c / split, cc = c % split;
  const size_t o = (size_t)s * T * split + (size_t)t * split + cc;
  if (yf) yf[o] = v;
  if (yb) yb[o] = __float2bfloat16(v);
}

// tail[c, :] becomes the last W-1 inputs, of this call or (when T < W-1) partly still the old tail:
// entry j reads entry j+T, which a lower j never overwrites.
__global__ void short_conv_tail_kernel(const float *x, float *tail, int T, int C, int keep) {
  const int c = blockIdx.x * blockDim.x + threadIdx.x;
  if (c >= C) return;
  for (int j = 0; j < keep; ++j) {
    const int p = T - keep + j;
    tail[(size_t)c * keep + j] = p >= 0 ? x[(size_t)p * C + c] : tail[(size_t)c * keep + p + keep];
  }
}

using klc::launched;

}  // namespace

using namespace klc;

extern "C" {

int klc_short_conv(klc_ctx *ctx, const float *x, const float *w, float *tail, float *y_f32, void *y_bf16, int T, int C, int W,
                   int split) {
  int rc = use_device(ctx);
  if (rc) return rc;
  if (!x || !w || !tail || (!y_f32 && !y_bf16) || T < 1 || C < 1 || W < 1 || W > 8 || split < 1 || C % split)
    return fail(KLC_E_ARG, "klc_short_conv: bad pointers or shape (kernel sizes 1..8, C a multiple of split)");
  short_conv_kernel<<<blocks_for((size_t)T * C, 256), 256, 0, ctx->stream>>>(x, w, tail, y_f32, static_cast<bf16 *>(y_bf16), T, C, W,
                                                                              split);
  if ((rc = launched("the short convolution"))) return rc;
  if (W == 1) return KLC_OK;
  short_conv_tail_kernel<<<(C + 127) / 128, 128, 0, ctx->stream>>>(x, tail, T, C, W - 1);
  return launched("the short convolution's state");
}

}  // extern "C"
