"""Device-only: one MLA prefill call (klc_mla_prefill_heads) of the given kernel variant at 32k causal
tokens, 32 heads, for Nsight Compute to break down (test/gpu/run-mla-profile.sh): the first call warms
up, the second is the one the profiler picks (its first key block, which every query tile sees).
Usage: mla_profile.py VARIANT (run-mla-profile.sh's launch skip counts on 32k: four 8,192-key blocks a call)"""
import sys

import torch

from klc_cuda import Klc
from mla_prefill_check import DV, Inputs

T = 32768


def main():
    variant = sys.argv[1]
    klc = Klc()
    klc._check(klc.lib.klc_set_tensor_cores(klc.ctx, 1))
    inp = Inputs(T, 32, 0, seed=7)
    out = inp.run(klc, variant)
    inp.call(klc, out)
    klc.sync()
    if not torch.isfinite(out).all():
        sys.exit(f"{variant}: non-finite output")
    print(f"{variant}: T={T} H=32 dv={DV} done", flush=True)
    klc.close()


if __name__ == "__main__":
    main()
