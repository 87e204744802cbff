"""One KDA prefill of libklc_native (B=1, H=32, K=V=128, T=$KLC_PROFILE_T, default 16384) after one
warm-up call, as the target of a profiler: `ncu -k regex:kda_ python3 test/gpu/kda_profile.py`.
Inputs are made like kda_bench.py's (bf16 q, k, v; fp32 log-decay g and beta)."""
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from klc_cuda import Klc  # noqa: E402

DEV = "cuda"
H, K, V = 32, 128, 128


def main():
    T = int(os.environ.get("KLC_PROFILE_T", "16384"))
    gen = torch.Generator(device=DEV).manual_seed(T)
    q = torch.randn(1, T, H, K, device=DEV, generator=gen).bfloat16()
    k = torch.randn(1, T, H, K, device=DEV, generator=gen).bfloat16()
    v = torch.randn(1, T, H, V, device=DEV, generator=gen).bfloat16()
    g = -torch.nn.functional.softplus(torch.randn(1, T, H, K, device=DEV, generator=gen)) * 0.1
    beta = torch.sigmoid(torch.randn(1, T, H, device=DEV, generator=gen))
    state = torch.zeros(1, H, K, V, device=DEV)
    o = torch.empty(1, T, H, V, device=DEV, dtype=torch.bfloat16)
    klc = Klc(0)
    args = Klc.args(q, k, v, g.contiguous(), beta.contiguous(), state, o)
    for _ in range(2):
        klc.prefill(args)
    klc.sync()
    print(f"T={T}: state norm {float(state.norm()):.4f}, o finite: {bool(torch.isfinite(o.float()).all())}")
    klc.close()


if __name__ == "__main__":
    main()
