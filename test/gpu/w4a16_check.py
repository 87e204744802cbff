"""Device check of native/src/w4a16_gemv.cu (klc_w4a16_gemv) against float64 torch: weights in
compressed-tensors pack-quantized layout (packed here with torch, independently of the kernel), at
Kimi-Linear-48B-A3B's projection shapes, group 32 and 128, symmetric and with zero points, M = 1..8
rows. Then the batch-1 speed at n = k = 8192 (the Marlin reference point) and at the model's
shapes, as effective bandwidth (weight + scale bytes per call / time) against the device's
copy bandwidth (torch clone of 1 GiB). Prints one line per case; exits non-zero when a case fails.

  node tools/build-native.mjs --archs 90 && (cd test/gpu && python3 w4a16_check.py)
"""
import ctypes
import sys

import torch

from klc_cuda import Klc

results = []


class W4a16Args(ctypes.Structure):
    _fields_ = [("x", ctypes.c_void_p), ("ldx", ctypes.c_int), ("w_packed", ctypes.c_void_p), ("scales", ctypes.c_void_p),
                ("zero_points", ctypes.c_void_p), ("y", ctypes.c_void_p), ("ldy", ctypes.c_int), ("M", ctypes.c_int),
                ("N", ctypes.c_int), ("K", ctypes.c_int), ("group", ctypes.c_int), ("accumulate", ctypes.c_int)]


def pack_rows(u):
    """uint codes [R, C] (0..15), C % 8 == 0 -> int32 [R, C / 8], code c*8+i in bits 4i..4i+3."""
    R, C = u.shape
    u = u.to(torch.int64).reshape(R, C // 8, 8)
    shifts = torch.arange(8, device=u.device, dtype=torch.int64) * 4
    words = (u << shifts).sum(-1)
    return torch.where(words >= 2 ** 31, words - 2 ** 32, words).to(torch.int32)


def make(N, K, group, symmetric, gen):
    q = torch.randint(-8, 8, (N, K), generator=gen, device="cuda")
    scales = (torch.rand(N, K // group, generator=gen, device="cuda") * 0.02 + 0.001).to(torch.bfloat16)
    if symmetric:
        z = torch.zeros(N, K // group, dtype=torch.int64, device="cuda")
        zp = None
    else:
        z = torch.randint(-8, 8, (N, K // group), generator=gen, device="cuda")
        rows = (N + 7) // 8 * 8
        zpad = torch.zeros(rows, K // group, dtype=torch.int64, device="cuda")
        zpad[:N] = z + 8
        # Zero points are packed down the columns: eight consecutive rows per int32.
        zp = pack_rows(zpad.reshape(rows // 8, 8, K // group).transpose(1, 2).reshape(-1, 8)).reshape(rows // 8, K // group).contiguous()
    packed = pack_rows(q + 8).contiguous()
    w = (q.double() - z.double().repeat_interleave(group, 1)) * scales.double().repeat_interleave(group, 1)
    return packed, scales.contiguous(), zp, w


def args(x, packed, scales, zp, y, M, N, K, group, accumulate=0):
    return W4a16Args(x.data_ptr(), x.stride(0), packed.data_ptr(), scales.data_ptr(), zp.data_ptr() if zp is not None else None,
                     y.data_ptr(), y.stride(0), M, N, K, group, accumulate)


def check(name, err, tol, **extra):
    ok = err < tol
    results.append(ok)
    print(f"{'ok  ' if ok else 'FAIL'} {name}: error {err:.2e} (tol {tol:.0e}) {extra if extra else ''}", flush=True)


def main():
    klc = Klc()
    lib, ctx = klc.lib, klc.ctx
    gen = torch.Generator(device="cuda").manual_seed(11)
    # (N, K): KDA q/k/v (4096 x 2304), o_proj (2304 x 4096), f_b (4096 x 128), an expert's w1/w3 and w2,
    # the dense MLP down_proj (2304 x 9216), and an odd N.
    shapes = [(4096, 2304), (2304, 4096), (4096, 128), (1024, 2304), (2304, 1024), (2304, 9216), (1000, 256)]
    for N, K in shapes:
        for group in (32, 128):
            if K % group:
                continue
            for symmetric in (True, False):
                packed, scales, zp, w = make(N, K, group, symmetric, gen)
                for M in (1, 2, 3, 4, 8):
                    x = torch.randn(M, K, generator=gen, device="cuda")
                    y = torch.full((M, N), 0.5, device="cuda")
                    accumulate = int(M == 3)
                    klc._check(lib.klc_w4a16_gemv(ctx, ctypes.byref(args(x, packed, scales, zp, y, M, N, K, group, accumulate))))
                    klc.sync()
                    want = x.double() @ w.T + (0.5 if accumulate else 0.0)
                    err = ((y.double() - want).abs().max() / want.abs().max()).item()
                    check(f"N={N} K={K} group={group} {'sym' if symmetric else 'asym'} M={M}{' accumulate' if accumulate else ''}", err, 2e-5)

    # Refused calls say why.
    packed, scales, zp, _ = make(64, 96, 32, True, gen)
    x = torch.randn(9, 96, device="cuda")
    y = torch.zeros(9, 64, device="cuda")
    rc = lib.klc_w4a16_gemv(ctx, ctypes.byref(args(x, packed, scales, zp, y, 9, 64, 96, 32)))
    check("M = 9 is refused", 0.0 if rc != 0 else 1.0, 0.5, message=lib.klc_last_error().decode())

    big = torch.empty(1 << 28, dtype=torch.float32, device="cuda")
    torch.cuda.synchronize()
    start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    big.clone()
    start.record()
    for _ in range(10):
        big.clone()
    stop.record()
    torch.cuda.synchronize()
    copy_bw = 2 * big.numel() * 4 * 10 / (start.elapsed_time(stop) / 1e3)
    print(f"copy bandwidth (torch clone, 1 GiB): {copy_bw / 1e12:.2f} TB/s", flush=True)
    for N, K, group in ((8192, 8192, 128), (8192, 8192, 32), (4096, 2304, 32), (2304, 4096, 32), (1024, 2304, 32), (2304, 9216, 128)):
        packed, scales, zp, _ = make(N, K, group, True, gen)
        for M in (1, 8):
            x = torch.randn(M, K, device="cuda")
            y = torch.empty(M, N, device="cuda")
            ms = ctypes.c_float()
            klc._check(lib.klc_w4a16_time(ctx, ctypes.byref(args(x, packed, scales, zp, y, M, N, K, group)), 200, ctypes.byref(ms)))
            moved = packed.numel() * 4 + scales.numel() * 2
            bw = moved / (ms.value / 1e3)
            print(f"speed N={N} K={K} group={group} M={M}: {ms.value * 1e3:.1f} us, {bw / 1e12:.2f} TB/s = {100 * bw / copy_bw:.0f}% of copy", flush=True)

    print(f"{sum(results)}/{len(results)} cases ok")
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
