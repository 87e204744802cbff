"""Device check of single layer kernels of native/src/ops.cu against float64 torch references:
MLA attention over the latent cache (prefill with and without a cached prefix at Kimi's shapes,
up to 32k tokens; decode over a long cache, split over the keys) and the bf16-weight linear layer
at the model's shapes; then the tensor-core forms (cuBLAS, bf16 activations) of the linear layer,
the grouped MoE experts and MLA prefill attention (absorbed, and flash-style over up-projected heads; with
--mla-heads only the latter). Prints one line per case and exits non-zero when a case fails."""
import ctypes
import json
import sys

import torch

from klc_cuda import Klc

c_p, c_i, c_f, c_z, c_ll = ctypes.c_void_p, ctypes.c_int, ctypes.c_float, ctypes.c_size_t, ctypes.c_longlong
results = []


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


def mla_case(klc, T, H, start, D=576, L=512, sample=48, seed=0, tol=1e-4, label=""):
    g = torch.Generator(device="cuda").manual_seed(seed)
    total = start + T
    cache = torch.randn(total, D, device="cuda", generator=g)
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
    klc._check(klc.lib.klc_mla_attention(klc.ctx, c_p(q.data_ptr()), c_p(cache.data_ptr()), c_p(out.data_ptr()),
                                         c_p(ws.data_ptr()), c_z(ws_bytes), T, H, start, D, L, c_f(scale), splits))
    stop_ev.record()
    klc.sync()
    ms = start_ev.elapsed_time(stop_ev)
    idx = sorted(set([0, 1, rows - 1, rows - 2] + torch.randint(0, rows, (sample,), generator=torch.Generator().manual_seed(seed)).tolist()))
    want = mla_reference(q, cache, idx, H, start, L, scale)
    got = out[idx].double()
    err = ((got - want).abs().max() / want.abs().max()).item()
    check(f"{label}mla T={T} H={H} start={start} D={D} L={L} splits={splits}", err, tol, ms=round(ms, 2), rows_checked=len(idx))


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
    y_b = y[:, b*N:]. Reference: float64 products of the bf16-rounded activations."""
    g = torch.Generator(device="cuda").manual_seed(seed)
    x = torch.randn(M, batch * K, device="cuda", generator=g)
    w = (torch.randn(batch, N, K, device="cuda", generator=g) * K ** -0.5).to(torch.bfloat16)
    y = torch.full((M, batch * N), 0.5, device="cuda")
    klc._check(klc.lib.klc_linear(klc.ctx, c_p(x.data_ptr()), batch * K, c_p(w.data_ptr()), c_p(y.data_ptr()), batch * N, M, N,
                                  K, batch, c_ll(K), c_ll(N * K), c_ll(N), 1, 0))
    klc.sync()
    want = torch.cat([0.5 + bf16(x[:, b * K:(b + 1) * K]) @ w[b].double().T for b in range(batch)], 1)
    err = ((y.double() - want).abs().max() / want.abs().max()).item()
    check(f"tensor-core linear M={M} N={N} K={K} batch={batch} accumulate", err, 1e-4)


def tc_moe_case(klc, T, d=2304, I=1024, E=256, k=8, seed=3):
    """Grouped tensor-core MoE against float64 experts on bf16-rounded inputs; the SwiGLU output is
    rounded to bf16 on the GPU, hence a bf16-level tolerance. The exact kernel runs the same call."""
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


def mla_heads_case(klc, T, H, start, sample=24, seed=7, tol=1e-2, compare=False):
    """klc_mla_prefill_heads (flash-style, up-projected keys/values, tensor cores) against float64
    attention with keys (W_UK[h] c_j, pe_j) and values W_UV[h] c_j; with compare, also against the
    absorbed tensor-core path (klc_mla_attention, then W_UV) on every row, both timed."""
    g = torch.Generator(device="cuda").manual_seed(seed)
    nope, rope, dv, L = 128, 64, 128, 512
    D, total, scale = L + rope, start + T, (nope + rope) ** -0.5
    cache = torch.randn(total, D, device="cuda", generator=g)
    q = torch.randn(T, H, nope + rope, device="cuda", generator=g) * 1.5
    wukt = (torch.randn(H, L, nope, device="cuda", generator=g) * L ** -0.5).to(torch.bfloat16)
    wuv = (torch.randn(H, dv, L, device="cuda", generator=g) * L ** -0.5).to(torch.bfloat16)
    out = torch.full((T, H * dv), float("nan"), device="cuda")
    ev = [torch.cuda.Event(enable_timing=True) for _ in range(4)]
    torch.cuda.synchronize()
    ev[0].record()
    klc._check(klc.lib.klc_mla_prefill_heads(klc.ctx, c_p(q.data_ptr()), c_p(cache.data_ptr()), c_p(wukt.data_ptr()),
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
        klc._check(klc.lib.klc_mla_attention(klc.ctx, c_p(qfull.data_ptr()), c_p(cache.data_ptr()), c_p(lat.data_ptr()),
                                             c_p(ws.data_ptr()), c_z(ws_bytes), T, H, start, D, L, c_f(scale), splits))
        ev[3].record()
        klc.sync()
        extra["ms_absorbed"] = round(ev[2].elapsed_time(ev[3]), 2)
        old = torch.einsum("thl,hvl->thv", lat.view(T, H, L), wuv.float()).reshape(T, H * dv)
        del qfull, lat, ws
        extra["vs_absorbed"] = float(((out - old).abs().max() / old.abs().max()).item())
        extra["absorbed_vs_f64"] = float(((old.view(rows, dv)[idx].double() - want).abs().max() / want.abs().max()).item())
        check(f"flash MLA prefill T={T} H={H} start={start} vs the absorbed tensor-core path", extra["vs_absorbed"], tol)
    check(f"flash MLA prefill T={T} H={H} start={start} vs float64", err, tol, **extra)


def mla_heads_cases(klc):
    klc.lib.klc_mla_workspace_bytes.restype = c_z
    print(f"engine: {set_tensor_cores(klc, True)}", flush=True)
    mla_heads_case(klc, 5, 4, 0)
    mla_heads_case(klc, 300, 32, 1000, compare=True)
    mla_heads_case(klc, 1000, 8, 7692)
    mla_heads_case(klc, 4096, 32, 20000, compare=True)
    mla_heads_case(klc, 32768, 32, 0, compare=True)


def main():
    klc = Klc()
    klc.lib.klc_mla_splits.restype = c_i
    if "--mla-heads" in sys.argv:
        mla_heads_cases(klc)
        klc.close()
        json.dump(results, open(sys.argv[1], "w"), indent=1)
        return 0 if all(r["ok"] for r in results) else 1
    klc.lib.klc_mla_splits.restype = c_i
    for M, N, K in ((1, 4096, 2304), (3, 576, 2304), (200, 12288, 2304), (1000, 2304, 4096), (77, 163840 // 8, 2304)):
        linear_case(klc, M, N, K)
    mla_case(klc, 5, 4, 0, D=80, L=64)
    mla_case(klc, 200, 32, 0)
    mla_case(klc, 300, 32, 1000)
    mla_case(klc, 1, 32, 32767)
    mla_case(klc, 1, 32, 100000)
    mla_case(klc, 32768, 4, 0)
    print(f"engine: {set_tensor_cores(klc, True)}", flush=True)
    for M, N, K in ((1, 4096, 2304), (200, 12288, 2304), (1000, 2304, 4096), (77, 163840 // 8, 2304)):
        tc_linear_case(klc, M, N, K)
    tc_linear_case(klc, 300, 512, 128, batch=32)
    tc_moe_case(klc, 1000)
    tc_moe_case(klc, 64, E=32, k=4)
    tc_moe_case(klc, 1)
    for T, H, start in ((200, 32, 0), (300, 32, 1000), (4096, 32, 0), (32768, 4, 0), (20, 4, 5)):
        mla_case(klc, T, H, start, tol=1e-2, label="tensor-core ")
    mla_heads_cases(klc)
    klc.close()
    json.dump(results, open(sys.argv[1] if len(sys.argv) > 1 else "/dev/null", "w"), indent=1)
    return 0 if all(r["ok"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
