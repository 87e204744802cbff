"""KDA kernels of libklc_native vs a float64 token-by-token reference, on the GPU.

Cases: the shared golden vectors (../shared/golden/kda, copied to $KLC_GOLDEN), and random
layer-like inputs at lengths that are not multiples of the chunk, T >= 32k, batch > 1, H = 32,
K = V = 128, strong gates, several prefill passes, prefill continuation and decode steps; the
default prefill (intra-chunk part and state pass on tensor cores) and, on two cases, the CUDA-core
intra kernel and the all-CUDA-core prefill.
Prints one line per check and exits non-zero when any check is out of tolerance.
"""
import json
import math
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from klc_cuda import Klc  # noqa: E402

DEV = "cuda"
TOL_O = 5e-3      # bf16 output: fla's bf16 chunk_kda lands at 2.1-4.7e-3 on the same goldens
TOL_STATE = 1e-4  # fp32 state
results = []


def rel(x, ref):
    x, ref = x.double(), ref.double()
    return float((x - ref).norm() / ref.norm().clamp_min(1e-300))


def check(name, o, o_ref, s, s_ref, tol_o=TOL_O, tol_s=TOL_STATE):
    eo, es = rel(o, o_ref), rel(s, s_ref)
    ok = eo <= tol_o and es <= tol_s and math.isfinite(eo) and math.isfinite(es)
    results.append({"case": name, "o_rel_l2": eo, "state_rel_l2": es, "ok": ok})
    print(f"{'PASS' if ok else 'FAIL'}  {name:48s} o {eo:.2e} (<= {tol_o:.0e})  state {es:.2e} (<= {tol_s:.0e})", flush=True)


def l2n(x):
    return x / torch.sqrt((x * x).sum(-1, keepdim=True) + 1e-6)


def gate64(graw, A_log, dt_bias, H, K):
    return -A_log.double().exp().view(H, 1) * F.softplus(graw.double() + dt_bias.double().view(H, K), threshold=20.0)


def ref_recurrent(q, k, v, g, beta, h0, scale):
    """float64 token recurrence of spec 2.1 step 8; q, k already normalised; all [B,T,H,*]."""
    q, k, v, g, beta = (x.double() for x in (q, k, v, g, beta))
    B, T, H, K = q.shape
    S = h0.double().clone()
    o = torch.empty(B, T, H, v.shape[-1], dtype=torch.float64, device=q.device)
    a = g.exp()
    for t in range(T):
        S.mul_(a[:, t].unsqueeze(-1))
        kt = k[:, t]
        u = v[:, t] - torch.einsum("bhk,bhkv->bhv", kt, S)
        S.add_(torch.einsum("bhk,bhv->bhkv", kt, u * beta[:, t].unsqueeze(-1)))
        o[:, t] = torch.einsum("bhk,bhkv->bhv", q[:, t] * scale, S)
    return o, S


def run_prefill(klc, q, k, v, g, beta, h0, scale, l2norm, A_log=None, dt_bias=None):
    B, T, H, _ = q.shape
    state = h0.float().contiguous().clone()
    o = torch.empty(B, T, H, v.shape[-1], dtype=torch.bfloat16, device=DEV)
    klc.prefill(Klc.args(q, k, v, g, beta, state, o, scale=scale, l2norm=l2norm, A_log=A_log, dt_bias=dt_bias))
    klc.sync()
    return o, state


def run_decode(klc, q, k, v, g, beta, h0, scale, l2norm, A_log=None, dt_bias=None):
    B, T, H, _ = q.shape
    state = h0.float().contiguous().clone()
    outs = []
    for t in range(T):
        ot = torch.empty(B, 1, H, v.shape[-1], dtype=torch.bfloat16, device=DEV)
        sl = lambda x: x[:, t:t + 1].contiguous()  # noqa: E731
        klc.decode(Klc.args(sl(q), sl(k), sl(v), sl(g), sl(beta), state, ot, scale=scale, l2norm=l2norm,
                            A_log=A_log, dt_bias=dt_bias))
        outs.append(ot)
    klc.sync()
    return torch.cat(outs, 1), state


def pad128(x, dim=-1):
    n = x.shape[dim]
    if n == 128:
        return x.contiguous()
    shape = list(x.shape)
    shape[dim] = 128 - n
    return torch.cat([x, torch.zeros(shape, dtype=x.dtype, device=x.device)], dim).contiguous()


def golden(klc, path, manifest_path):
    from safetensors.torch import load_file
    G = load_file(path, device=DEV)
    cases = json.load(open(manifest_path))["cases"]
    for name, c in cases.items():
        H, K, V = c["H"], c["K"], c["V"]
        raw = c["style"] == "raw"
        t = lambda key: G[f"{name}.{key}"]  # noqa: E731
        q, k = (pad128(t("q_raw")), pad128(t("k_raw"))) if raw else (pad128(t("q")), pad128(t("k")))
        v = pad128(t("v"))
        if raw:
            g, beta = pad128(t("g_raw").float()), t("beta_raw").float().contiguous()
            A_log = t("A_log").float().reshape(H).contiguous()
            dt_bias = pad128(t("dt_bias").float().reshape(H, K)).reshape(-1).contiguous()
        else:
            g, beta = pad128(t("g").float()), t("beta").float().contiguous()
            A_log = dt_bias = None
        N = c.get("N", 1)
        h0 = t("h0").float() if c["has_h0"] else torch.zeros(N, H, K, V, device=DEV)
        h0 = pad128(pad128(h0, -1).transpose(-1, -2), -1).transpose(-1, -2).contiguous()
        o_ref = t("ref.o").double()
        s_ref = t("ref.ht").double()
        cu = c.get("cu_seqlens") or [0, c["T"]]
        for mode in ("prefill", "decode"):
            if mode == "decode" and c["T"] > 300:
                continue
            os_, ss = [], []
            for i in range(len(cu) - 1):
                sl = lambda x: x[:, cu[i]:cu[i + 1]].contiguous()  # noqa: E731
                fn = run_prefill if mode == "prefill" else run_decode
                o, s = fn(klc, sl(q), sl(k), sl(v), sl(g), sl(beta), h0[i:i + 1], c["scale"], l2norm=raw,
                          A_log=A_log, dt_bias=dt_bias)
                os_.append(o[..., :V])
                ss.append(s[:, :, :K, :V])
            check(f"golden {name} {mode} (H={H} K={K} T={c['T']})", torch.cat(os_, 1), o_ref, torch.cat(ss, 0), s_ref)


def layer_inputs(B, T, H, seed, gate_boost=0.0):
    """Raw layer outputs like the KDA projections: the kernel does l2norm, gate and sigmoid."""
    gen = torch.Generator(device=DEV).manual_seed(seed)
    K = V = 128
    q = torch.randn(B, T, H, K, device=DEV, generator=gen).bfloat16()
    k = torch.randn(B, T, H, K, device=DEV, generator=gen).bfloat16()
    v = torch.randn(B, T, H, V, device=DEV, generator=gen).bfloat16()
    g = (torch.randn(B, T, H, K, device=DEV, generator=gen) + gate_boost).bfloat16().float()
    beta = torch.randn(B, T, H, device=DEV, generator=gen).bfloat16().float()
    A_log = torch.log(torch.empty(H, device=DEV).uniform_(1, 16, generator=gen))
    dt = torch.exp(torch.rand(H * K, device=DEV, generator=gen) * (math.log(0.1) - math.log(0.001)) + math.log(0.001))
    dt_bias = (dt + torch.log(-torch.expm1(-dt))).float()
    h0 = torch.randn(B, H, K, V, device=DEV, generator=gen) * 0.1
    return q, k, v, g, beta, A_log, dt_bias, h0


def reference_for(q, k, v, g, beta, A_log, dt_bias, h0):
    H, K = q.shape[2], q.shape[3]
    return ref_recurrent(l2n(q.double()), l2n(k.double()), v, gate64(g, A_log, dt_bias, H, K),
                         torch.sigmoid(beta.double()), h0, K ** -0.5)


def random_cases(klc):
    shapes = [  # (label, B, T, H, gate_boost, segment tokens)
        ("T=1000 H=4", 1, 1000, 4, 0.0, 16384),
        ("B=3 T=777 H=32", 3, 777, 32, 0.0, 16384),
        ("strong gates B=2 T=333 H=8 (g down to ~-1e3)", 2, 333, 8, 6.0, 16384),
        ("B=2 T=5000 H=32, 1024-token passes", 2, 5000, 32, 0.0, 2048),
        ("T=32805 H=32 (>=32k, ragged)", 1, 32805, 32, 0.0, 16384),
    ]
    if os.environ.get("KLC_CHECK_QUICK") == "1":  # a quick pass while iterating on a kernel: the short cases
        shapes = shapes[:3]
    for label, B, T, H, boost, seg in shapes:
        klc.set_max_segment_tokens(seg)
        q, k, v, g, beta, A_log, dt_bias, h0 = layer_inputs(B, T, H, seed=T + H, gate_boost=boost)
        o_ref, s_ref = reference_for(q, k, v, g, beta, A_log, dt_bias, h0)
        o, s = run_prefill(klc, q, k, v, g, beta, h0, None, True, A_log, dt_bias)
        check(f"prefill {label}", o, o_ref, s, s_ref)
        if T <= 5000:
            # continuation: prefill of a prefix, then the rest from the GPU-resident state
            cut = T // 3 + 5
            o1, s1 = run_prefill(klc, *(x[:, :cut].contiguous() for x in (q, k, v, g, beta)), h0, None, True, A_log, dt_bias)
            o2, s2 = run_prefill(klc, *(x[:, cut:].contiguous() for x in (q, k, v, g, beta)), s1, None, True, A_log, dt_bias)
            check(f"prefill split at {cut} {label}", torch.cat([o1, o2], 1), o_ref, s2, s_ref)
            # decode 24 tokens from the state after T-24 tokens of prefill
            n = 24
            _, sp = run_prefill(klc, *(x[:, :T - n].contiguous() for x in (q, k, v, g, beta)), h0, None, True, A_log, dt_bias)
            od, sd = run_decode(klc, *(x[:, T - n:].contiguous() for x in (q, k, v, g, beta)), sp, None, True, A_log, dt_bias)
            check(f"decode last {n} {label}", od, o_ref[:, T - n:], sd, s_ref)
        del q, k, v, g, beta, o_ref, s_ref
        torch.cuda.empty_cache()
    klc.set_max_segment_tokens(16384)


def other_paths(klc):
    """The CUDA-core intra kernel (KLC_KDA_TENSOR_CORES=state) and the all-CUDA-core prefill (=0)
    against the same float64 reference, on a batch and on strong gates."""
    shapes = [("B=3 T=777 H=32", 3, 777, 32, 0.0), ("strong gates B=2 T=333 H=8", 2, 333, 8, 6.0)]
    for mode in ("state", "0"):
        os.environ["KLC_KDA_TENSOR_CORES"] = mode
        try:
            for label, B, T, H, boost in shapes:
                q, k, v, g, beta, A_log, dt_bias, h0 = layer_inputs(B, T, H, seed=T + H, gate_boost=boost)
                o_ref, s_ref = reference_for(q, k, v, g, beta, A_log, dt_bias, h0)
                o, s = run_prefill(klc, q, k, v, g, beta, h0, None, True, A_log, dt_bias)
                check(f"prefill KLC_KDA_TENSOR_CORES={mode} {label}", o, o_ref, s, s_ref)
        finally:
            del os.environ["KLC_KDA_TENSOR_CORES"]


def main():
    klc = Klc(0)
    print(f"device: {torch.cuda.get_device_name(0)}; library archs: {klc.lib.klc_build_archs().decode()}", flush=True)
    gdir = os.environ.get("KLC_GOLDEN", ".device/golden")
    golden(klc, os.path.join(gdir, "kda_golden.safetensors"), os.path.join(gdir, "kda_golden_manifest.json"))
    random_cases(klc)
    other_paths(klc)
    klc.close()
    out = os.environ.get("OUT")
    if out:
        json.dump(results, open(os.path.join(out, "kda_check.json"), "w"), indent=1)
    bad = [r for r in results if not r["ok"]]
    print(f"{len(results) - len(bad)}/{len(results)} checks passed", flush=True)
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
