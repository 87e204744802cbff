"""Device check of single layer kernels of native/src/ops.cu against float64 torch references:
MLA attention over the latent cache (prefill with and without a cached prefix at Kimi's shapes,
up to 32k tokens; decode over a long cache, split over the keys) and the bf16-weight linear layer
at the model's shapes. Prints one line per case and exits non-zero when a case fails."""
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


def mla_case(klc, T, H, start, D=576, L=512, sample=48, seed=0):
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
    check(f"mla T={T} H={H} start={start} D={D} L={L} splits={splits}", err, 1e-4, ms=round(ms, 2), rows_checked=len(idx))


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


def main():
    klc = Klc()
    klc.lib.klc_mla_splits.restype = c_i
    for M, N, K in ((1, 4096, 2304), (3, 576, 2304), (200, 12288, 2304), (1000, 2304, 4096), (77, 163840 // 8, 2304)):
        linear_case(klc, M, N, K)
    mla_case(klc, 5, 4, 0, D=80, L=64)
    mla_case(klc, 200, 32, 0)
    mla_case(klc, 300, 32, 1000)
    mla_case(klc, 1, 32, 32767)
    mla_case(klc, 1, 32, 100000)
    mla_case(klc, 32768, 4, 0)
    klc.close()
    json.dump(results, open(sys.argv[1] if len(sys.argv) > 1 else "/dev/null", "w"), indent=1)
    return 0 if all(r["ok"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
