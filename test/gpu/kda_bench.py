"""Speed of the KDA kernels of libklc_native on this GPU, beside fla's chunk_kda in the same run.

Prefill: B=1, H=32, K=V=128, T in {4k, 16k, 64k}; inputs as Kimi's HF code passes them to fla
(q, k, v bf16; g fp32 log-decay; beta fp32; l2norm in the kernel). Timings are medians of
triton's do_bench (L2 flushed between calls). Decode: one step per call, each call in a CUDA
graph on its own buffers (more than L2 in total), against the bytes it must move.
fla's source is read from $FLA_SRC (carried, never committed). Figures only: nothing fails on time.
"""
import json
import math
import os
import sys
import types

import torch
import triton.testing as tt

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from klc_cuda import Klc  # noqa: E402

DEV = "cuda"
H, K, V = 32, 128, 128


def load_fla(src):
    # Register bare package modules so that fla's aggregating __init__ files (all layers and
    # models, transformers-version sensitive) are skipped; the kernels themselves are untouched.
    sys.path.insert(0, src)
    for name in ("fla", "fla.ops", "fla.modules"):
        mod = types.ModuleType(name)
        mod.__path__ = [os.path.join(src, *name.split("."))]
        sys.modules[name] = mod
    sys.modules["fla"].__version__ = "src"
    import fla.ops.kda as kda
    return kda.chunk_kda


def gate_params(gen):
    A_log = torch.log(torch.empty(H, device=DEV).uniform_(1, 16, generator=gen))
    dt = torch.exp(torch.rand(H * K, device=DEV, generator=gen) * (math.log(0.1) - math.log(0.001)) + math.log(0.001))
    return A_log, (dt + torch.log(-torch.expm1(-dt))).float()


def flops(T):  # same count as the shared anchor: 6CK + 4CV + 6KV + (2/3)C^2 per token per head
    C = 64
    return T * H * (6 * C * K + 4 * C * V + 6 * K * V + (2 / 3) * C * C)


def copy_tbps():
    x = torch.empty(2**28, device=DEV, dtype=torch.float32)
    y = torch.empty_like(x)
    ms = tt.do_bench(lambda: y.copy_(x), warmup=10, rep=100, return_mode="median")
    return 2 * x.numel() * 4 / ms / 1e9


def kernel_breakdown(fn):
    """GPU time per kernel name over one call, from the profiler (CUPTI sees our library's kernels too)."""
    from torch.profiler import ProfilerActivity, profile
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        fn()
        torch.cuda.synchronize()
    out = {}
    for ev in prof.key_averages():
        t = getattr(ev, "device_time_total", None) or getattr(ev, "cuda_time_total", 0)
        if t:
            out[ev.key[:60]] = t / 1e3
    return out


def bench_prefill(klc, chunk_kda, Ts, rows):
    for T in Ts:
        gen = torch.Generator(device=DEV).manual_seed(T)
        q = torch.randn(1, T, H, K, device=DEV, generator=gen).bfloat16()
        k = torch.randn(1, T, H, K, device=DEV, generator=gen).bfloat16()
        v = torch.randn(1, T, H, V, device=DEV, generator=gen).bfloat16()
        graw = torch.randn(1, T, H, K, device=DEV, generator=gen)
        braw = torch.randn(1, T, H, device=DEV, generator=gen)
        A_log, dt_bias = gate_params(gen)
        g = (-A_log.exp().view(H, 1) * torch.nn.functional.softplus(graw + dt_bias.view(H, K))).contiguous()
        beta = torch.sigmoid(braw).contiguous()
        state = torch.zeros(1, H, K, V, device=DEV)
        o = torch.empty(1, T, H, V, device=DEV, dtype=torch.bfloat16)
        a_pre = Klc.args(q, k, v, g, beta, state, o)
        a_raw = Klc.args(q, k, v, graw, braw, state, o, A_log=A_log, dt_bias=dt_bias)
        row = {"T": T, "B": 1, "H": H}
        with torch.inference_mode():
            state.zero_()
            klc.prefill(a_pre)
            torch.cuda.synchronize()
            ours_o, ours_s = o.clone(), state.clone()
            row["ours_ms"] = tt.do_bench(lambda: klc.prefill(a_pre), warmup=5, rep=100, return_mode="median")
            row["ours_gate_fused_ms"] = tt.do_bench(lambda: klc.prefill(a_raw), warmup=5, rep=100, return_mode="median")
            # The same library with the CUDA-core intra kernel (tensor-core state pass), then with
            # both parts on CUDA cores, for the tensor-core speedups and their agreement.
            for mode, key in (("state", "cc_intra"), ("0", "cuda_cores")):
                os.environ["KLC_KDA_TENSOR_CORES"] = mode
                try:
                    state.zero_()
                    klc.prefill(a_pre)
                    torch.cuda.synchronize()
                    row[f"o_rel_l2_tc_vs_{key}"] = float((ours_o.double() - o.double()).norm() / o.double().norm())
                    row[f"state_rel_l2_tc_vs_{key}"] = float((ours_s.double() - state.double()).norm()
                                                             / state.double().norm())
                    row[f"ours_{key}_ms"] = tt.do_bench(lambda: klc.prefill(a_pre), warmup=5, rep=100,
                                                        return_mode="median")
                    if T == Ts[-1] and mode == "state":
                        row["ours_cc_intra_kernels_ms"] = kernel_breakdown(lambda: klc.prefill(a_pre))
                finally:
                    del os.environ["KLC_KDA_TENSOR_CORES"]
            if chunk_kda is not None:
                fo, fs = chunk_kda(q, k, v, g, beta, output_final_state=True, use_qk_l2norm_in_kernel=True)
                torch.cuda.synchronize()
                row["fla_ms"] = tt.do_bench(lambda: chunk_kda(q, k, v, g, beta, output_final_state=True,
                                                              use_qk_l2norm_in_kernel=True),
                                            warmup=5, rep=100, return_mode="median")
                row["o_rel_l2_vs_fla"] = float((ours_o.double() - fo.double()).norm() / fo.double().norm())
                row["state_rel_l2_vs_fla"] = float((ours_s.double() - fs.double()).norm() / fs.double().norm())
        if T == Ts[-1]:
            row["ours_kernels_ms"] = kernel_breakdown(lambda: klc.prefill(a_pre))
        for key in ("ours_ms", "ours_gate_fused_ms", "ours_cc_intra_ms", "ours_cuda_cores_ms", "fla_ms"):
            if key in row:
                row[key.replace("_ms", "_Mtok_s")] = T / row[key] / 1e3
        row["ours_TFLOPs"] = flops(T) / row["ours_ms"] / 1e9
        rows.append(row)
        print(json.dumps(row), flush=True)
        del q, k, v, graw, braw, g, beta, state, o, ours_o, ours_s
        torch.cuda.empty_cache()


def bench_decode(klc, Bs, rows, copy_bw):
    stream = torch.cuda.Stream()
    for B in Bs:
        state_bytes = B * H * K * V * 4
        sets = max(4, min(64, math.ceil(256 * 2**20 / state_bytes)))
        gen = torch.Generator(device=DEV).manual_seed(B)
        bufs = []
        for _ in range(sets):
            q = torch.randn(B, 1, H, K, device=DEV, generator=gen).bfloat16()
            k = torch.randn(B, 1, H, K, device=DEV, generator=gen).bfloat16()
            v = torch.randn(B, 1, H, V, device=DEV, generator=gen).bfloat16()
            g = torch.randn(B, 1, H, K, device=DEV, generator=gen)
            beta = torch.randn(B, 1, H, device=DEV, generator=gen)
            state = torch.randn(B, H, K, V, device=DEV, generator=gen) * 0.1
            o = torch.empty(B, 1, H, V, device=DEV, dtype=torch.bfloat16)
            A_log, dt_bias = gate_params(gen)
            bufs.append((q, k, v, g, beta, state, o, A_log, dt_bias))
        args = [Klc.args(q, k, v, g, beta, s, o, A_log=al, dt_bias=db) for (q, k, v, g, beta, s, o, al, db) in bufs]
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            klc.set_stream(stream.cuda_stream)
            for a in args:
                klc.decode(a)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, stream=stream):
                klc.set_stream(torch.cuda.current_stream().cuda_stream)
                for a in args:
                    klc.decode(a)
        klc.set_stream(0)
        torch.cuda.synchronize()
        ms = tt.do_bench(lambda: graph.replay(), warmup=10, rep=100, return_mode="median") / sets
        eager_us = klc.time(args[0], True, 200) * 1e3
        moved = 2 * state_bytes + B * H * (3 * 128 * 2 + 128 * 4 + 4 + 128 * 2)
        row = {"B": B, "graph_us": ms * 1e3, "same_buffer_us": eager_us, "bytes": moved,
               "floor_us": moved / (copy_bw * 1e12) * 1e6, "TBps": moved / (ms * 1e-3) / 1e12}
        row["pct_of_copy_bw"] = 100 * row["TBps"] / copy_bw
        rows.append(row)
        print(json.dumps(row), flush=True)
        del bufs, args, graph
        torch.cuda.empty_cache()


def main():
    klc = Klc(0)
    klc.set_stream(torch.cuda.current_stream().cuda_stream)
    name = torch.cuda.get_device_name(0)
    res = {"device": name, "archs": klc.lib.klc_build_archs().decode(), "prefill": [], "decode": []}
    res["copy_TBps"] = copy_tbps()
    chunk_kda = None
    src = os.environ.get("FLA_SRC")
    if src and os.path.isdir(src):
        try:
            chunk_kda = load_fla(src)
        except Exception as e:  # noqa: BLE001
            print(f"fla could not be loaded from {src}: {e!r}; fla columns left out", flush=True)
    else:
        print("FLA_SRC not set: fla columns left out", flush=True)
    Ts = [int(t) for t in os.environ.get("KLC_BENCH_T", "4096,16384,65536").split(",")]
    bench_prefill(klc, chunk_kda, Ts, res["prefill"])
    klc.set_stream(0)
    if os.environ.get("KLC_BENCH_DECODE", "1") != "0":
        bench_decode(klc, [1, 8, 64], res["decode"], res["copy_TBps"])
    klc.close()
    out = os.environ.get("OUT")
    if out:
        json.dump(res, open(os.path.join(out, "kda_bench.json"), "w"), indent=1)

    print(f"\n{name}; copy bandwidth {res['copy_TBps']:.2f} TB/s (read+write)")
    print("KDA prefill, B=1 H=32 K=V=128 (Mtok/s; ms)")
    print("ours: intra and state pass on tensor cores (default); CUDA-core intra: KLC_KDA_TENSOR_CORES=state;")
    print("all CUDA cores: KLC_KDA_TENSOR_CORES=0; tc vs: rel. L2 of o and state against those two")
    print(f"{'T':>7} | {'ours':>15} | {'ours, gate fused':>16} | {'CUDA-core intra':>15} | {'all CUDA cores':>15} | "
          f"{'fla chunk_kda':>15} | ours/fla | o vs fla | tc vs cc intra | tc vs all cc")
    for r in res["prefill"]:
        fla = f"{r['fla_Mtok_s']:5.2f}; {r['fla_ms']:7.3f}" if "fla_ms" in r else "-"
        ratio = f"{r['fla_ms'] / r['ours_ms']:7.2f}x" if "fla_ms" in r else "-"
        diff = f"{r['o_rel_l2_vs_fla']:.1e}" if "fla_ms" in r else "-"
        print(f"{r['T']:>7} | {r['ours_Mtok_s']:5.2f}; {r['ours_ms']:7.3f} | {r['ours_gate_fused_Mtok_s']:5.2f}; "
              f"{r['ours_gate_fused_ms']:8.3f} | {r['ours_cc_intra_Mtok_s']:5.2f}; {r['ours_cc_intra_ms']:7.3f} | "
              f"{r['ours_cuda_cores_Mtok_s']:5.2f}; {r['ours_cuda_cores_ms']:7.3f} | {fla:>15} | {ratio:>8} | "
              f"{diff:>8} | {r['o_rel_l2_tc_vs_cc_intra']:.0e}; {r['state_rel_l2_tc_vs_cc_intra']:.0e} | "
              f"{r['o_rel_l2_tc_vs_cuda_cores']:.0e}; {r['state_rel_l2_tc_vs_cuda_cores']:.0e}")
    for r in res["prefill"]:
        for label, key in (("default", "ours_kernels_ms"), ("CUDA-core intra", "ours_cc_intra_kernels_ms")):
            for name, ms in r.get(key, {}).items():
                print(f"  T={r['T']} {label}: {ms:8.3f} ms  {name}")
    if res["decode"]:
        print("KDA decode step, H=32 (graph: own buffers per call; floor: bytes at copy bandwidth)")
        print(f"{'B':>4} | {'graph us':>9} | {'same-buffer us':>14} | {'MB moved':>8} | {'floor us':>8} | {'TB/s':>5} | "
              "% copy BW")
    for r in res["decode"]:
        print(f"{r['B']:>4} | {r['graph_us']:9.2f} | {r['same_buffer_us']:14.2f} | {r['bytes'] / 1e6:8.2f} | "
              f"{r['floor_us']:8.2f} | {r['TBps']:5.2f} | {r['pct_of_copy_bw']:5.1f}")


if __name__ == "__main__":
    main()
