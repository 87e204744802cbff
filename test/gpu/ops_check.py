"""Device check of single layer kernels (native/src/mla.cu, linear.cu, moe.cu, conv.cu, norm.cu and
the paths they hand over to) against float64 torch references:
MLA attention over the latent cache (prefill with and without a cached prefix at Kimi's shapes,
up to 32k tokens; decode over a long cache, split over the keys) and the bf16-weight linear layer
at the model's shapes; then the tensor-core forms (cuBLAS, bf16 activations) of the linear layer,
the grouped MoE experts and MLA prefill attention (absorbed, and flash-style over up-projected heads; with
--mla-heads only the latter); the small-batch paths (sync-free MoE for few token-expert pairs, the GEMV for
M <= 8) in both modes, timed against the general paths (KLC_SMALL_BATCH=0) with CUDA events (with --small-batch
only these and the linear/MoE cases). The MLA cases run over fp32 and bf16 caches (KLC_CACHE_F32/BF16: the
reference then uses the bf16 values, so the tolerance is the kernel's own), and klc_mla_append_latents is checked
against a float64 norm, its bf16 rows against torch's round-to-nearest-even of it. Prints one line per case and
exits non-zero when a case fails."""
import os
import ctypes
import json
import sys

import torch

from klc_cuda import Klc

c_p, c_i, c_f, c_z, c_ll = ctypes.c_void_p, ctypes.c_int, ctypes.c_float, ctypes.c_size_t, ctypes.c_longlong
KLC_CACHE_F32, KLC_CACHE_BF16 = 0, 1
results = []
# Short conv shapes: decode-sized calls shorter than the kernel's history, the bundled model's width,
# and a Kimi-width slice (12288 channels = q, k, v of 32 heads x 128) longer than one chunk.
CONV_CASES = ((1, 384, 4, 128), (2, 384, 4, 128), (65, 96, 4, 32), (4096, 12288, 4, 4096))


def check(name, err, tol, **extra):
    ok = err < tol
    results.append({"case": name, "error": err, "tol": tol, "ok": ok, **extra})
    print(f"{'ok  ' if ok else 'FAIL'} {name}: error {err:.2e} (tol {tol:.0e}) {extra if extra else ''}", flush=True)


def mla_reference(q, cache, rows_idx, H, start, L, scale):
    """float64 softmax attention of the selected query rows (r = t*H + h) over their visible keys."""
    out = []
    for r in rows_idx:
        t = r // H
        keys = cache[: start + t + 1].double()
        s = (keys @ q[r].double()) * scale
        p = torch.softmax(s, 0)
        out.append(p @ keys[:, :L])
    return torch.stack(out)


def cache_of(cache, cache_bf16):
    """The cache as the kernels take it, and its type code."""
    return (cache.to(torch.bfloat16), KLC_CACHE_BF16) if cache_bf16 else (cache, KLC_CACHE_F32)


def mla_case(klc, T, H, start, D=576, L=512, sample=48, seed=0, tol=1e-4, label="", cache_bf16=False):
    g = torch.Generator(device="cuda").manual_seed(seed)
    total = start + T
    cache, ctype = cache_of(torch.randn(total, D, device="cuda", generator=g), cache_bf16)
    q = torch.randn(T * H, D, device="cuda", generator=g) * 0.6
    out = torch.empty(T * H, L, device="cuda")
    rows = T * H
    splits = klc.lib.klc_mla_splits(klc.ctx, rows, total)
    klc.lib.klc_mla_workspace_bytes.restype = c_z
    ws_bytes = klc.lib.klc_mla_workspace_bytes(rows, L, splits)
    ws = torch.empty(ws_bytes // 4 + 1, device="cuda")
    scale = 192 ** -0.5
    torch.cuda.synchronize()
    start_ev, stop_ev = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start_ev.record()
    klc._check(klc.lib.klc_mla_attention(klc.ctx, c_p(q.data_ptr()), c_p(cache.data_ptr()), ctype, c_p(out.data_ptr()),
                                         c_p(ws.data_ptr()), c_z(ws_bytes), T, H, start, D, L, c_f(scale), splits))
    stop_ev.record()
    klc.sync()
    ms = start_ev.elapsed_time(stop_ev)
    idx = sorted(set([0, 1, rows - 1, rows - 2] + torch.randint(0, rows, (sample,), generator=torch.Generator().manual_seed(seed)).tolist()))
    want = mla_reference(q, cache, idx, H, start, L, scale)
    got = out[idx].double()
    err = ((got - want).abs().max() / want.abs().max()).item()
    kind = "bf16 cache " if cache_bf16 else ""
    check(f"{label}{kind}mla T={T} H={H} start={start} D={D} L={L} splits={splits}", err, tol, ms=round(ms, 2), rows_checked=len(idx))


def append_case(klc, rows, D=576, L=512, eps=1e-6, seed=19):
    """klc_mla_append_latents at an offset into a cache, both types: row r = [RMSNorm(ckv[r, :L]) * w ; ckv[r, L:]].
    fp32 rows against float64 (1e-6); bf16 rows against torch's round-to-nearest-even of the float64 rows, where
    at most a value whose fp32 result lies within an ulp of a rounding tie may differ by one bf16 step (2^-8)."""
    g = torch.Generator(device="cuda").manual_seed(seed)
    ckv = torch.randn(rows, D, device="cuda", generator=g) * 3
    w = torch.rand(L, device="cuda", generator=g) + 0.5
    x = ckv.double()
    want = torch.cat([x[:, :L] * torch.rsqrt((x[:, :L] ** 2).mean(1, keepdim=True) + eps) * w.double(), x[:, L:]], 1)
    for cache_bf16 in (False, True):
        dtype = torch.bfloat16 if cache_bf16 else torch.float32
        cache = torch.full((rows + 3, D), float("nan"), device="cuda", dtype=dtype)
        klc._check(klc.lib.klc_mla_append_latents(klc.ctx, c_p(ckv.data_ptr()), c_p(w.data_ptr()), c_p(cache[3:].data_ptr()),
                                                  KLC_CACHE_BF16 if cache_bf16 else KLC_CACHE_F32, rows, D, L, c_f(eps)))
        klc.sync()
        untouched = bool(torch.isnan(cache[:3]).all().item())
        got = cache[3:].double()
        if cache_bf16:
            rounded = want.to(torch.bfloat16).double()
            mismatch = (got != rounded).double().mean().item()
            err = ((got - rounded).abs() / rounded.abs().clamp_min(1e-30)).max().item()
            check(f"append latents rows={rows} bf16 cache vs rounded float64", err, 2 ** -6, mismatched=mismatch, untouched=untouched)
            check(f"append latents rows={rows} bf16 cache: rows off by one step, share", mismatch, 1e-3)
        else:
            err = ((got - want).abs().max() / want.abs().max()).item()
            check(f"append latents rows={rows} fp32 cache vs float64", err, 1e-6, untouched=untouched)
        check(f"append latents rows={rows} {'bf16' if cache_bf16 else 'fp32'}: rows before the offset untouched", 0.0 if untouched else 1.0, 0.5)


def linear_case(klc, M, N, K, seed=1):
    g = torch.Generator(device="cuda").manual_seed(seed)
    x = torch.randn(M, K, device="cuda", generator=g)
    w = (torch.randn(N, K, device="cuda", generator=g) * K ** -0.5).to(torch.bfloat16)
    y = torch.empty(M, N, device="cuda")
    klc._check(klc.lib.klc_linear(klc.ctx, c_p(x.data_ptr()), K, c_p(w.data_ptr()), c_p(y.data_ptr()), N, M, N, K, 1,
                                  c_ll(0), c_ll(0), c_ll(0), 0, 0))
    klc.sync()
    want = x.double() @ w.double().T
    err = ((y.double() - want).abs().max() / want.abs().max()).item()
    check(f"linear M={M} N={N} K={K}", err, 1e-5)


def set_tensor_cores(klc, on):
    klc._check(klc.lib.klc_set_tensor_cores(klc.ctx, int(on)))
    klc.lib.klc_gemm_engine.restype = ctypes.c_char_p
    return klc.lib.klc_gemm_engine(klc.ctx).decode()


def bf16(x):
    return x.to(torch.bfloat16).double()


def tc_linear_case(klc, M, N, K, batch=1, seed=2):
    """Tensor-core linear layer, strided batches as MLA's per-head products use them: x_b = x[:, b*K:],
    y_b = y[:, b*N:]. Reference: float64 products of the bf16-rounded activations, or of the fp32 ones for
    M <= 8, which the GEMV serves in every mode (so this fails if cuBLAS took such a call)."""
    g = torch.Generator(device="cuda").manual_seed(seed)
    x = torch.randn(M, batch * K, device="cuda", generator=g)
    w = (torch.randn(batch, N, K, device="cuda", generator=g) * K ** -0.5).to(torch.bfloat16)
    y = torch.full((M, batch * N), 0.5, device="cuda")
    klc._check(klc.lib.klc_linear(klc.ctx, c_p(x.data_ptr()), batch * K, c_p(w.data_ptr()), c_p(y.data_ptr()), batch * N, M, N,
                                  K, batch, c_ll(K), c_ll(N * K), c_ll(N), 1, 0))
    klc.sync()
    rounded = bf16 if M > 8 else (lambda t: t.double())
    want = torch.cat([0.5 + rounded(x[:, b * K:(b + 1) * K]) @ w[b].double().T for b in range(batch)], 1)
    err = ((y.double() - want).abs().max() / want.abs().max()).item()
    check(f"tensor-core linear M={M} N={N} K={K} batch={batch} accumulate", err, 1e-5 if M <= 8 else 1e-4)


def tc_moe_case(klc, T, d=2304, I=1024, E=256, k=8, seed=3):
    """Grouped tensor-core MoE against float64 experts on bf16-rounded inputs; the SwiGLU output is
    rounded to bf16 on the GPU, hence a bf16-level tolerance. The exact kernel runs the same call.
    Few pairs (T=1) take the small-batch path in both modes (see small_moe_case for its tight check)."""
    g = torch.Generator(device="cuda").manual_seed(seed)
    x = torch.randn(T, d, device="cuda", generator=g)
    w13 = (torch.randn(E, 2 * I, d, device="cuda", generator=g) * d ** -0.5).to(torch.bfloat16)
    w2 = (torch.randn(E, d, I, device="cuda", generator=g) * I ** -0.5).to(torch.bfloat16)
    idx = torch.rand(T, E, device="cuda", generator=g).topk(k, 1).indices.sort(1).values.to(torch.int32).contiguous()
    wt = torch.rand(T, k, device="cuda", generator=g)
    klc.lib.klc_moe_workspace_bytes.restype = c_z
    ws_bytes = klc.lib.klc_moe_workspace_bytes(T, d, I, E, k)
    ws = torch.empty(ws_bytes, dtype=torch.uint8, device="cuda")
    outs = []
    for on in (True, False):
        set_tensor_cores(klc, on)
        out = torch.zeros(T, d, device="cuda")
        klc._check(klc.lib.klc_moe_experts(klc.ctx, c_p(x.data_ptr()), c_p(idx.data_ptr()), c_p(wt.data_ptr()), c_p(w13.data_ptr()),
                                           c_p(w2.data_ptr()), c_p(out.data_ptr()), c_p(ws.data_ptr()), c_z(ws_bytes), T, d, I, E, k, 0))
        klc.sync()
        outs.append(out.double())
    set_tensor_cores(klc, True)
    rows = torch.randperm(T, generator=torch.Generator().manual_seed(seed))[:64].tolist()
    want = torch.zeros(len(rows), d, dtype=torch.float64, device="cuda")
    for n, t in enumerate(rows):
        xt = bf16(x[t])
        for s in range(k):
            e = int(idx[t, s])
            gu = w13[e].double() @ xt
            h = torch.nn.functional.silu(gu[:I]) * gu[I:]
            want[n] += wt[t, s].double() * (w2[e].double() @ h)
    scale = want.abs().max()
    err = ((outs[0][rows] - want).abs().max() / scale).item()
    check(f"tensor-core MoE T={T} E={E} top-{k} d={d} I={I}", err, 1e-2)
    err = ((outs[0] - outs[1]).abs().max() / outs[1].abs().max()).item()
    check(f"tensor-core MoE T={T} vs the exact fp32 kernel", err, 1e-2)


def timed_ms(klc, fn, iters=20):
    """Milliseconds per call of fn (klc calls) over `iters` calls after one warm-up, with CUDA events
    on a torch stream the context is switched onto, so that the events bracket exactly its work."""
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    ev = [torch.cuda.Event(enable_timing=True) for _ in range(2)]
    with torch.cuda.stream(stream):
        klc.set_stream(stream.cuda_stream)
        try:
            fn()
            ev[0].record()
            for _ in range(iters):
                fn()
            ev[1].record()
            ev[1].synchronize()
        finally:
            klc.set_stream(0)
    torch.cuda.current_stream().wait_stream(stream)
    return ev[0].elapsed_time(ev[1]) / iters


def copy_bandwidth():
    """Device copy bandwidth in bytes/s, reads plus writes (as test/gpu/run-speed.sh measures it)."""
    x = torch.empty(2 ** 28, device="cuda")
    y = torch.empty_like(x)
    y.copy_(x)
    torch.cuda.synchronize()
    a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    a.record()
    for _ in range(20):
        y.copy_(x)
    b.record()
    torch.cuda.synchronize()
    return 2 * 2 ** 30 * 20 / (a.elapsed_time(b) / 1e3)


class general_paths:
    """KLC_SMALL_BATCH=0 for the duration: the library's sort + grouped GEMM MoE and tiled/cuBLAS linears."""

    def __enter__(self):
        os.environ["KLC_SMALL_BATCH"] = "0"

    def __exit__(self, *exc):
        del os.environ["KLC_SMALL_BATCH"]


def moe_weights(E, d, I, seed):
    g = torch.Generator(device="cuda").manual_seed(seed)
    w13 = (torch.randn(E, 2 * I, d, device="cuda", generator=g) * d ** -0.5).to(torch.bfloat16)
    w2 = (torch.randn(E, d, I, device="cuda", generator=g) * I ** -0.5).to(torch.bfloat16)
    return w13, w2


def moe_routing(T, E, k, pool, seed):
    """idx [T, k] ascending per token, each token's k experts drawn from the first `pool` of a seeded
    permutation (pool < T * k makes tokens share experts), and routing weights."""
    cpu = torch.Generator().manual_seed(seed)
    experts = torch.randperm(E, generator=cpu)[:pool]
    idx = torch.stack([experts[torch.randperm(pool, generator=cpu)[:k]].sort().values for _ in range(T)])
    wt = torch.rand(T, k, generator=cpu)
    return idx.to(torch.int32).cuda().contiguous(), wt.cuda()


def moe_call(klc, x, idx, wt, w13, w2, out, I):
    T, d = x.shape
    E, k = w13.shape[0], idx.shape[1]
    ws_bytes = klc.lib.klc_moe_workspace_bytes(T, d, I, E, k)
    ws = torch.empty(ws_bytes, dtype=torch.uint8, device="cuda")
    return lambda: klc._check(klc.lib.klc_moe_experts(klc.ctx, c_p(x.data_ptr()), c_p(idx.data_ptr()), c_p(wt.data_ptr()),
                                                      c_p(w13.data_ptr()), c_p(w2.data_ptr()), c_p(out.data_ptr()),
                                                      c_p(ws.data_ptr()), c_z(ws_bytes), T, d, I, E, k, 0))


def moe_reference(x, idx, wt, w13, w2, base, I):
    want = base.double().clone()
    for t in range(x.shape[0]):
        xt = x[t].double()
        for s in range(idx.shape[1]):
            e = int(idx[t, s])
            gu = w13[e].double() @ xt
            want[t] += wt[t, s].double() * (w2[e].double() @ (torch.nn.functional.silu(gu[:I]) * gu[I:]))
    return want


def small_moe_case(klc, w13, w2, T, k, pool, seed):
    """The sync-free small-batch MoE (fp32 activations and accumulation in both modes) against float64
    experts on the fp32 input, accumulating into a non-zero out; and against the general exact kernel.
    The tolerance is fp32-level: the old tensor-core path (bf16 activations, ~2e-3) would fail it."""
    E, I2, d = w13.shape
    I = I2 // 2
    idx, wt = moe_routing(T, E, k, pool, seed)
    x = torch.randn(T, d, device="cuda", generator=torch.Generator(device="cuda").manual_seed(seed))
    base = torch.randn(T, d, device="cuda", generator=torch.Generator(device="cuda").manual_seed(seed + 1))
    want = moe_reference(x, idx, wt, w13, w2, base, I)
    scale = (want - base.double()).abs().max()
    outs = {}
    for label, tc, general in (("exact", False, False), ("tensor-core", True, False), ("general exact kernel", False, True)):
        set_tensor_cores(klc, tc)
        out = base.clone()
        if general:
            with general_paths():
                moe_call(klc, x, idx, wt, w13, w2, out, I)()
        else:
            moe_call(klc, x, idx, wt, w13, w2, out, I)()
        klc.sync()
        outs[label] = out.double()
    set_tensor_cores(klc, True)
    shared = T * k - len(set(idx.flatten().tolist()))
    tag = f"small-batch MoE T={T} E={E} top-{k} d={d} I={I} ({shared} of {T * k} pairs share an expert)"
    for label in ("exact", "tensor-core"):
        check(f"{tag}, {label} mode vs float64", ((outs[label] - want).abs().max() / scale).item(), 1e-5)
    check(f"{tag} vs the general exact kernel", ((outs["exact"] - outs["general exact kernel"]).abs().max() / scale).item(), 1e-5)


def small_moe_timing(klc, w13, w2, copy_bps, k=8):
    """CUDA-event time of the small-batch MoE against the general tensor-core path (sort, host wait, bucketed
    cuBLAS GEMMs) and, at T=1, the general exact kernel; GB/s over the bytes of the distinct chosen experts."""
    E, I2, d = w13.shape
    I = I2 // 2
    set_tensor_cores(klc, True)
    for T in (1, 2, 4, 8, 16):
        idx, wt = moe_routing(T, E, k, E, 100 + T)
        x = torch.randn(T, d, device="cuda")
        out = torch.zeros(T, d, device="cuda")
        distinct = len(set(idx.flatten().tolist()))
        gbytes = distinct * 3 * I * d * 2 / 1e9
        small = timed_ms(klc, moe_call(klc, x, idx, wt, w13, w2, out, I))
        with general_paths():
            general = timed_ms(klc, moe_call(klc, x, idx, wt, w13, w2, out, I))
            exact = None
            if T == 1:
                set_tensor_cores(klc, False)
                exact = timed_ms(klc, moe_call(klc, x, idx, wt, w13, w2, out, I))
                set_tensor_cores(klc, True)
        gbs = gbytes / (small / 1e3)
        row = {"case": f"time small-batch MoE T={T}", "T": T, "pairs": T * k, "distinct_experts": distinct, "bytes_gb": gbytes,
               "small_ms": small, "general_tc_ms": general, "general_exact_ms": exact, "small_gb_s": gbs,
               "of_copy_bw": gbs * 1e9 / copy_bps, "ok": True}
        results.append(row)
        print(f"time MoE T={T} ({distinct} experts, {gbytes * 1e3:.0f} MB): small {small * 1e3:.1f} us = {gbs:.0f} GB/s "
              f"({100 * row['of_copy_bw']:.0f}% of copy bw); general tensor-core {general * 1e3:.1f} us"
              + (f", general exact {exact * 1e3:.1f} us" if exact else ""), flush=True)


def conv_case(klc, T, C, W, split, seed=13):
    """klc_short_conv (causal depthwise conv + SiLU, inputs before the call from tail) against float64 over
    [old tail, x]: both outputs in the stream layout (channel c to stream c // split) and the advanced tail.
    T < W - 1 keeps part of the old tail; long T checks the all-tokens-at-once form."""
    g = torch.Generator(device="cuda").manual_seed(seed)
    keep = W - 1
    x = torch.randn(T, C, device="cuda", generator=g)
    w = torch.randn(C, W, device="cuda", generator=g) * 0.5
    tail = torch.randn(C, keep, device="cuda", generator=g)
    yf = torch.empty(T * C, device="cuda")
    yb = torch.empty(T * C, dtype=torch.bfloat16, device="cuda")
    full = torch.cat([tail.T.double(), x.double()], 0)
    want = torch.nn.functional.silu(sum(w[:, j].double() * full[j:j + T] for j in range(W)))
    want = want.reshape(T, C // split, split).transpose(0, 1).reshape(-1)
    want_tail = full[full.shape[0] - keep:].T
    klc._check(klc.lib.klc_short_conv(klc.ctx, c_p(x.data_ptr()), c_p(w.data_ptr()), c_p(tail.data_ptr()), c_p(yf.data_ptr()),
                                      c_p(yb.data_ptr()), T, C, W, split))
    klc.sync()
    scale = want.abs().max()
    err = max(((yf.double() - want).abs().max() / scale).item(), ((tail.double() - want_tail).abs().max()).item())
    check(f"short conv T={T} C={C} W={W} split={split} (fp32 output, advanced tail)", err, 1e-5)
    check(f"short conv T={T} C={C} W={W} split={split} (bf16 output)", ((yb.double() - want).abs().max() / scale).item(), 8e-3)


def add_rmsnorm_case(klc, rows, D=2304, eps=1e-5, seed=17):
    """klc_add_rmsnorm against klc_add then klc_rmsnorm (the fused kernel does the same operations in the
    same order: bit-identical) and against float64."""
    g = torch.Generator(device="cuda").manual_seed(seed)
    h = torch.randn(rows, D, device="cuda", generator=g)
    x = torch.randn(rows, D, device="cuda", generator=g)
    w = torch.rand(D, device="cuda", generator=g) + 0.5
    h2, y, y2 = h.clone(), torch.empty_like(h), torch.empty_like(h)
    klc._check(klc.lib.klc_add_rmsnorm(klc.ctx, c_p(h.data_ptr()), c_p(x.data_ptr()), c_p(w.data_ptr()), c_p(y.data_ptr()), rows, D,
                                       c_f(eps)))
    klc._check(klc.lib.klc_add(klc.ctx, c_p(h2.data_ptr()), c_p(x.data_ptr()), c_z(rows * D)))
    klc._check(klc.lib.klc_rmsnorm(klc.ctx, c_p(h2.data_ptr()), D, c_p(w.data_ptr()), c_p(y2.data_ptr()), D, rows, D, c_f(eps)))
    klc.sync()
    hd = h2.double()
    want = w.double() * hd / torch.sqrt((hd * hd).mean(1, keepdim=True) + eps)
    apart = max((h - h2).abs().max().item(), (y - y2).abs().max().item())
    err = ((y.double() - want).abs().max() / want.abs().max()).item()
    check(f"add + RMSNorm fused, rows={rows} D={D}: {apart:.1e} from add then rmsnorm", apart + err, 1e-6)


def router_case(klc, T, E=256, k=8, renorm=1, scaling=2.446, seed=11):
    """klc_moe_route against the rule on fp32 scores: top-k of sigmoid(logit) + bias, ties to the lower
    expert, reported in ascending expert order with weights sigmoid / (sum + 1e-20) * scaling. Logits and
    bias lie on coarse grids so that equal scores are exactly equal (ties happen) and unequal ones differ
    by far more than a rounding step; then the chosen experts must match exactly. Timed with CUDA events."""
    g = torch.Generator(device="cuda").manual_seed(seed)
    logits = (torch.randint(-24, 25, (T, E), device="cuda", generator=g).float() / 8).contiguous()
    bias = (torch.randint(-2, 3, (E,), device="cuda", generator=g).float() / 4).contiguous()
    idx = torch.empty(T, k, dtype=torch.int32, device="cuda")
    w = torch.empty(T, k, device="cuda")
    call = lambda: klc._check(klc.lib.klc_moe_route(klc.ctx, c_p(logits.data_ptr()), c_p(bias.data_ptr()), c_p(idx.data_ptr()),
                                                    c_p(w.data_ptr()), T, E, k, renorm, c_f(scaling)))
    call()
    klc.sync()
    sig = torch.sigmoid(logits.double())
    score = (sig + bias.double()).cpu()
    rows = range(T) if T <= 64 else torch.randperm(T, generator=torch.Generator().manual_seed(seed))[:64].tolist()
    wrong, werr = 0, 0.0
    for t in rows:
        want = sorted(sorted(range(E), key=lambda e: (-score[t, e].item(), e))[:k])
        got = idx[t].tolist()
        wrong += got != want
        chosen = sig[t, want]
        ww = chosen / ((chosen.sum() + 1e-20) if renorm else 1.0) * scaling
        werr = max(werr, ((w[t].double() - ww).abs().max() / ww.abs().max()).item())
    ms = timed_ms(klc, call)
    check(f"MoE router T={T} E={E} top-{k}: {wrong} rows with other experts, {ms * 1e3:.1f} us per call", wrong + werr, 1e-6,
          router_us=ms * 1e3)


def gemv_case(klc, M, N, K, batch=1, w_f32=False, modes=(False, True), seed=5):
    """klc_linear with few rows, accumulating into y = 0.5: x_b = x[:, b*K:], y_b = y[:, b*N:] as MLA's
    per-head products; float64 reference on the fp32 activations (the GEMV serves M <= 8 in every mode,
    so a bf16-rounding tensor-core path fails the fp32-level tolerance). modes: tensor cores off/on."""
    g = torch.Generator(device="cuda").manual_seed(seed)
    x = torch.randn(M, batch * K, device="cuda", generator=g)
    w = torch.randn(batch, N, K, device="cuda", generator=g) * K ** -0.5
    w = w if w_f32 else w.to(torch.bfloat16)
    want = torch.cat([0.5 + x[:, b * K:(b + 1) * K].double() @ w[b].double().T for b in range(batch)], 1)
    for tc in modes:
        set_tensor_cores(klc, tc)
        y = torch.full((M, batch * N), 0.5, device="cuda")
        klc._check(klc.lib.klc_linear(klc.ctx, c_p(x.data_ptr()), batch * K, c_p(w.data_ptr()), c_p(y.data_ptr()), batch * N, M,
                                      N, K, batch, c_ll(K), c_ll(N * K), c_ll(N), 1, int(w_f32)))
        klc.sync()
        err = ((y.double() - want).abs().max() / (want - 0.5).abs().max()).item()
        check(f"few-row linear M={M} N={N} K={K} batch={batch} {'fp32' if w_f32 else 'bf16'} weights, "
              f"{'tensor-core' if tc else 'exact'} mode", err, 1e-5)
    set_tensor_cores(klc, True)


def gemv_timing(klc, copy_bps):
    """CUDA-event time of decode's linear layers (M=1) on the GEMV against the general paths: tensor-core
    mode (bf16 staging + cuBLAS) and exact mode (the one-warp-per-column kernel); GB/s over the weights."""
    for name, N, K in (("lm_head", 163840, 2304), ("dense gate/up", 18432, 2304), ("KDA q/k/v", 12288, 2304),
                       ("KDA o_proj", 2304, 4096), ("shared expert gate/up", 2048, 2304), ("shared expert down", 2304, 1024),
                       ("KDA f_b", 4096, 128)):
        x = torch.randn(1, K, device="cuda")
        w = (torch.randn(N, K, device="cuda") * K ** -0.5).to(torch.bfloat16)
        y = torch.empty(1, N, device="cuda")
        call = lambda: klc._check(klc.lib.klc_linear(klc.ctx, c_p(x.data_ptr()), K, c_p(w.data_ptr()), c_p(y.data_ptr()), N, 1, N,
                                                     K, 1, c_ll(0), c_ll(0), c_ll(0), 0, 0))
        set_tensor_cores(klc, True)
        small = timed_ms(klc, call)
        with general_paths():
            tc = timed_ms(klc, call)
            set_tensor_cores(klc, False)
            exact = timed_ms(klc, call)
            set_tensor_cores(klc, True)
        gbs = N * K * 2 / (small / 1e3) / 1e9
        results.append({"case": f"time GEMV {name}", "N": N, "K": K, "gemv_ms": small, "general_tc_ms": tc, "general_exact_ms": exact,
                        "gemv_gb_s": gbs, "of_copy_bw": gbs * 1e9 / copy_bps, "ok": True})
        print(f"time linear M=1 {name} {N}x{K}: GEMV {small * 1e3:.1f} us = {gbs:.0f} GB/s ({100 * gbs * 1e9 / copy_bps:.0f}% of copy bw); "
              f"cuBLAS tensor-core path {tc * 1e3:.1f} us, exact tiled path {exact * 1e3:.1f} us", flush=True)


def small_batch_cases(klc):
    klc.lib.klc_moe_workspace_bytes.restype = c_z
    copy_bps = copy_bandwidth()
    print(f"device copy bandwidth (read + write): {copy_bps / 1e12:.3f} TB/s", flush=True)
    results.append({"case": "copy bandwidth", "bytes_per_s": copy_bps, "ok": True})
    for M, N, K, batch, f32 in ((1, 163840, 2304, 1, False), (3, 4096, 128, 1, False), (8, 32, 2304, 1, False),
                                (5, 12288, 2304, 1, False), (1, 512, 128, 32, False), (2, 128, 512, 32, False),
                                (1, 256, 2304, 1, True), (2, 64, 24, 1, True)):
        gemv_case(klc, M, N, K, batch, f32)
    gemv_case(klc, 2, 64, 20, modes=(False,))  # K not a multiple of 8: the exact mode's general kernel
    w13, w2 = moe_weights(256, 2304, 1024, 11)
    for T, pool, seed in ((1, 256, 21), (3, 12, 22), (8, 256, 23), (8, 16, 24), (16, 40, 25), (16, 256, 26)):
        small_moe_case(klc, w13, w2, T, 8, pool, seed)
    tiny13, tiny2 = moe_weights(8, 128, 64, 12)
    small_moe_case(klc, tiny13, tiny2, 5, 2, 8, 27)
    small_moe_timing(klc, w13, w2, copy_bps)
    gemv_timing(klc, copy_bps)
    del w13, w2
    torch.cuda.empty_cache()


def mla_heads_case(klc, T, H, start, sample=24, seed=7, tol=1e-2, compare=False, cache_bf16=False):
    """klc_mla_prefill_heads (flash-style, up-projected keys/values, tensor cores) against float64
    attention with keys (W_UK[h] c_j, pe_j) and values W_UV[h] c_j; with compare, also against the
    absorbed tensor-core path (klc_mla_attention, then W_UV) on every row, both timed."""
    g = torch.Generator(device="cuda").manual_seed(seed)
    nope, rope, dv, L = 128, 64, 128, 512
    D, total, scale = L + rope, start + T, (nope + rope) ** -0.5
    cache, ctype = cache_of(torch.randn(total, D, device="cuda", generator=g), cache_bf16)
    q = torch.randn(T, H, nope + rope, device="cuda", generator=g) * 1.5
    wukt = (torch.randn(H, L, nope, device="cuda", generator=g) * L ** -0.5).to(torch.bfloat16)
    wuv = (torch.randn(H, dv, L, device="cuda", generator=g) * L ** -0.5).to(torch.bfloat16)
    out = torch.full((T, H * dv), float("nan"), device="cuda")
    ev = [torch.cuda.Event(enable_timing=True) for _ in range(4)]
    torch.cuda.synchronize()
    ev[0].record()
    klc._check(klc.lib.klc_mla_prefill_heads(klc.ctx, c_p(q.data_ptr()), c_p(cache.data_ptr()), ctype, c_p(wukt.data_ptr()),
                                             c_p(wuv.data_ptr()), c_p(out.data_ptr()), T, H, start, nope, rope, dv, L, c_f(scale)))
    ev[1].record()
    klc.sync()
    ms = round(ev[0].elapsed_time(ev[1]), 2)
    rows = T * H
    idx = sorted(set([0, H - 1, rows - 1, rows - H] + torch.randint(0, rows, (sample,), generator=torch.Generator().manual_seed(seed)).tolist()))
    want = []
    for r in idx:
        t, h = divmod(r, H)
        c = cache[: start + t + 1].double()
        k = torch.cat([c[:, :L] @ wukt[h].double(), c[:, L:]], 1)
        p = torch.softmax((k @ q[t, h].double()) * scale, 0)
        want.append(p @ (c[:, :L] @ wuv[h].double().T))
    want = torch.stack(want)
    got = out.view(rows, dv)[idx].double()
    err = ((got - want).abs().max() / want.abs().max()).item()
    extra = {"ms": ms, "rows_checked": len(idx), "wanted": klc.lib.klc_mla_heads_wanted(klc.ctx, T, start, nope, rope, dv, L)}
    if compare:
        qfull = torch.cat([torch.einsum("thn,hln->thl", q[:, :, :nope], wukt.float()), q[:, :, nope:]], 2).reshape(rows, D).contiguous()
        lat = torch.empty(rows, L, device="cuda")
        splits = klc.lib.klc_mla_splits(klc.ctx, rows, total)
        ws_bytes = klc.lib.klc_mla_workspace_bytes(rows, L, splits)
        ws = torch.empty(ws_bytes // 4 + 1, device="cuda")
        torch.cuda.synchronize()
        ev[2].record()
        klc._check(klc.lib.klc_mla_attention(klc.ctx, c_p(qfull.data_ptr()), c_p(cache.data_ptr()), ctype, c_p(lat.data_ptr()),
                                             c_p(ws.data_ptr()), c_z(ws_bytes), T, H, start, D, L, c_f(scale), splits))
        ev[3].record()
        klc.sync()
        extra["ms_absorbed"] = round(ev[2].elapsed_time(ev[3]), 2)
        old = torch.einsum("thl,hvl->thv", lat.view(T, H, L), wuv.float()).reshape(T, H * dv)
        del qfull, lat, ws
        extra["vs_absorbed"] = float(((out - old).abs().max() / old.abs().max()).item())
        extra["absorbed_vs_f64"] = float(((old.view(rows, dv)[idx].double() - want).abs().max() / want.abs().max()).item())
        check(f"flash MLA prefill T={T} H={H} start={start}{' bf16 cache' if cache_bf16 else ''} vs the absorbed tensor-core path", extra["vs_absorbed"], tol)
    check(f"flash MLA prefill T={T} H={H} start={start}{' bf16 cache' if cache_bf16 else ''} vs float64", err, tol, **extra)


def mla_heads_cases(klc):
    klc.lib.klc_mla_workspace_bytes.restype = c_z
    print(f"engine: {set_tensor_cores(klc, True)}", flush=True)
    mla_heads_case(klc, 5, 4, 0)
    mla_heads_case(klc, 300, 32, 1000, compare=True)
    mla_heads_case(klc, 1000, 8, 7692)
    mla_heads_case(klc, 4096, 32, 20000, compare=True)
    mla_heads_case(klc, 32768, 32, 0, compare=True)
    mla_heads_case(klc, 300, 32, 1000, compare=True, cache_bf16=True)
    mla_heads_case(klc, 4096, 32, 20000, compare=True, cache_bf16=True)


def moe_and_small_cases(klc):
    """The cases both runs share: per-head batched tensor-core linear, grouped MoE, the small-batch (decode)
    paths, the router, the short convolution and the fused residual add + norm."""
    tc_linear_case(klc, 300, 512, 128, batch=32)
    tc_moe_case(klc, 1000)
    tc_moe_case(klc, 64, E=32, k=4)
    tc_moe_case(klc, 1)
    small_batch_cases(klc)
    for T in (1, 3, 4096):
        router_case(klc, T)
    router_case(klc, 50, E=32, k=4, renorm=0, scaling=1.0)
    router_case(klc, 7, E=1000, k=16)
    for T, C, W, split in CONV_CASES:
        conv_case(klc, T, C, W, split)
    for rows in (1, 8, 4096):
        add_rmsnorm_case(klc, rows)
    # Rows wider than one tile of the norms' register loads (16 values x 256 threads), one of them ragged.
    add_rmsnorm_case(klc, 3, D=8192)
    add_rmsnorm_case(klc, 5, D=9000)


def main():
    klc = Klc()
    klc.lib.klc_mla_splits.restype = c_i
    if "--mla-heads" in sys.argv:
        mla_heads_cases(klc)
        klc.close()
        json.dump(results, open(sys.argv[1], "w"), indent=1)
        return 0 if all(r["ok"] for r in results) else 1
    for M, N, K in ((1, 4096, 2304), (3, 576, 2304), (200, 12288, 2304), (1000, 2304, 4096), (77, 163840 // 8, 2304)):
        linear_case(klc, M, N, K)
    if "--small-batch" in sys.argv:
        print(f"engine: {set_tensor_cores(klc, True)}", flush=True)
        for M, N, K in ((1, 4096, 2304), (200, 12288, 2304), (77, 163840 // 8, 2304)):
            tc_linear_case(klc, M, N, K)
        moe_and_small_cases(klc)
        klc.close()
        json.dump(results, open(sys.argv[1], "w"), indent=1)
        return 0 if all(r["ok"] for r in results) else 1
    mla_case(klc, 5, 4, 0, D=80, L=64)
    mla_case(klc, 200, 32, 0)
    mla_case(klc, 300, 32, 1000)
    mla_case(klc, 1, 32, 32767)
    mla_case(klc, 1, 32, 100000)
    mla_case(klc, 32768, 4, 0)
    for T, H, start in ((5, 4, 0), (300, 32, 1000), (1, 32, 100000)):
        mla_case(klc, T, H, start, D=80 if H == 4 else 576, L=64 if H == 4 else 512, cache_bf16=True)
    for rows in (1, 7, 4096):
        append_case(klc, rows)
    print(f"engine: {set_tensor_cores(klc, True)}", flush=True)
    for M, N, K in ((1, 4096, 2304), (200, 12288, 2304), (1000, 2304, 4096), (77, 163840 // 8, 2304)):
        tc_linear_case(klc, M, N, K)
    moe_and_small_cases(klc)
    for T, H, start in ((200, 32, 0), (300, 32, 1000), (4096, 32, 0), (32768, 4, 0), (20, 4, 5)):
        mla_case(klc, T, H, start, tol=1e-2, label="tensor-core ")
        mla_case(klc, T, H, start, tol=1e-2, label="tensor-core ", cache_bf16=True)
    # Key chunks merged flash-style: a small score budget splits even these contexts into many chunks
    # (the last ones masked for the block's first rows), and several query blocks.
    os.environ["KLC_MLA_SCORE_BYTES"] = str(3 << 20)
    for T, H, start in ((101, 32, 20000), (300, 8, 1000), (20, 4, 5)):
        mla_case(klc, T, H, start, tol=1e-2, label="tensor-core chunked ", cache_bf16=True)
    mla_case(klc, 64, 4, 3000, D=80, L=64, tol=1e-2, label="tensor-core chunked ")
    del os.environ["KLC_MLA_SCORE_BYTES"]
    # A question on a 1M-token repository: one query block, the keys in chunks of the full budget.
    mla_case(klc, 101, 32, 1048576 - 101, tol=1e-2, label="tensor-core ", cache_bf16=True, sample=8)
    mla_heads_cases(klc)
    klc.close()
    json.dump(results, open(sys.argv[1] if len(sys.argv) > 1 else "/dev/null", "w"), indent=1)
    return 0 if all(r["ok"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
