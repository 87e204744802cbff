"""Device check of the batched decode kernels (native/src/batch_decode.cu), the router in one launch
(klc_moe_router, native/src/moe.cu) and of device sampling
(native/src/sample.cu) against float64 torch references and a Python port of pickToken
(src/engine/sampler.ts), then a timing table with CUDA events. Prints one line per case, writes
all results as JSON to argv[1] and exits non-zero when a case fails."""
import ctypes
import json
import math
import os
import sys

import torch

from klc_cuda import Klc

c_p, c_i, c_f, c_z, c_d = ctypes.c_void_p, ctypes.c_int, ctypes.c_float, ctypes.c_size_t, ctypes.c_double
MAX_BATCH = 64
KLC_CACHE_F32, KLC_CACHE_BF16 = 0, 1
results = []


class KdaBatchArgs(ctypes.Structure):
    _fields_ = [("B", c_i), ("H", c_i), ("K", c_i), ("V", c_i), ("W", c_i), ("scale", c_f),
                ("proj", c_p), ("conv_w", c_p), ("g", c_p), ("beta", c_p), ("A_log", c_p), ("dt_bias", c_p),
                ("o", c_p), ("states", ctypes.POINTER(c_p)), ("tails", ctypes.POINTER(c_p)),
                ("x", c_p), ("b_w", c_p), ("d", c_i), ("b_w_f32", c_i), ("o_norm_w", c_p), ("gate", c_p), ("eps", c_f)]


class TokenPick(ctypes.Structure):
    _fields_ = [("temperature", c_d), ("top_p", c_d), ("uniform", c_d), ("top_k", c_i), ("vocab", c_i)]


def check(name, err, tol, **extra):
    ok = err < tol
    results.append({"case": name, "error": err, "tol": tol, "ok": ok, **extra})
    print(f"{'ok  ' if ok else 'FAIL'} {name}: error {err:.2e} (tol {tol:.0e}) {extra if extra else ''}", flush=True)


def rel(got, want):
    return ((got.double() - want).abs().max() / want.abs().max().clamp_min(1e-30)).item()


def ptrs(tensors):
    return (c_p * len(tensors))(*[t.data_ptr() for t in tensors])


def set_tensor_cores(klc, on):
    klc._check(klc.lib.klc_set_tensor_cores(klc.ctx, int(on)))


# ---- KDA -------------------------------------------------------------------------------------------

def kda_reference(proj, conv_w, tail, f, beta, A_log, dt_bias, S, H, K, V, W, scale):
    """One token of spec 2.1 for one sequence in float64: short conv + SiLU, gates, recurrence."""
    proj, conv_w, tail, S = proj.double(), conv_w.double(), tail.double(), S.double().clone()
    acc = conv_w[:, W - 1] * proj + (conv_w[:, : W - 1] * tail).sum(1)
    y = torch.nn.functional.silu(acc)
    new_tail = torch.cat([tail[:, 1:], proj[:, None]], 1)
    HK = H * K
    q, k, v = y[:HK].view(H, K), y[HK:2 * HK].view(H, K), y[2 * HK:].view(H, V)
    q = q / torch.sqrt((q * q).sum(1, keepdim=True) + 1e-6) * scale
    k = k / torch.sqrt((k * k).sum(1, keepdim=True) + 1e-6)
    a = torch.exp(-torch.exp(A_log.double())[:, None] * torch.nn.functional.softplus(f.double().view(H, K) + dt_bias.double().view(H, K)))
    b = torch.sigmoid(beta.double())
    S = S * a[:, :, None]
    u = v - torch.einsum("hkv,hk->hv", S, k)
    S = S + k[:, :, None] * (b[:, None] * u)[:, None, :]
    o = torch.einsum("hkv,hk->hv", S, q)
    return o.reshape(-1), S, new_tail


def kda_inputs(B, H, K, V, W, seed):
    g = torch.Generator(device="cuda").manual_seed(seed)
    C = 2 * H * K + H * V
    r = lambda *s, sc=1.0: (torch.randn(*s, device="cuda", generator=g) * sc).contiguous()
    return dict(
        proj=r(B, C), conv_w=r(C, W, sc=0.5), f=r(B, H * K), beta=r(B, H), A_log=r(H, sc=0.5), dt_bias=r(H * K, sc=0.5),
        states=[r(H, K, V, sc=0.3) for _ in range(B)], tails=[r(C, W - 1) for _ in range(B)], o=torch.full((B, H * V), float("nan"), device="cuda"))


def kda_call(klc, x, B, H, K, V, W):
    """With x["b_in"] (the layer's input [B, d]) and x["b_w"] (b_proj's weight [H, d]) the kernel computes the beta logits
    itself; with x["o_norm_w"] and x["gate"] it writes o gated-RMSNormed (eps 1e-5)."""
    fused = "b_w" in x
    normed = "o_norm_w" in x
    a = KdaBatchArgs(B, H, K, V, W, K ** -0.5, x["proj"].data_ptr(), x["conv_w"].data_ptr(), x["f"].data_ptr(),
                     None if fused else x["beta"].data_ptr(), x["A_log"].data_ptr(), x["dt_bias"].data_ptr(), x["o"].data_ptr(),
                     ptrs(x["states"]), ptrs(x["tails"]), x["b_in"].data_ptr() if fused else None, x["b_w"].data_ptr() if fused else None,
                     x["b_in"].shape[1] if fused else 0, int(fused and x["b_w"].dtype == torch.float32),
                     x["o_norm_w"].data_ptr() if normed else None, x["gate"].data_ptr() if normed else None, 1e-5)
    klc._check(klc.lib.klc_kda_decode_batch(klc.ctx, ctypes.byref(a)))
    return a


def kda_case(klc, B, H, K, V, W=4, seed=11, b_proj=None, gated_norm=False):
    """b_proj: None, or the dtype of b_proj's weight (d 2304) from which the kernel computes the beta logits;
    gated_norm: o written as klc_gated_rmsnorm makes it (norm weight [V], gate logits [B, H*V])."""
    x = kda_inputs(B, H, K, V, W, seed)
    what = ""
    if gated_norm:
        g = torch.Generator(device="cuda").manual_seed(seed + 2)
        x["o_norm_w"] = (1 + 0.1 * torch.randn(V, device="cuda", generator=g)).contiguous()
        x["gate"] = torch.randn(B, H * V, device="cuda", generator=g).contiguous()
        what += ", gated norm"
    if b_proj is not None:
        g = torch.Generator(device="cuda").manual_seed(seed + 1)
        x["b_in"] = torch.randn(B, 2304, device="cuda", generator=g)
        x["b_w"] = (torch.randn(H, 2304, device="cuda", generator=g) * 0.02).to(b_proj).contiguous()
        x["beta"] = (x["b_in"].double() @ x["b_w"].double().T).float()
        what += f", beta from b_proj ({str(b_proj).replace('torch.', '')})"
    before = [(s.clone(), t.clone()) for s, t in zip(x["states"], x["tails"])]
    kda_call(klc, x, B, H, K, V, W)
    klc.sync()
    eo = es = et = 0.0
    for b in range(B):
        o, S, tail = kda_reference(x["proj"][b], x["conv_w"], before[b][1], x["f"][b], x["beta"][b], x["A_log"], x["dt_bias"],
                                   before[b][0], H, K, V, W, K ** -0.5)
        if gated_norm:
            oh = o.view(H, V)
            oh = oh * torch.rsqrt((oh * oh).mean(1, keepdim=True) + 1e-5) * x["o_norm_w"].double() * torch.sigmoid(x["gate"][b].double().view(H, V))
            o = oh.reshape(-1)
        eo, es, et = max(eo, rel(x["o"][b], o)), max(es, rel(x["states"][b], S)), max(et, rel(x["tails"][b], tail))
    check(f"kda decode B={B} H={H} K={K} V={V} W={W}{what}: output", eo, 1e-5)
    check(f"kda decode B={B} H={H} K={K} V={V} W={W}{what}: states", es, 1e-5)
    check(f"kda decode B={B} H={H} K={K} V={V} W={W}{what}: conv tails", et, 1e-6)


# ---- MoE router --------------------------------------------------------------------------------------

def router_case(klc, T, E, d, k, w_dtype, renorm=True, scaling=2.5, seed=3):
    """klc_moe_router: the logits against float64 x Wᵀ, and the choices and weights against a float64 top-k of
    sigmoid(logit) + bias over the logits the kernel wrote (so a near tie that fp32 rounding flips is not
    counted against the choice), ascending, weights sigmoid(logit) renormalised and scaled."""
    g = torch.Generator(device="cuda").manual_seed(seed)
    x = torch.randn(T, d, device="cuda", generator=g)
    w = (torch.randn(E, d, device="cuda", generator=g) * 0.05).to(w_dtype).contiguous()
    bias = (torch.randn(E, device="cuda", generator=g) * 0.1).contiguous()
    logits = torch.full((T, E), float("nan"), device="cuda")
    idx = torch.full((T, k), -1, dtype=torch.int32, device="cuda")
    wt = torch.full((T, k), float("nan"), device="cuda")
    for _ in range(2):  # twice: the last CTA resets the arrival counter for the next launch
        klc._check(klc.lib.klc_moe_router(klc.ctx, c_p(x.data_ptr()), c_p(w.data_ptr()), int(w_dtype == torch.float32), c_p(bias.data_ptr()),
                                          c_p(logits.data_ptr()), c_p(idx.data_ptr()), c_p(wt.data_ptr()), T, d, E, k, int(renorm), c_f(scaling)))
    klc.sync()
    want = x.double() @ w.double().T
    got = logits.double()
    scores = torch.sigmoid(got) + bias.double()
    chosen = scores.topk(k, 1).indices.sort(1).values
    sw = torch.sigmoid(got.gather(1, chosen))
    want_w = sw / (sw.sum(1, keepdim=True) + 1e-20 if renorm else 1.0) * scaling
    name = f"moe router T={T} E={E} d={d} top-{k} {str(w_dtype).replace('torch.', '')}"
    check(name + ": logits", rel(logits, want), 1e-5)
    check(name + ": choices", float((idx.long() != chosen).sum().item()), 0.5)
    check(name + ": weights", rel(wt, want_w), 1e-6)


def router_refused(klc, d=1004, T=2, E=16, k=2):
    """klc_moe_router reads rows in runs of 8 values: a width that is not a multiple of 8 is refused, saying so."""
    x = torch.randn(T, d, device="cuda")
    w = torch.randn(E, d, device="cuda")
    bias, logits = torch.zeros(E, device="cuda"), torch.zeros(T, E, device="cuda")
    idx, wt = torch.zeros(T, k, dtype=torch.int32, device="cuda"), torch.zeros(T, k, device="cuda")
    rc = klc.lib.klc_moe_router(klc.ctx, c_p(x.data_ptr()), c_p(w.data_ptr()), 1, c_p(bias.data_ptr()), c_p(logits.data_ptr()),
                                c_p(idx.data_ptr()), c_p(wt.data_ptr()), T, d, E, k, 1, c_f(1.0))
    message = klc.lib.klc_last_error().decode()
    check(f"moe router with d={d} is refused, naming the multiple of 8", 0.0 if rc != 0 and "multiple of 8" in message else 1.0, 0.5,
          message=message)


def router_norm_case(klc, T, E, d, k, w_dtype, eps=1e-5, seed=4):
    """klc_moe_router_norm: h becomes h + a (fp32, bit for bit), y RMSNorm(h + a) * norm_w against float64, the
    logits float64 y Wᵀ, the choices and weights as router_case checks them (over the logits the kernel wrote)."""
    g = torch.Generator(device="cuda").manual_seed(seed)
    h0 = torch.randn(T, d, device="cuda", generator=g) * 3
    a = torch.randn(T, d, device="cuda", generator=g)
    norm_w = torch.rand(d, device="cuda", generator=g) + 0.5
    w = (torch.randn(E, d, device="cuda", generator=g) * 0.05).to(w_dtype).contiguous()
    bias = (torch.randn(E, device="cuda", generator=g) * 0.1).contiguous()
    h = h0.clone()
    y = torch.full((T, d), float("nan"), device="cuda")
    logits = torch.full((T, E), float("nan"), device="cuda")
    idx = torch.full((T, k), -1, dtype=torch.int32, device="cuda")
    wt = torch.full((T, k), float("nan"), device="cuda")
    klc._check(klc.lib.klc_moe_router_norm(klc.ctx, c_p(h.data_ptr()), c_p(a.data_ptr()), c_p(norm_w.data_ptr()), c_f(eps), c_p(y.data_ptr()),
                                           c_p(w.data_ptr()), int(w_dtype == torch.float32), c_p(bias.data_ptr()), c_p(logits.data_ptr()),
                                           c_p(idx.data_ptr()), c_p(wt.data_ptr()), T, d, E, k, 1, c_f(2.5)))
    klc.sync()
    v = h0.double() + a.double()
    want_y = v / torch.sqrt((v * v).mean(1, keepdim=True) + eps) * norm_w.double()
    got = logits.double()
    chosen = (torch.sigmoid(got) + bias.double()).topk(k, 1).indices.sort(1).values
    sw = torch.sigmoid(got.gather(1, chosen))
    name = f"moe router with the residual add and norm T={T} E={E} d={d} top-{k} {str(w_dtype).replace('torch.', '')}"
    check(name + ": h + a (values not bit-equal to fp32 h + a)", float((h != h0 + a).sum().item()), 0.5)
    check(name + ": normed rows", rel(y, want_y), 1e-5)
    check(name + ": logits", rel(logits, want_y @ w.double().T), 1e-5)
    check(name + ": choices", float((idx.long() != chosen).sum().item()), 0.5)
    check(name + ": weights", rel(wt, sw / (sw.sum(1, keepdim=True) + 1e-20) * 2.5), 1e-6)


# ---- MLA -------------------------------------------------------------------------------------------

def mla_call(klc, q, caches, lengths, out, B, H, D, L, scale, positions=None, capacity=0, run_now=True):
    """klc_mla_decode over the caches (all fp32 or all bf16 tensors); positions: an int32 tensor on the device
    that the kernels read the lengths from (lengths[b] - 1 each), capacity: the keys the split plan is made for."""
    klc.lib.klc_mla_decode_workspace_bytes.restype = c_z
    ws_bytes = klc.lib.klc_mla_decode_workspace_bytes(klc.ctx, B, H, D, L, max(max(lengths), capacity))
    ws = torch.empty(ws_bytes // 4 + 1, device="cuda")
    lens = (ctypes.c_int32 * B)(*lengths)
    cps = ptrs(caches)
    ctype = KLC_CACHE_BF16 if caches[0].dtype == torch.bfloat16 else KLC_CACHE_F32
    pos = c_p(positions.data_ptr() if positions is not None else 0)
    run = lambda: klc._check(klc.lib.klc_mla_decode(klc.ctx, c_p(q.data_ptr()), cps, ctype, lens, pos, capacity, c_p(out.data_ptr()),
                                                    c_p(ws.data_ptr()), c_z(ws_bytes), B, H, D, L, c_f(scale)))
    if run_now:
        run()
    return run, ws


def mla_case(klc, lengths, H=32, D=576, L=512, seed=5, exact=True, tol=None, cache_bf16=False, shared=False):
    """Against float64 attention over the caches' own values (bf16 ones widened), so a bf16 cache is held to
    the kernel's tolerance: its rounding is the cache's, not the kernel's. shared: every sequence reads the
    first one's rows (as forks of one repository do) up to its own length.
    In tensor-core mode a bf16 cache with D a multiple of 16 and L of 256 takes the bf16 MMA kernel
    (mla_decode_bf16.cu), other shapes the TF32 one."""
    g = torch.Generator(device="cuda").manual_seed(seed)
    B = len(lengths)
    scale = (D - L + 128) ** -0.5 if D == 576 else (D - L + 32) ** -0.5
    if shared:
        base = torch.randn(max(lengths), D, device="cuda", generator=g)
        base = base.to(torch.bfloat16) if cache_bf16 else base
        caches = [base[:n] for n in lengths]
    else:
        caches = [torch.randn(n, D, device="cuda", generator=g) for n in lengths]
        caches = [c.to(torch.bfloat16) for c in caches] if cache_bf16 else caches
    q = torch.randn(B * H, D, device="cuda", generator=g) * 0.6
    out = torch.full((B * H, L), float("nan"), device="cuda")
    set_tensor_cores(klc, not exact)
    mla_call(klc, q, caches, lengths, out, B, H, D, L, scale)
    klc.sync()
    err = 0.0
    for b, cache in enumerate(caches):
        c = cache.double()
        p = torch.softmax((q[b * H:(b + 1) * H].double() @ c.T) * scale, 1)
        err = max(err, rel(out[b * H:(b + 1) * H], p @ c[:, :L]))
    mode = ("exact (3xTF32)" if exact else "tensor-core") + (", bf16 cache" if cache_bf16 else "") + (", shared rows" if shared else "") + (
        ", 32-key blocks" if os.environ.get("KLC_MLA_DECODE_BLOCK") == "32" else "")
    check(f"mla decode {mode} B={B} H={H} D={D} L={L} lengths={lengths}", err, tol or (1e-4 if exact else 1e-2))
    set_tensor_cores(klc, False)


def mla_graph_case(klc, lengths, exact, cache_bf16, steps=3, H=32, D=576, L=512, eps=1e-6, seed=8):
    """One decode step's MLA part as the CUDA backend records it: klc_mla_append_at writes each sequence's
    new row at its position, klc_mla_decode reads the positions from device memory with a split plan made
    for a capacity beyond them. Recorded once in a CUDA graph (klc_graph_begin/end), replayed for `steps`
    steps with the positions advanced in device memory only; every step's rows and outputs are checked
    against float64 (the norm of spec §3 and attention over the rows up to each new one)."""
    g = torch.Generator(device="cuda").manual_seed(seed)
    B = len(lengths)
    scale = 192 ** -0.5
    dtype = torch.bfloat16 if cache_bf16 else torch.float32
    capacity = (max(lengths) + steps + 255) // 256 * 256
    caches = [torch.randn(capacity, D, device="cuda", generator=g).to(dtype) for _ in lengths]
    ckv = torch.empty(B, D, device="cuda")
    w = torch.rand(L, device="cuda", generator=g) + 0.5
    q = torch.empty(B * H, D, device="cuda")
    out = torch.empty(B * H, L, device="cuda")
    positions = torch.tensor([n - 1 for n in lengths], dtype=torch.int32, device="cuda")
    ctype = KLC_CACHE_BF16 if cache_bf16 else KLC_CACHE_F32
    set_tensor_cores(klc, not exact)
    decode, _ws = mla_call(klc, q, caches, lengths, out, B, H, D, L, scale, positions=positions, capacity=capacity, run_now=False)
    cps = ptrs(caches)
    append = lambda: klc._check(klc.lib.klc_mla_append_at(klc.ctx, c_p(ckv.data_ptr()), c_p(w.data_ptr()), cps, ctype,
                                                           c_p(positions.data_ptr()), B, D, L, c_f(eps)))
    torch.cuda.synchronize()
    klc._check(klc.lib.klc_graph_begin(klc.ctx))
    append()
    decode()
    graph = c_p()
    klc._check(klc.lib.klc_graph_end(klc.ctx, ctypes.byref(graph)))
    err_rows, err_out = 0.0, 0.0
    for s in range(steps):
        ckv.copy_(torch.randn(B, D, device="cuda", generator=g))
        q.copy_(torch.randn(B * H, D, device="cuda", generator=g) * 0.6)
        positions.copy_(torch.tensor([n - 1 + s for n in lengths], dtype=torch.int32))
        out.fill_(float("nan"))
        torch.cuda.synchronize()
        launched = c_i(0)
        klc._check(klc.lib.klc_graph_launch(klc.ctx, graph, ctypes.byref(launched)))
        klc.sync()
        if launched.value != 1:
            check(f"mla graph replay B={B}: the graph was not launched", 1.0, 0.5)
            return
        x = ckv.double()
        normed = x[:, :L] * torch.rsqrt((x[:, :L] ** 2).mean(1, keepdim=True) + eps) * w.double()
        want_rows = torch.cat([normed, x[:, L:]], 1)
        for b, n in enumerate(lengths):
            n = n + s
            err_rows = max(err_rows, rel(caches[b][n - 1:n].float(), want_rows[b:b + 1].to(dtype).double()))
            c = caches[b][:n].double()
            p = torch.softmax((q[b * H:(b + 1) * H].double() @ c.T) * scale, 1)
            err_out = max(err_out, rel(out[b * H:(b + 1) * H], p @ c[:, :L]))
    klc._check(klc.lib.klc_graph_free(klc.ctx, graph))
    set_tensor_cores(klc, False)
    mode = ("exact" if exact else "tensor-core") + (", bf16 cache" if cache_bf16 else "")
    check(f"mla append+decode replayed from one CUDA graph {mode}, {steps} steps from lengths={lengths}: appended rows", err_rows,
          8e-3 if cache_bf16 else 1e-5)
    check(f"mla append+decode replayed from one CUDA graph {mode}, {steps} steps from lengths={lengths}: output", err_out,
          1e-4 if exact else 1e-2)


# ---- sampling --------------------------------------------------------------------------------------

_orders = {}


def pick_token(row, temperature, top_p, top_k, vocab, uniform):
    """src/engine/sampler.ts pickToken, line by line, in float64 on the fp32 logits."""
    full, row = row, row[:vocab]
    if not (temperature > 0 and top_k != 1):
        best = 0
        for i in range(1, len(row)):
            if row[i] > row[best]:
                best = i
        return best
    # The sorted order of a row is reused by later draws on the same row (the sort is the slow part).
    key = (id(full), len(row))
    if key not in _orders:
        _orders.clear()
        _orders[key] = (full, sorted(range(len(row)), key=lambda i: (-row[i], i)))
    order = _orders[key][1]
    if top_k > 0:
        order = order[:top_k]
    mx = row[order[0]]
    weights = [math.exp((row[i] - mx) / temperature) for i in order]
    total = 0.0
    for w in weights:
        total += w
    keep = len(order)
    if top_p < 1:
        cum = 0.0
        for j in range(len(order)):
            cum += weights[j] / total
            if cum >= top_p:
                keep = j + 1
                break
    kept_total = 0.0
    for w in weights[:keep]:
        kept_total += w
    r = uniform * kept_total
    for j in range(keep):
        r -= weights[j]
        if r < 0:
            return order[j]
    return order[keep - 1]


def sample_call(klc, logits, picks):
    rows, ld = logits.shape
    klc.lib.klc_sample_workspace_bytes.restype = c_z
    ws_bytes = klc.lib.klc_sample_workspace_bytes(rows, ld)
    ws = torch.empty(max(ws_bytes, 1), dtype=torch.uint8, device="cuda")
    ids = torch.full((rows,), -1, dtype=torch.int32, device="cuda")
    arr = (TokenPick * rows)(*[TokenPick(p["temperature"], p["top_p"], p["uniform"], p["top_k"], p["vocab"]) for p in picks])
    run = lambda: klc._check(klc.lib.klc_sample(klc.ctx, c_p(logits.data_ptr()), ld, rows, arr, c_p(ids.data_ptr()),
                                                c_p(ws.data_ptr()), c_z(ws_bytes)))
    run()
    return run, ids, ws


def sample_cases(klc, ld, seed=3):
    g = torch.Generator().manual_seed(seed)
    picks, rows = [], []

    def add(logits, **p):
        pk = dict(temperature=1.0, top_p=1.0, top_k=0, vocab=ld, uniform=float(torch.rand(1, generator=g)))
        pk.update(p)
        picks.append(pk)
        rows.append(logits)

    base = lambda sc=3.0: torch.randn(ld, generator=g) * sc
    add(base(), temperature=0.0, label="greedy")
    add(base(), temperature=0.8, top_k=1, label="top-k 1 is greedy")
    tied = base()
    tied[[17, 5, 900, ld - 3]] = tied.max() + 1.0
    add(tied, temperature=0.0, label="greedy ties: lowest index")
    beyond = base()
    beyond[ld - 5] = beyond.max() + 10.0
    add(beyond, temperature=0.0, vocab=ld - 100, label="greedy with vocab limit")
    add(beyond.clone(), temperature=2.0, top_k=40, vocab=ld - 100, label="top-k with vocab limit")
    add(base(), temperature=0.7, top_k=50, label="temperature 0.7 top-k 50")
    add(base(), temperature=1.0, top_p=0.9, label="top-p 0.9")
    add(base(1.0), temperature=1.3, top_p=0.95, top_k=0, label="top-p 0.95 wide")
    add(base(1.0), temperature=1.0, label="full distribution")
    add(base(), temperature=0.6, top_k=200, top_p=0.8, label="top-k 200 + top-p 0.8")
    coarse = torch.round(base() * 2) / 2
    add(coarse, temperature=1.0, top_k=64, label="many ties, top-k 64")
    add(coarse.clone(), temperature=0.9, top_p=0.7, label="many ties, top-p 0.7")
    zeros = -5.0 - torch.rand(ld, generator=g)
    zeros[[3, 9, 40]] = torch.tensor([0.0, -0.0, 0.0])
    add(zeros, temperature=1.0, top_k=3, uniform=0.5, label="+0 and -0 tie")
    add(base(), temperature=1.0, top_k=10, uniform=0.0, label="uniform 0")
    add(base(), temperature=1.0, top_k=10, uniform=0.9999999, label="uniform near 1")
    add(base(), temperature=1e-3, label="tiny temperature")
    logits = torch.stack(rows).float().contiguous()
    _, ids, _ = sample_call(klc, logits.cuda(), picks)
    got = ids.cpu().tolist()
    host = logits.tolist()
    bad = []
    for r, p in enumerate(picks):
        want = pick_token(host[r], p["temperature"], p["top_p"], p["top_k"], p["vocab"], p["uniform"])
        if got[r] != want:
            bad.append(f"{p['label']}: got {got[r]} want {want}")
    for r, p in enumerate(picks):
        results.append({"case": f"sample ld={ld} {p['label']}", "got": got[r], "ok": not any(b.startswith(p["label"] + ":") for b in bad)})
    check(f"sampling ld={ld}: {len(picks)} rows vs the pickToken port ({'; '.join(bad) if bad else 'all equal'})", float(len(bad)), 0.5)
    # Many random draws on one distribution: every id must match the port.
    row = base(1.0)
    draws = [dict(temperature=0.9, top_p=0.85, top_k=0, vocab=ld, uniform=float(u)) for u in torch.rand(MAX_BATCH, generator=g)]
    logits = row[None, :].expand(MAX_BATCH, ld).contiguous().cuda()
    _, ids, _ = sample_call(klc, logits, draws)
    host = row.tolist()
    want = [pick_token(host, **d) for d in draws]
    mism = sum(int(a != b) for a, b in zip(ids.cpu().tolist(), want))
    check(f"sampling ld={ld}: {MAX_BATCH} draws of one top-p distribution vs the port", float(mism), 0.5, distinct=len(set(want)))


# ---- timing ----------------------------------------------------------------------------------------

def timed(fn, iters=20):
    fn()
    torch.cuda.synchronize()
    a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    a.record()
    for _ in range(iters):
        fn()
    b.record()
    torch.cuda.synchronize()
    return a.elapsed_time(b) / iters


def copy_bandwidth():
    x = torch.empty(2 ** 28, device="cuda")
    y = torch.empty_like(x)
    ms = timed(lambda: y.copy_(x), 10)
    return 2 * x.numel() * 4 / ms / 1e6


def timing(klc, card):
    table = []
    bw = copy_bandwidth()
    print(f"card: {card}; device-to-device copy {bw:.0f} GB/s (read + write)", flush=True)
    H, D, L = 32, 576, 512
    scale = 192 ** -0.5
    klc.lib.klc_mla_splits.restype = c_i
    klc.lib.klc_mla_workspace_bytes.restype = c_z
    for n in (4096, 32768, 131072, 1048576):
        for B in (1, 8):
            caches = [torch.randn(n, D, device="cuda") for _ in range(B)]
            caches_bf16 = [c.to(torch.bfloat16) for c in caches]
            q = torch.randn(B * H, D, device="cuda") * 0.6
            out = torch.empty(B * H, L, device="cuda")
            row = {"what": "mla decode", "keys": n, "B": B, "cache_MB": round(B * n * D * 4 / 1e6, 1)}
            # tc_bf16: the default mode as the backend runs it, over a bf16 cache (half the bytes): the bf16 MMA kernel.
            for label, tc, cs, el in (("exact", False, caches, 4), ("tf32", True, caches, 4), ("tc_bf16", True, caches_bf16, 2)):
                set_tensor_cores(klc, tc)
                run, _ws = mla_call(klc, q, cs, [n] * B, out, B, H, D, L, scale)
                ms = timed(run)
                row[f"{label}_ms"] = round(ms, 4)
                row[f"{label}_GBps"] = round(B * n * D * el / ms / 1e6, 0)
                row[f"{label}_of_copy"] = round(B * n * D * el / ms / 1e6 / bw, 3)
            set_tensor_cores(klc, False)
            if B == 1:
                splits = klc.lib.klc_mla_splits(klc.ctx, H, n)
                wsb = klc.lib.klc_mla_workspace_bytes(H, L, splits)
                ws = torch.empty(wsb // 4 + 1, device="cuda")
                old = lambda: klc._check(klc.lib.klc_mla_attention(klc.ctx, c_p(q.data_ptr()), c_p(caches[0].data_ptr()), KLC_CACHE_F32, c_p(out.data_ptr()),
                                                                   c_p(ws.data_ptr()), c_z(wsb), 1, H, n - 1, D, L, c_f(scale), splits))
                row["single_sequence_kernel_ms"] = round(timed(old), 4)
            table.append(row)
            print(row, flush=True)
            del caches, caches_bf16
        # Eight forks of one repository: the same bf16 rows behind every sequence, read once from memory
        # when the forks' CTAs walk them together (GB/s counts the rows once).
        shared = [torch.randn(n, D, device="cuda").to(torch.bfloat16)] * 8
        q = torch.randn(8 * H, D, device="cuda") * 0.6
        out = torch.empty(8 * H, L, device="cuda")
        set_tensor_cores(klc, True)
        run, _ws = mla_call(klc, q, shared, [n] * 8, out, 8, H, D, L, scale)
        ms = timed(run)
        set_tensor_cores(klc, False)
        row = {"what": "mla decode, 8 forks of one bf16 cache", "keys": n, "B": 8, "tc_bf16_ms": round(ms, 4),
               "rows_once_GBps": round(n * D * 2 / ms / 1e6, 0), "rows_once_of_copy": round(n * D * 2 / ms / 1e6 / bw, 3)}
        table.append(row)
        print(row, flush=True)
        del shared
    for B in (1, 8):
        H, K, W = 32, 128, 4
        x = kda_inputs(B, H, K, K, W, 1)
        ms = timed(lambda: kda_call(klc, x, B, H, K, K, W), 50)
        state_bytes = B * H * K * K * 4 * 2
        row = {"what": "kda decode", "B": B, "H": H, "K": K, "ms": round(ms, 4), "state_read_write_MB": state_bytes / 1e6,
               "GBps": round(state_bytes / ms / 1e6, 0)}
        table.append(row)
        print(row, flush=True)
        x["b_in"] = torch.randn(B, 2304, device="cuda")
        x["b_w"] = torch.randn(H, 2304, device="cuda").to(torch.bfloat16)
        x["o_norm_w"] = torch.ones(K, device="cuda")
        x["gate"] = torch.randn(B, H * K, device="cuda")
        ms = timed(lambda: kda_call(klc, x, B, H, K, K, W), 50)
        row = {"what": "kda decode, beta from b_proj (bf16, d 2304) and the gated norm in the launch", "B": B, "H": H, "K": K, "ms": round(ms, 4)}
        table.append(row)
        print(row, flush=True)
    for B in (1, 8):
        ld = 163840
        logits = torch.randn(B, ld, device="cuda") * 3
        for label, pk in (("greedy", dict(temperature=0.0, top_p=1.0, top_k=0)), ("top-p 0.9", dict(temperature=0.8, top_p=0.9, top_k=0)),
                          ("top-k 50", dict(temperature=0.8, top_p=1.0, top_k=50))):
            run, _ids, _ws = sample_call(klc, logits, [dict(pk, vocab=ld, uniform=0.5)] * B)
            row = {"what": f"sample {label}", "B": B, "vocab": ld, "ms": round(timed(run), 4)}
            table.append(row)
            print(row, flush=True)
    return table


def main():
    out_json = sys.argv[1] if len(sys.argv) > 1 else "/dev/null"
    klc = Klc()
    card = torch.cuda.get_device_name()
    for B in (1, 3, 8):
        kda_case(klc, B, 32, 128, 128)
    kda_case(klc, 3, 4, 32, 32)
    kda_case(klc, 1, 32, 128, 128, b_proj=torch.bfloat16)
    kda_case(klc, 8, 32, 128, 128, b_proj=torch.float32)
    kda_case(klc, 3, 4, 32, 32, gated_norm=True)
    kda_case(klc, 1, 32, 128, 128, b_proj=torch.bfloat16, gated_norm=True)
    kda_case(klc, 8, 32, 128, 128, b_proj=torch.float32, gated_norm=True)
    kda_case(klc, 2, 5, 100, 100, W=3)
    router_case(klc, 1, 256, 2304, 8, torch.float32)
    router_case(klc, 8, 256, 2304, 8, torch.bfloat16)
    router_case(klc, 3, 8, 128, 2, torch.float32, renorm=False, scaling=1.0)
    router_case(klc, 5, 200, 1000, 6, torch.bfloat16)
    router_norm_case(klc, 1, 256, 2304, 8, torch.float32)
    router_norm_case(klc, 8, 256, 2304, 8, torch.float32)
    router_norm_case(klc, 3, 200, 1000, 6, torch.bfloat16)
    router_refused(klc)
    for exact in (True, False):
        mla_case(klc, [70], H=4, D=80, L=64, exact=exact)
        mla_case(klc, [1, 63, 300], H=4, D=80, L=64, exact=exact)
        mla_case(klc, [131072], exact=exact)
        mla_case(klc, [1, 63, 4096, 40000, 131072], exact=exact)
    for exact in (False, True):
        mla_case(klc, [1, 63, 300], H=4, D=80, L=64, exact=exact, cache_bf16=True)
        mla_case(klc, [1, 63, 4096, 40000, 131072], exact=exact, cache_bf16=True)
    # The bf16 MMA kernel: ragged lengths at other widths, a partial head group, a 1M-token cache, and
    # eight forks' reads of one repository's rows.
    mla_case(klc, [1, 17, 64, 65, 1000, 3001], H=4, D=320, L=256, exact=False, cache_bf16=True)
    mla_case(klc, [5000, 17], H=40, exact=False, cache_bf16=True)
    mla_case(klc, [1048576, 33], exact=False, cache_bf16=True)
    mla_case(klc, [131072 + 7 * i for i in range(8)], exact=False, cache_bf16=True, shared=True)
    # Its 32-key form, which Ampere and Ada cards run (less shared memory), checked here too.
    os.environ["KLC_MLA_DECODE_BLOCK"] = "32"
    mla_case(klc, [1, 17, 64, 65, 1000, 3001], H=4, D=320, L=256, exact=False, cache_bf16=True)
    mla_case(klc, [1, 63, 4096, 40000, 131072], exact=False, cache_bf16=True)
    mla_case(klc, [5000, 17], H=40, exact=False, cache_bf16=True)
    del os.environ["KLC_MLA_DECODE_BLOCK"]
    mla_case(klc, [40000], exact=True)
    mla_case(klc, [5000, 17], H=40, exact=True)
    # Decode steps replayed from a CUDA graph (src/engine/backends/cuda/decode-graphs.ts).
    mla_graph_case(klc, [1, 255, 256, 3000], exact=False, cache_bf16=True)
    mla_graph_case(klc, [200000, 40], exact=False, cache_bf16=True)
    mla_graph_case(klc, [1, 255, 3000], exact=True, cache_bf16=False)
    sample_cases(klc, 4096)
    sample_cases(klc, 163840, seed=4)
    table = timing(klc, card)
    klc.close()
    json.dump({"card": card, "checks": results, "timing": table}, open(out_json, "w"), indent=1)
    failed = [r for r in results if not r["ok"]]
    print(f"{len(results) - len(failed)} of {len(results)} checks passed on {card}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
