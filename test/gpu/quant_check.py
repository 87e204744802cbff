"""Device check of the weight-only quantized kernels (native/src/wq_gemv.cu, wq_dequant.cu,
moe_small_wq.cu, moe_wq_gemm.cu, moe_wgmma.cu, wq_quantize.cu) against float64 torch. Weights are packed here with torch in
compressed-tensors' pack-quantized layout (independently of the engine's packer): 4-bit (group
32/128) and 8-bit (per channel, group 128), symmetric and with zero points, bf16 and fp32 scales;
and FP8 E4M3 bytes as a float-quantized checkpoint stores them (every finite byte, per channel and
group 128, decoded here by torch's float8_e4m3fn), at Kimi-Linear-48B-A3B's projection shapes:
  klc_wq_gemv, M = 1..8 rows (accumulate too), tolerance 2e-5 relative, and K split across CTAs
  (few row tiles, or 8 rows of X too wide for shared memory) repeating bitwise;
  klc_wq_gemv_many, several matrices of one launch (same input or not, K split or not), each against
  float64 and equal to its own klc_wq_gemv call;
  klc_wq_dequant into fp32 (exact: equal to fp32((q - z) * s)) and bf16 (round to nearest even);
  klc_moe_experts_wq, few pairs (codes read by the small-batch kernels, 2e-5) and many (exact mode:
  experts dequantized to fp32, then klc_moe_experts, 2e-5; tensor-core mode: the grouped kernels reading
  the codes, up to 1,024 tokens with several row tiles per expert, on H100/H200 also their wgmma form
  (moe_wgmma.cu, the default there; the mma.sync kernels with KLC_MOE_WGMMA=0), and once the dequantizing path they replace, KLC_MOE_WQ_GEMM=0; 2e-2
  for bf16 activations);
  klc_moe_block and klc_moe_block_wq, the whole MoE block of up to 8 rows with its shared expert (bf16, or in the
  experts' codes), fused into the small-batch kernels (2e-5) and on its own, and the refusals;
  klc_wq_quantize_bf16 to E4M3 (per row, bf16 and fp32 scales) bit for bit against a torch
  reimplementation of the host quantizer (src/engine/model/quant/matrix.ts: scale = max|x| / 448,
  the nearest of the 127 finite magnitudes, ties to the even code), with a row of exact ties.
Then GEMV speed at the 48B model's decode shapes and 8192^2 (INT4 group 32 and 128, INT8 and FP8 per
channel; M = 1, and 2..8 for information): "figure: gemv ... M=1: T us, B GB/s = P% of copy (batch 1)",
bytes of codes and scales read per second against the copy bandwidth measured first in the same
process, each call reading from HBM (the calls cycle through copies larger than L2) and each timed
result checked against float64; one prefill GEMM (4096 rows) on dequantized INT4 weights
against the bf16 GEMM (klc_linear, tensor cores); and a 4,096-token slice's routed experts at the 48B widths
(64 experts, ~128 rows each) on INT8 and INT4 codes, grouped and dequantized, against the bf16 experts
(cuBLAS, and the grouped kernels without dequantization, KLC_MOE_BF16_GEMM=1, also checked against float64),
the wgmma forms beside them on H100/H200. Not run unless named in QUANT_CASES: moespeed (the experts alone, at
MOE_SPEED_SHAPES) and manyspeed (a decode step's KDA projections for 20 layers in one CUDA graph: a launch per
matrix against klc_wq_gemv_many, with and without Programmatic Dependent Launch) and blockspeed (a decode step's MoE
blocks, router to output, for 26 layers in one CUDA graph at 1 and 8 rows: fused against on their own, per layer
against the bytes they read).
Prints one line per case; exits non-zero when a case fails.

  node tools/build-native.mjs --archs 90 && (cd test/gpu && python3 quant_check.py)
"""
import contextlib
import ctypes
import os
import sys

import torch

from klc_cuda import Klc

c_p, c_z = ctypes.c_void_p, ctypes.c_size_t
results = []


KLC_WQ_INT, KLC_WQ_E4M3 = 0, 1


class Wq(ctypes.Structure):
    _fields_ = [("w_packed", ctypes.c_void_p), ("scales", ctypes.c_void_p), ("zero_points", ctypes.c_void_p), ("bits", ctypes.c_int),
                ("N", ctypes.c_int), ("K", ctypes.c_int), ("group", ctypes.c_int), ("scales_f32", ctypes.c_int), ("codes", ctypes.c_int)]


# Every E4M3 byte but the NaN ones (0x7f, 0xff), which no quantizer writes.
E4M3_FINITE = torch.tensor([b for b in range(256) if b & 0x7F != 0x7F], dtype=torch.uint8)


def e4m3_values(codes):
    """float64 values of E4M3 bytes (uint8), by torch's float8_e4m3fn."""
    return codes.view(torch.float8_e4m3fn).double()


def pack_rows(u, bits):
    """uint codes [R, C] -> int32 [R, C * bits / 32], code j of a word in bits j*bits.. (C a multiple of 32 / bits)."""
    per = 32 // bits
    R, C = u.shape
    u = u.to(torch.int64).reshape(R, C // per, per)
    shifts = torch.arange(per, device=u.device, dtype=torch.int64) * bits
    words = (u << shifts).sum(-1)
    return torch.where(words >= 2 ** 31, words - 2 ** 32, words).to(torch.int32)


class QMat:
    """A random quantized [N, K] matrix: its klc_wq, the tensors it points to and its float64 weights.
    fp8: E4M3 bytes (bits 8, symmetric), stored row by row and read as int32 words."""

    def __init__(self, N, K, bits, group, symmetric, scales_f32, gen, fp8=False):
        if fp8:
            self.init_fp8(N, K, group, scales_f32, gen)
            return
        half = 2 ** (bits - 1)
        per = 32 // bits
        groups = K // group
        q = torch.randint(-half, half, (N, K), generator=gen, device="cuda")
        s = torch.rand(N, groups, generator=gen, device="cuda") * 0.02 + 0.001
        self.scales = (s if scales_f32 else s.to(torch.bfloat16)).contiguous()
        if symmetric:
            z = torch.zeros(N, groups, dtype=torch.int64, device="cuda")
            self.zp = None
        else:
            z = torch.randint(-half, half, (N, groups), generator=gen, device="cuda")
            rows = (N + per - 1) // per * per
            zpad = torch.zeros(rows, groups, dtype=torch.int64, device="cuda")
            zpad[:N] = z + half
            # Zero points are packed down the columns: 32 / bits consecutive rows per int32.
            self.zp = pack_rows(zpad.reshape(rows // per, per, groups).transpose(1, 2).reshape(-1, per), bits).reshape(rows // per, groups).contiguous()
        self.packed = pack_rows(q + half, bits).contiguous()
        self.w = (q.double() - z.double().repeat_interleave(group, 1)) * self.scales.double().repeat_interleave(group, 1)
        self.wq = Wq(self.packed.data_ptr(), self.scales.data_ptr(), self.zp.data_ptr() if self.zp is not None else None, bits, N, K, group,
                     int(scales_f32), KLC_WQ_INT)

    def init_fp8(self, N, K, group, scales_f32, gen):
        groups = K // group
        pick = torch.randint(0, len(E4M3_FINITE), (N, K), generator=gen, device="cuda")
        codes = E4M3_FINITE.cuda()[pick].contiguous()
        # Codes reach +-448: scales bring the weights near the INT8 cases' size.
        s = (torch.rand(N, groups, generator=gen, device="cuda") * 0.02 + 0.001) / 4
        self.scales = (s if scales_f32 else s.to(torch.bfloat16)).contiguous()
        self.codes = codes
        self.packed = codes.view(torch.int32)
        self.zp = None
        self.w = e4m3_values(codes) * self.scales.double().repeat_interleave(group, 1)
        self.wq = Wq(self.packed.data_ptr(), self.scales.data_ptr(), None, 8, N, K, group, int(scales_f32), KLC_WQ_E4M3)


class WqJob(ctypes.Structure):
    _fields_ = [("x", ctypes.c_void_p), ("ldx", ctypes.c_int), ("w", Wq), ("y", ctypes.c_void_p), ("ldy", ctypes.c_int), ("accumulate", ctypes.c_int)]


def check(name, err, tol, **extra):
    ok = err <= tol
    results.append(ok)
    print(f"{'ok  ' if ok else 'FAIL'} {name}: error {err:.2e} (tol {tol:.0e}) {extra if extra else ''}", flush=True)


def rel(got, want):
    return ((got.double() - want).abs().max() / want.abs().max()).item()


def set_tensor_cores(klc, on):
    klc._check(klc.lib.klc_set_tensor_cores(klc.ctx, int(on)))


def gemv_cases(klc, gen):
    lib, ctx = klc.lib, klc.ctx
    # (N, K): KDA q/k/v (4096 x 2304), o_proj (2304 x 4096), f_b (4096 x 128), an expert's w1/w3 and w2, an odd N.
    shapes = [(4096, 2304), (2304, 4096), (4096, 128), (1024, 2304), (2304, 1024), (1000, 256)]

    def gemv_case(m, M, acc, name):
        N, K = m.wq.N, m.wq.K
        x = torch.randn(M, K, generator=gen, device="cuda")
        y = torch.full((M, N), 0.5, device="cuda")
        klc._check(lib.klc_wq_gemv(ctx, c_p(x.data_ptr()), K, ctypes.byref(m.wq), c_p(y.data_ptr()), N, M, int(acc)))
        klc.sync()
        check(name + (" accumulate" if acc else ""), rel(y, x.double() @ m.w.T + (0.5 if acc else 0.0)), 2e-5)

    for bits, groups in ((4, (32, 128)), (8, (128, None))):
        for N, K in shapes:
            for group in groups:
                group = group or K
                if K % group:
                    continue
                for symmetric, f32 in ((True, False), (False, False), (True, True)):
                    m = QMat(N, K, bits, group, symmetric, f32, gen)
                    for M in (1, 2, 3, 4, 8):
                        gemv_case(m, M, M == 3, f"gemv INT{bits} N={N} K={K} group={group} {'sym' if symmetric else 'asym'} {'fp32' if f32 else 'bf16'} scales M={M}")
    # FP8: every M of 1..8, per channel and group 128, bf16 and fp32 scales.
    for N, K in shapes:
        for group in (K, 128):
            if K % group:
                continue
            for f32 in (False, True):
                m = QMat(N, K, 8, group, True, f32, gen, fp8=True)
                for M in range(1, 9):
                    gemv_case(m, M, M == 5, f"gemv FP8 N={N} K={K} group={group} {'fp32' if f32 else 'bf16'} scales M={M}")
    m = QMat(64, 96, 8, 96, True, False, gen, fp8=True)
    m.wq.zero_points = m.wq.scales
    x = torch.randn(1, 96, device="cuda")
    y = torch.zeros(1, 64, device="cuda")
    rc = lib.klc_wq_gemv(ctx, c_p(x.data_ptr()), 96, ctypes.byref(m.wq), c_p(y.data_ptr()), 64, 1, 0)
    check("gemv FP8 with zero points is refused", 0.0 if rc != 0 else 1.0, 0.5, message=lib.klc_last_error().decode())
    m = QMat(64, 96, 4, 32, True, False, gen)
    x = torch.randn(9, 96, device="cuda")
    y = torch.zeros(9, 64, device="cuda")
    rc = lib.klc_wq_gemv(ctx, c_p(x.data_ptr()), 96, ctypes.byref(m.wq), c_p(y.data_ptr()), 64, 9, 0)
    check("gemv M = 9 is refused", 0.0 if rc != 0 else 1.0, 0.5, message=lib.klc_last_error().decode())


def gemv_split_cases(klc, gen):
    """K split across CTAs (few row tiles: MLA kv_a; eight rows of X whose K slice exceeds shared memory:
    the dense MLP's down projection), with zero points and accumulation, and bitwise repeatable."""
    lib, ctx = klc.lib, klc.ctx
    for bits, N, K, group, M, acc, fp8 in ((4, 576, 2304, 32, 1, 0, False), (8, 576, 2304, 128, 2, 1, False), (4, 2304, 9216, 128, 8, 1, False),
                                           (8, 2304, 9216, 9216, 8, 0, False), (4, 8192, 8192, 128, 5, 0, False), (8, 576, 2304, 2304, 1, 1, True),
                                           (8, 2304, 9216, 9216, 8, 0, True), (8, 2304, 9216, 128, 3, 1, True)):
        m = QMat(N, K, bits, group, False, False, gen, fp8=fp8)
        x = torch.randn(M, K, generator=gen, device="cuda")
        ys = []
        for _ in range(2):
            y = torch.full((M, N), 0.5, device="cuda")
            klc._check(lib.klc_wq_gemv(ctx, c_p(x.data_ptr()), K, ctypes.byref(m.wq), c_p(y.data_ptr()), N, M, acc))
            klc.sync()
            ys.append(y)
        want = x.double() @ m.w.T + (0.5 if acc else 0.0)
        kind = "FP8" if fp8 else f"INT{bits} asym"
        name = f"gemv {kind} N={N} K={K} group={group} M={M}{' accumulate' if acc else ''} (split K)"
        check(name, rel(ys[0], want), 2e-5)
        check(name + " repeats bitwise", float((ys[0] != ys[1]).sum().item()), 0.0)


def gemv_many_cases(klc, gen):
    """klc_wq_gemv_many: several matrices in one launch, each against float64 and bitwise equal to its
    own klc_wq_gemv call: a KDA layer's same-input projections (q/k/v, f_a, g_a), its f_b and g_b of
    two inputs read with row strides wider than K, MLA's q and kv_a (one split across CTAs, one not),
    four jobs of which three split K (each its own stretch of split-K room), accumulation; and the
    refusals (mixed codes, 0 or 5 jobs)."""
    lib, ctx = klc.lib, klc.ctx
    layouts = (("INT8 channel", 8, None, True, False), ("INT4 g32 asym", 4, 32, False, False), ("FP8 channel", 8, None, True, True))
    sets = (("KDA q/k/v + f_a + g_a", [(12288, 2304), (128, 2304), (128, 2304)], True),
            ("KDA f_b + g_b", [(4096, 128), (4096, 128)], False),
            ("MLA q + kv_a", [(6144, 2304), (576, 2304)], True),
            ("four, three split", [(576, 2304), (2304, 9216), (128, 2304), (4096, 256)], False))
    for lname, bits, group, symmetric, fp8 in layouts:
        for sname, shapes, same_x in sets:
            for M in (1, 3, 8):
                mats = [QMat(N, K, bits, group or K, symmetric, False, gen, fp8=fp8) for N, K in shapes]
                pad = 0 if same_x else 64  # rows of X wider than K: ldx > K
                if same_x:
                    x = torch.randn(M, shapes[0][1], generator=gen, device="cuda")
                    xs = [x] * len(shapes)
                else:
                    xs = [torch.randn(M, K + pad, generator=gen, device="cuda") for _, K in shapes]
                acc = [int(i == len(shapes) - 1) for i in range(len(shapes))]
                ys = [torch.full((M, N + 16), 0.5, device="cuda") for N, _ in shapes]
                jobs = (WqJob * len(shapes))(*[WqJob(x.data_ptr(), x.shape[1], m.wq, y.data_ptr(), y.shape[1], a) for x, m, y, a in zip(xs, mats, ys, acc)])
                klc._check(lib.klc_wq_gemv_many(ctx, jobs, len(shapes), M))
                alone = [torch.full((M, N + 16), 0.5, device="cuda") for N, _ in shapes]
                for x, m, y, a in zip(xs, mats, alone, acc):
                    klc._check(lib.klc_wq_gemv(ctx, c_p(x.data_ptr()), x.shape[1], ctypes.byref(m.wq), c_p(y.data_ptr()), y.shape[1], M, a))
                klc.sync()
                name = f"gemv many {lname} {sname} M={M}"
                err = max(rel(y[:, :m.wq.N], x[:, :m.wq.K].double() @ m.w.T + (0.5 if a else 0.0)) for x, m, y, a in zip(xs, mats, ys, acc))
                check(name, err, 2e-5)
                untouched = max(float((y[:, m.wq.N:] != 0.5).sum().item()) for m, y in zip(mats, ys))
                check(name + ": columns past N untouched", untouched, 0.0)
                check(name + ": equal to one call each", max(float((y != z).sum().item()) for y, z in zip(ys, alone)), 0.0)
    m8 = QMat(256, 256, 8, 256, True, False, gen)
    mf = QMat(256, 256, 8, 256, True, False, gen, fp8=True)
    x = torch.randn(1, 256, device="cuda")
    y = torch.zeros(2, 256, device="cuda")
    jobs = (WqJob * 5)(*[WqJob(x.data_ptr(), 256, m.wq, y[i % 2].data_ptr(), 256, 0) for i, m in enumerate((m8, mf, m8, m8, m8))])
    for n, what in ((2, "INT8 and FP8 in one launch"), (0, "no jobs"), (5, "five jobs")):
        rc = lib.klc_wq_gemv_many(ctx, jobs, n, 1)
        check(f"gemv many: {what} is refused", 0.0 if rc != 0 else 1.0, 0.5, message=lib.klc_last_error().decode())


def dequant_cases(klc, gen):
    for bits, group, symmetric, f32, fp8 in ((4, 32, False, False, False), (4, 128, True, True, False), (8, 2304, False, True, False),
                                             (8, 128, True, False, False), (8, 2304, True, False, True), (8, 2304, True, True, True),
                                             (8, 128, True, False, True)):
        m = QMat(1000, 2304, bits, group, symmetric, f32, gen, fp8=fp8)
        out32 = torch.empty(200, 2304, device="cuda")
        out16 = torch.empty(200, 2304, dtype=torch.bfloat16, device="cuda")
        klc._check(klc.lib.klc_wq_dequant(klc.ctx, ctypes.byref(m.wq), 300, 200, c_p(out32.data_ptr()), 1))
        klc._check(klc.lib.klc_wq_dequant(klc.ctx, ctypes.byref(m.wq), 300, 200, c_p(out16.data_ptr()), 0))
        klc.sync()
        want = m.w[300:500]
        kind = f"FP8 {'fp32' if f32 else 'bf16'} scales" if fp8 else f"INT{bits} {'sym' if symmetric else 'asym'}"
        name = f"dequant {kind} group={group} rows 300..499"
        check(name + " fp32 (exact)", (out32.double() - want.float().double()).abs().max().item(), 0.0)
        check(name + " bf16 (rounded)", (out16.double() - want.float().to(torch.bfloat16).double()).abs().max().item(), 0.0)


@contextlib.contextmanager
def hopper():
    """Whether this GPU runs the wgmma kernels (compute capability 9.0)."""
    return torch.cuda.get_device_capability() == (9, 0)


def wgmma_on():
    """Whether the grouped MoE projections run as moe_wgmma.cu (the Hopper default; KLC_MOE_WGMMA=0 opts out)."""
    return hopper() and os.environ.get("KLC_MOE_WGMMA") != "0"


@contextlib.contextmanager
def env(name, value):
    """The native library reads its KLC_MOE_* switches at each call: `name` is `value` inside the block only."""
    before = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if before is None:
            del os.environ[name]
        else:
            os.environ[name] = before


def moe_inputs(gen, T, E, d, k):
    """T tokens' rows, their top-k experts (ascending, as the router gives them) and routing weights."""
    x = torch.randn(T, d, device="cuda", generator=gen)
    idx = torch.rand(T, E, device="cuda", generator=gen).topk(k, 1).indices.sort(1).values.to(torch.int32).contiguous()
    wt = torch.rand(T, k, device="cuda", generator=gen)
    return x, idx, wt


def moe_workspace(lib, T, d, I, E, k):
    lib.klc_moe_workspace_bytes.restype = c_z
    ws_bytes = lib.klc_moe_workspace_bytes(T, d, I, E, k)
    return torch.empty(ws_bytes, dtype=torch.uint8, device="cuda"), ws_bytes


def checked_rows(T):
    """The first tokens and the last: with many pairs their rows lie in every kind of tile (first, middle, last of an expert)."""
    return sorted(set(range(min(T, 8))) | set(range(max(0, T - 8), T)))


def moe_reference(x, idx, wt, w13, w2, rows, base):
    """float64 experts on `rows`: base + sum_s wt[t, s] * W2_e (SiLU(W1_e x) * W3_e x), w13 [E, 2I, d], w2 [E, d, I]."""
    I = w2.shape[2]
    want = torch.full((len(rows), w2.shape[1]), base, dtype=torch.float64, device="cuda")
    for n, t in enumerate(rows):
        xt = x[t].double()
        for s in range(idx.shape[1]):
            e = int(idx[t, s])
            gu = w13[e] @ xt
            want[n] += wt[t, s].double() * (w2[e] @ (torch.nn.functional.silu(gu[:I]) * gu[I:]))
    return want


def shared_reference(x, s13, s2):
    """float64 shared expert W2 (SiLU(W1 x) * W3 x) of every row of x, s13 [2I, d] and s2 [d, I] (any float dtype)."""
    I = s2.shape[1]
    gu = x.double() @ s13.double().T
    return (torch.nn.functional.silu(gu[:, :I]) * gu[:, I:]) @ s2.double().T


def moe_case(klc, gen, T, bits, group, symmetric, tensor_cores, d=2304, I=1024, E=64, k=8, fp8=False):
    m13 = QMat(E * 2 * I, d, bits, group or d, symmetric, False, gen, fp8=fp8)
    m2 = QMat(E * d, I, bits, group or I, symmetric, False, gen, fp8=fp8)
    x, idx, wt = moe_inputs(gen, T, E, d, k)
    lib = klc.lib
    lib.klc_moe_dense_bytes.restype = c_z
    ws, ws_bytes = moe_workspace(lib, T, d, I, E, k)
    dense_f32 = 0 if tensor_cores else 1
    dense = torch.empty(lib.klc_moe_dense_bytes(d, I, E, dense_f32), dtype=torch.uint8, device="cuda")
    set_tensor_cores(klc, tensor_cores)
    out = torch.full((T, d), 0.25, device="cuda")
    klc._check(lib.klc_moe_experts_wq(klc.ctx, c_p(x.data_ptr()), c_p(idx.data_ptr()), c_p(wt.data_ptr()), ctypes.byref(m13.wq),
                                      ctypes.byref(m2.wq), c_p(out.data_ptr()), c_p(ws.data_ptr()), c_z(ws_bytes), c_p(dense.data_ptr()),
                                      dense_f32, T, d, I, E, k))
    klc.sync()
    set_tensor_cores(klc, True)
    rows = checked_rows(T)
    want = moe_reference(x, idx, wt, m13.w.reshape(E, 2 * I, d), m2.w.reshape(E, d, I), rows, 0.25)
    fused = os.environ.get("KLC_MOE_WQ_GEMM", "1") != "0"
    grouped = ("grouped from codes, wgmma" if wgmma_on()
               else f"grouped from codes, {os.environ.get('KLC_MOE_WQ_TILE', '128')}-row weight tiles")
    path = "small batch" if T * k <= 128 else ((grouped if fused else "dequantized, tensor cores") if tensor_cores else "dense, exact")
    kind = "FP8" if fp8 else f"INT{bits} {'sym' if symmetric else 'asym'}"
    check(f"MoE {kind} group={group or 'channel'} T={T} ({path})", rel(out[rows], want),
          2e-2 if tensor_cores and T * k > 128 else 2e-5)


def moe_block_case(klc, gen, T, bits, group, symmetric, shared_group=None, fp8=False, fused=True, d=2304, I=1024, E=64, k=8):
    """klc_moe_block_wq: out = shared(x) + routed experts, written over what out held (7.0 here), the shared
    expert with its own group size (shared_group) against float64; fused = False runs it on its own
    (KLC_SMALL_BATCH=0: the routed experts then take the path of more pairs)."""
    m13 = QMat(E * 2 * I, d, bits, group or d, symmetric, False, gen, fp8=fp8)
    m2 = QMat(E * d, I, bits, group or I, symmetric, False, gen, fp8=fp8)
    s13 = QMat(2 * I, d, bits, shared_group or d, symmetric, True, gen, fp8=fp8)
    s2 = QMat(d, I, bits, shared_group or I, symmetric, True, gen, fp8=fp8)
    x, idx, wt = moe_inputs(gen, T, E, d, k)
    lib = klc.lib
    ws, ws_bytes = moe_workspace(lib, T, d, I, E, k)
    # On its own the block runs in exact mode: the routed experts dequantized to fp32 for the CUDA-core GEMMs.
    dense_f32 = 0 if fused else 1
    lib.klc_moe_dense_bytes.restype = c_z
    dense = torch.empty(lib.klc_moe_dense_bytes(d, I, E, dense_f32), dtype=torch.uint8, device="cuda")
    out = torch.full((T, d), 7.0, device="cuda")
    set_tensor_cores(klc, fused)
    with env("KLC_SMALL_BATCH", "1" if fused else "0"):
        klc._check(lib.klc_moe_block_wq(klc.ctx, c_p(x.data_ptr()), c_p(idx.data_ptr()), c_p(wt.data_ptr()), ctypes.byref(m13.wq),
                                        ctypes.byref(m2.wq), ctypes.byref(s13.wq), ctypes.byref(s2.wq), c_p(out.data_ptr()),
                                        c_p(ws.data_ptr()), c_z(ws_bytes), c_p(dense.data_ptr()), dense_f32, T, d, I, E, k))
        klc.sync()
    set_tensor_cores(klc, True)
    rows = list(range(T))
    want = moe_reference(x, idx, wt, m13.w.reshape(E, 2 * I, d), m2.w.reshape(E, d, I), rows, 0.0) + shared_reference(x, s13.w, s2.w)
    kind = "FP8" if fp8 else f"INT{bits} {'sym' if symmetric else 'asym'}"
    check(f"MoE block {kind} group={group or 'channel'} shared group={shared_group or 'channel'} T={T} "
          f"({'shared expert in the small-batch kernels' if fused else 'shared expert on its own'})", rel(out, want), 2e-5)


def moe_block_bf16_case(klc, gen, T, fused=True, d=2304, I=1024, E=64, k=8):
    """klc_moe_block on bf16 experts and shared expert against float64, out written over 7.0."""
    w13 = (torch.randn(E, 2 * I, d, device="cuda", generator=gen) * 0.02).to(torch.bfloat16)
    w2 = (torch.randn(E, d, I, device="cuda", generator=gen) * 0.02).to(torch.bfloat16)
    s13 = (torch.randn(2 * I, d, device="cuda", generator=gen) * 0.02).to(torch.bfloat16)
    s2 = (torch.randn(d, I, device="cuda", generator=gen) * 0.02).to(torch.bfloat16)
    x, idx, wt = moe_inputs(gen, T, E, d, k)
    lib = klc.lib
    ws, ws_bytes = moe_workspace(lib, T, d, I, E, k)
    out = torch.full((T, d), 7.0, device="cuda")
    set_tensor_cores(klc, fused)
    with env("KLC_SMALL_BATCH", "1" if fused else "0"):
        klc._check(lib.klc_moe_block(klc.ctx, c_p(x.data_ptr()), c_p(idx.data_ptr()), c_p(wt.data_ptr()), c_p(w13.data_ptr()),
                                     c_p(w2.data_ptr()), c_p(s13.data_ptr()), c_p(s2.data_ptr()), c_p(out.data_ptr()), c_p(ws.data_ptr()),
                                     c_z(ws_bytes), T, d, I, E, k))
        klc.sync()
    set_tensor_cores(klc, True)
    rows = list(range(T))
    want = moe_reference(x, idx, wt, w13.double(), w2.double(), rows, 0.0) + shared_reference(x, s13, s2)
    # On its own the block runs in exact mode (fp32 CUDA-core GEMMs on the bf16 weights).
    check(f"MoE block bf16 T={T} ({'shared expert in the small-batch kernels' if fused else 'shared expert on its own'})", rel(out, want), 2e-5)


def down_kernels_compared(klc, label, T, d, shared, run, want):
    """run(out) with the small-batch down kernel by column and by expert (KLC_MOE_DOWN): the one by expert against
    float64 (want) and bit for bit against the one by column. out starts at 7.0 for a whole block (written), else
    0.25 (added to: want includes it)."""
    outs = {}
    for kernel in ("columns", "experts"):
        out = torch.full((T, d), 7.0 if shared else 0.25, device="cuda")
        with env("KLC_MOE_DOWN", kernel):
            run(out)
            klc.sync()
        outs[kernel] = out
    check(label, rel(outs["experts"], want), 2e-5)
    check(label + ": bits of the column kernel", (outs["experts"] - outs["columns"]).abs().max().item(), 0.0)


def routed_inputs(gen, T, E, d, k):
    """moe_inputs with each token's experts in descending order: the kernels order a token's terms themselves."""
    x, idx, wt = moe_inputs(gen, T, E, d, k)
    return x, idx.flip(1).contiguous(), wt.flip(1).contiguous()


def down_by_expert_case(klc, gen, T, bits, group, symmetric, shared=False, fp8=False, d=2304, I=1024, E=64, k=8):
    """The down kernel by expert on quantized experts: klc_moe_experts_wq, or with a shared expert klc_moe_block_wq."""
    m13 = QMat(E * 2 * I, d, bits, group or d, symmetric, False, gen, fp8=fp8)
    m2 = QMat(E * d, I, bits, group or I, symmetric, False, gen, fp8=fp8)
    s13 = QMat(2 * I, d, bits, group or d, symmetric, False, gen, fp8=fp8) if shared else None
    s2 = QMat(d, I, bits, group or I, symmetric, False, gen, fp8=fp8) if shared else None
    x, idx, wt = routed_inputs(gen, T, E, d, k)
    lib = klc.lib
    ws, ws_bytes = moe_workspace(lib, T, d, I, E, k)
    set_tensor_cores(klc, True)
    common = (c_p(x.data_ptr()), c_p(idx.data_ptr()), c_p(wt.data_ptr()), ctypes.byref(m13.wq), ctypes.byref(m2.wq))

    def run(out):
        if shared:
            klc._check(lib.klc_moe_block_wq(klc.ctx, *common, ctypes.byref(s13.wq), ctypes.byref(s2.wq), c_p(out.data_ptr()), c_p(ws.data_ptr()),
                                            c_z(ws_bytes), None, 0, T, d, I, E, k))
        else:
            klc._check(lib.klc_moe_experts_wq(klc.ctx, *common, c_p(out.data_ptr()), c_p(ws.data_ptr()), c_z(ws_bytes), None, 0, T, d, I, E, k))

    want = moe_reference(x, idx, wt, m13.w.reshape(E, 2 * I, d), m2.w.reshape(E, d, I), list(range(T)), 0.0 if shared else 0.25)
    if shared:
        want += shared_reference(x, s13.w, s2.w)
    kind = "FP8" if fp8 else f"INT{bits} {'sym' if symmetric else 'asym'}"
    down_kernels_compared(klc, f"MoE down by expert {kind} group={group or 'channel'} T={T} d={d} I={I}{' with the shared expert' if shared else ''}",
                          T, d, shared, run, want)


def down_by_expert_bf16_case(klc, gen, T, shared=False, d=2304, I=1024, E=64, k=8):
    """The down kernel by expert on bf16 experts (moe_small.cu): klc_moe_experts, or with a shared expert klc_moe_block."""
    w13 = (torch.randn(E, 2 * I, d, device="cuda", generator=gen) * 0.02).to(torch.bfloat16)
    w2 = (torch.randn(E, d, I, device="cuda", generator=gen) * 0.02).to(torch.bfloat16)
    s13 = (torch.randn(2 * I, d, device="cuda", generator=gen) * 0.02).to(torch.bfloat16)
    s2 = (torch.randn(d, I, device="cuda", generator=gen) * 0.02).to(torch.bfloat16)
    x, idx, wt = routed_inputs(gen, T, E, d, k)
    lib = klc.lib
    ws, ws_bytes = moe_workspace(lib, T, d, I, E, k)
    set_tensor_cores(klc, True)
    common = (c_p(x.data_ptr()), c_p(idx.data_ptr()), c_p(wt.data_ptr()), c_p(w13.data_ptr()), c_p(w2.data_ptr()))

    def run(out):
        if shared:
            klc._check(lib.klc_moe_block(klc.ctx, *common, c_p(s13.data_ptr()), c_p(s2.data_ptr()), c_p(out.data_ptr()), c_p(ws.data_ptr()),
                                         c_z(ws_bytes), T, d, I, E, k))
        else:
            klc._check(lib.klc_moe_experts(klc.ctx, *common, c_p(out.data_ptr()), c_p(ws.data_ptr()), c_z(ws_bytes), T, d, I, E, k, 0))

    want = moe_reference(x, idx, wt, w13.double(), w2.double(), list(range(T)), 0.0 if shared else 0.25)
    if shared:
        want += shared_reference(x, s13, s2)
    down_kernels_compared(klc, f"MoE down by expert bf16 T={T} d={d} I={I}{' with the shared expert' if shared else ''}", T, d, shared, run, want)


def down_by_expert_cases(klc, gen):
    for T in (1, 3, 8):
        down_by_expert_case(klc, gen, T, 8, None, True)
    down_by_expert_case(klc, gen, 16, 8, None, True)
    down_by_expert_case(klc, gen, 1, 8, None, True, shared=True)
    down_by_expert_case(klc, gen, 8, 8, None, True, shared=True)
    down_by_expert_case(klc, gen, 5, 4, 32, False, shared=True)
    down_by_expert_case(klc, gen, 4, 8, None, True, fp8=True)
    # I > 1024: two columns a warp; d not a multiple of a block's 16 columns.
    down_by_expert_case(klc, gen, 3, 8, None, True, d=1160, I=2048, E=16)
    down_by_expert_case(klc, gen, 2, 4, 64, False, shared=True, I=2048, E=16)
    down_by_expert_bf16_case(klc, gen, 1)
    down_by_expert_bf16_case(klc, gen, 8, shared=True)
    down_by_expert_bf16_case(klc, gen, 3, d=1160, I=2048, E=16)


def moe_block_cases(klc, gen):
    moe_block_bf16_case(klc, gen, 1)
    moe_block_bf16_case(klc, gen, 8)
    moe_block_bf16_case(klc, gen, 3, fused=False)
    moe_block_case(klc, gen, 1, 8, None, True)
    moe_block_case(klc, gen, 8, 8, None, True)
    moe_block_case(klc, gen, 3, 4, 128, False, shared_group=32)
    moe_block_case(klc, gen, 2, 8, 128, False)
    moe_block_case(klc, gen, 1, 8, None, True, fp8=True)
    moe_block_case(klc, gen, 4, 8, None, True, fused=False)
    moe_block_case(klc, gen, 5, 4, 32, True, shared_group=128, fused=False)
    # Refusals: more rows than the block takes, a shared expert in other codes than the routed ones.
    lib = klc.lib
    d, I, E, k = 256, 64, 8, 2
    m13, m2 = QMat(E * 2 * I, d, 8, d, True, False, gen), QMat(E * d, I, 8, I, True, False, gen)
    s13_4, s2_4 = QMat(2 * I, d, 4, 32, True, False, gen), QMat(d, I, 4, 32, True, False, gen)
    s13, s2 = QMat(2 * I, d, 8, d, True, False, gen), QMat(d, I, 8, I, True, False, gen)
    for T, a, b, what in ((9, s13, s2, "9 rows"), (1, s13_4, s2_4, "an INT4 shared expert beside INT8 experts")):
        x, idx, wt = moe_inputs(gen, T, E, d, k)
        ws, ws_bytes = moe_workspace(lib, T, d, I, E, k)
        out = torch.zeros(T, d, device="cuda")
        rc = lib.klc_moe_block_wq(klc.ctx, c_p(x.data_ptr()), c_p(idx.data_ptr()), c_p(wt.data_ptr()), ctypes.byref(m13.wq),
                                  ctypes.byref(m2.wq), ctypes.byref(a.wq), ctypes.byref(b.wq), c_p(out.data_ptr()), c_p(ws.data_ptr()),
                                  c_z(ws_bytes), None, 0, T, d, I, E, k)
        check(f"MoE block with {what} is refused", 0.0 if rc != 0 else 1.0, 0.5, message=lib.klc_last_error().decode())


def e4m3_nearest(v):
    """The host quantizer's E4M3 bytes (encodeFp8E4M3 of src/engine/model/quant/fp8.ts) of float64 v, |v| <= 448:
    the nearest of the finite magnitudes, ties to the even code; the sign is v < 0 (so -0 gets code 0)."""
    mags = e4m3_values(torch.arange(0x7F, dtype=torch.uint8, device=v.device))  # 0x00..0x7e, ascending
    a = v.abs()
    lo = (torch.searchsorted(mags, a, right=True) - 1).clamp(0, 0x7D)
    hi = lo + 1
    d_lo, d_hi = a - mags[lo], mags[hi] - a
    code = torch.where(d_lo < d_hi, lo, torch.where(d_hi < d_lo, hi, torch.where(lo % 2 == 0, lo, hi)))
    return (code + torch.where(v < 0, 0x80, 0)).to(torch.uint8)


def quantize_fp8_cases(klc, gen):
    """klc_wq_quantize_bf16 to E4M3, one scale per row, against the host quantizer's arithmetic reimplemented in
    float64 torch; row 0 holds 448 (so its scale is exactly 1) and ties between E4M3 neighbours (normal and
    subnormal) and -0."""
    lib = klc.lib
    for N, K in ((1000, 2304), (576, 4096)):
        w = (torch.randn(N, K, generator=gen, device="cuda") * torch.rand(N, 1, generator=gen, device="cuda") * 0.1).to(torch.bfloat16)
        ties = torch.tensor([448.0, 1.0625, -1.1875, 2 ** -10, 3 * 2 ** -10, -(5 * 2 ** -10), 2 ** -6 + 2 ** -10, 17.0, -0.0, 0.0],
                            dtype=torch.float64, device="cuda")
        w[0] = 0
        w[0, : len(ties)] = ties.to(torch.bfloat16)
        assert w[0, : len(ties)].double().equal(ties), "the tie values are exact in bf16"
        for f32 in (False, True):
            packed = torch.zeros(N, K // 4, dtype=torch.int32, device="cuda")
            scales = torch.zeros(N, dtype=torch.float32 if f32 else torch.bfloat16, device="cuda")
            klc._check(lib.klc_wq_quantize_bf16(klc.ctx, c_p(w.data_ptr()), N, K, 8, K, KLC_WQ_E4M3, c_p(packed.data_ptr()),
                                                 c_p(scales.data_ptr()), int(f32)))
            klc.sync()
            amax = w.double().abs().amax(1)
            want_s = torch.clamp(amax / 448.0, min=2.0 ** -23).float()
            if not f32:
                want_s = want_s.to(torch.bfloat16)
            v = torch.clamp(w.double() / want_s.double()[:, None], -448.0, 448.0)
            want_codes = e4m3_nearest(v)
            got_codes = packed.view(torch.uint8).reshape(N, K)
            name = f"quantize to FP8 N={N} K={K} {'fp32' if f32 else 'bf16'} scales"
            check(name + ": scales equal", float((scales != want_s).sum().item()), 0.0)
            check(name + ": codes equal (row 0: ties, -0)", float((got_codes != want_codes).sum().item()), 0.0,
                  row0=got_codes[0, : len(ties)].tolist())
    rc = lib.klc_wq_quantize_bf16(klc.ctx, c_p(w.data_ptr()), N, K, 8, 128, KLC_WQ_E4M3, c_p(packed.data_ptr()), c_p(scales.data_ptr()), 0)
    check("quantize to FP8 with groups is refused", 0.0 if rc != 0 else 1.0, 0.5, message=lib.klc_last_error().decode())


# Kimi-Linear-48B-A3B's projections read by klc_wq_gemv at decode (hidden 2304; KDA 32 heads x 128;
# MLA q 32 x 192, kv_a 512 + 64, o 32 x 128; dense layer 0 with intermediate 9216; the shared expert
# with 1024), the lm_head's size (the backend keeps lm_head dense) and the 8192^2 benchmark shape.
SPEED_SHAPES = (("8192^2 benchmark", 8192, 8192), ("KDA q/k/v stacked", 12288, 2304), ("KDA/MLA o_proj", 2304, 4096),
                ("MLA q_proj", 6144, 2304), ("MLA kv_a_proj", 576, 2304), ("dense MLP gate/up", 18432, 2304),
                ("dense MLP down", 2304, 9216), ("shared expert gate/up", 2048, 2304), ("shared expert down", 2304, 1024),
                ("lm_head size", 163840, 2304))
# Schemes timed: AWQ INT4 as published for this model (group 32), INT4 group 128, INT8 and FP8 per channel.
SPEED_SCHEMES = ((4, 32, False), (4, 128, False), (8, None, False), (8, None, True))
# The copies a timing cycles through add up to at least this: more than the L2 cache, so every call
# reads its codes from HBM as decode does.
ROTATE_BYTES = 512 << 20


def copy_bandwidth():
    big = torch.empty(1 << 28, dtype=torch.float32, device="cuda")
    torch.cuda.synchronize()
    start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    big.clone()
    start.record()
    for _ in range(10):
        big.clone()
    stop.record()
    torch.cuda.synchronize()
    return 2 * big.numel() * 4 * 10 / (start.elapsed_time(stop) / 1e3)


def gemv_speed(klc, gen, copy_bw):
    """Batch-1 (and, for information, 2..8-row) GEMV time per shape and scheme, as bytes of codes and
    scales (symmetric weights: no zero points) read per second against the copy bandwidth; every
    timed result is checked against float64 torch."""
    lib, ctx = klc.lib, klc.ctx
    for bits, group, fp8 in SPEED_SCHEMES:
        for name, N, K in SPEED_SHAPES:
            g = group or K
            m = QMat(N, K, bits, g, True, False, gen, fp8=fp8)
            moved = m.packed.numel() * 4 + m.scales.numel() * m.scales.element_size()
            copies = [(m.packed, m.scales)] + [(m.packed.clone(), m.scales.clone()) for _ in range(max(1, -(-ROTATE_BYTES // moved)) - 1)]
            arr = (Wq * len(copies))(*[Wq(p.data_ptr(), s.data_ptr(), None, bits, N, K, g, 0, m.wq.codes) for p, s in copies])
            rows = (1, 2, 4, 8) if name in ("8192^2 benchmark", "KDA q/k/v stacked") else (1,)
            for M in rows:
                x = torch.randn(M, K, generator=gen, device="cuda")
                y = torch.empty(M, N, device="cuda")
                ms = ctypes.c_float()
                iters = max(20, min(500, int(2e9 / moved)))
                klc._check(lib.klc_wq_gemv_time(ctx, c_p(x.data_ptr()), K, arr, len(copies), c_p(y.data_ptr()), N, M, iters, ctypes.byref(ms)))
                klc.sync()
                label = f"gemv {'FP8' if fp8 else f'INT{bits}'} group={group or 'channel'} {name} N={N} K={K} M={M}"
                check(label + " (timed result)", rel(y, x.double() @ m.w.T), 2e-5)
                bw = moved / (ms.value / 1e3)
                print(f"figure: {label}: {ms.value * 1e3:.1f} us, {bw / 1e9:.0f} GB/s = {100 * bw / copy_bw:.0f}% of copy"
                      f"{' (batch 1)' if M == 1 else ' (info)'}", flush=True)
            del copies, arr, m
            torch.cuda.empty_cache()


def gemv_many_speed(klc, gen):
    """A decode step's quantized KDA input projections (q/k/v, f_a, g_a, then f_b and g_b of their
    outputs; INT8 per channel, one row) for 20 layers, each layer's weights its own copy so that every
    launch reads HBM, recorded in one CUDA graph (klc_graph_*) and replayed: one launch per matrix
    against klc_wq_gemv_many's two per layer, each with Programmatic Dependent Launch and without
    (KLC_PDL=0 in a second context). The last layer's outputs are checked against float64."""
    layers = 20
    shapes = ((12288, 2304), (128, 2304), (128, 2304), (4096, 128), (4096, 128))
    base = [QMat(N, K, 8, K, True, False, gen) for N, K in shapes]
    clones = [[(m.packed.clone(), m.scales.clone()) for m in base] for _ in range(layers)]
    copies = [[Wq(p.data_ptr(), sc.data_ptr(), None, 8, m.wq.N, m.wq.K, m.wq.K, 0, KLC_WQ_INT) for m, (p, sc) in zip(base, layer)] for layer in clones]
    x = torch.randn(1, 2304, generator=gen, device="cuda")
    ys = [torch.empty(1, N, device="cuda") for N, _ in shapes]
    inputs = (x, x, x, ys[1], ys[2])

    def step(k, many):
        for ws in copies:
            for first, last in ((0, 3), (3, 5)):
                if many:
                    jobs = (WqJob * (last - first))(*[WqJob(inputs[i].data_ptr(), inputs[i].shape[1], ws[i], ys[i].data_ptr(), ys[i].shape[1], 0)
                                                      for i in range(first, last)])
                    k._check(k.lib.klc_wq_gemv_many(k.ctx, jobs, last - first, 1))
                else:
                    for i in range(first, last):
                        k._check(k.lib.klc_wq_gemv(k.ctx, c_p(inputs[i].data_ptr()), inputs[i].shape[1], ctypes.byref(ws[i]), c_p(ys[i].data_ptr()),
                                                   ys[i].shape[1], 1, 0))

    with env("KLC_PDL", "0"):
        off = Klc()
        step(off, False)  # the context reads KLC_PDL at its first launch
    off.sync()
    start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    for k, pdl in ((off, "off"), (klc, "on")):
        for many in (False, True):
            step(k, many)
            k.sync()
            graph = c_p()
            k._check(k.lib.klc_graph_begin(k.ctx))
            step(k, many)
            k._check(k.lib.klc_graph_end(k.ctx, ctypes.byref(graph)))
            launched = ctypes.c_int()
            k._check(k.lib.klc_graph_launch(k.ctx, graph, ctypes.byref(launched)))
            k.sync()
            start.record()
            for _ in range(10):
                k._check(k.lib.klc_graph_launch(k.ctx, graph, ctypes.byref(launched)))
            stop.record()
            torch.cuda.synchronize()
            k._check(k.lib.klc_graph_free(k.ctx, graph))
            us = start.elapsed_time(stop) * 1e3 / 10 / layers
            want = [x.double() @ base[i].w.T for i in range(3)]
            want += [ys[1].double() @ base[3].w.T, ys[2].double() @ base[4].w.T]
            check(f"gemv many speed: outputs of the last layer (PDL {pdl}, {'2 launches' if many else '5 launches'})",
                  max(rel(ys[i], want[i]) for i in range(5)), 2e-5)
            moved = sum(m.packed.numel() * 4 + m.scales.numel() * 2 for m in base)
            print(f"figure: KDA decode projections INT8 (5 matrices, {moved / 1e6:.1f} MB) per layer, graph of {layers} layers: "
                  f"{'klc_wq_gemv_many, 2 launches' if many else 'one launch per matrix, 5 launches'}, PDL {pdl}: {us:.1f} us", flush=True)
    off.lib.klc_destroy(off.ctx)


def speed(klc, gen):
    lib, ctx = klc.lib, klc.ctx
    copy_bw = copy_bandwidth()
    print(f"figure: copy bandwidth (torch clone, 1 GiB, read + write): {copy_bw / 1e9:.0f} GB/s", flush=True)
    gemv_speed(klc, gen, copy_bw)
    moe_speed(klc, gen)
    start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    # Prefill: one 4096-row GEMM on INT4 weights = dequantize + bf16 GEMM, against the bf16 GEMM alone.
    set_tensor_cores(klc, True)
    M, N, K = 4096, 4096, 2304
    m = QMat(N, K, 4, 128, True, False, gen)
    x = torch.randn(M, K, device="cuda")
    y = torch.empty(M, N, device="cuda")
    wb = torch.empty(N, K, dtype=torch.bfloat16, device="cuda")
    ll = ctypes.c_longlong

    def gemm():
        klc._check(lib.klc_linear(ctx, c_p(x.data_ptr()), K, c_p(wb.data_ptr()), c_p(y.data_ptr()), N, M, N, K, 1, ll(0), ll(0), ll(0), 0, 0))

    def quant():
        klc._check(lib.klc_wq_dequant(ctx, ctypes.byref(m.wq), 0, N, c_p(wb.data_ptr()), 0))
        gemm()

    times = {}
    for name, fn in (("bf16", gemm), ("int4", quant)):
        fn()
        klc.sync()
        start.record()
        for _ in range(20):
            fn()
        stop.record()
        torch.cuda.synchronize()
        times[name] = start.elapsed_time(stop) / 20
    print(f"figure: prefill GEMM M={M} N={N} K={K}: bf16 {times['bf16'] * 1e3:.0f} us, int4 (dequantize + bf16) {times['int4'] * 1e3:.0f} us "
          f"= {100 * times['bf16'] / times['int4']:.0f}% of bf16 speed", flush=True)


def moe_bf16_case(klc, gen, T, E, d=2304, I=1024, k=8):
    """bf16 experts through the grouped kernels (KLC_MOE_BF16_GEMM=1, moe_wq_gemm.cu without the
    dequantization) against float64 on the same bf16 weights, tensor-core mode."""
    w13 = (torch.randn(E * 2 * I, d, device="cuda", generator=gen) * d ** -0.5).to(torch.bfloat16)
    w2 = (torch.randn(E * d, I, device="cuda", generator=gen) * I ** -0.5).to(torch.bfloat16)
    x, idx, wt = moe_inputs(gen, T, E, d, k)
    lib = klc.lib
    ws, ws_bytes = moe_workspace(lib, T, d, I, E, k)
    out = torch.full((T, d), 0.25, device="cuda")
    set_tensor_cores(klc, True)
    with env("KLC_MOE_BF16_GEMM", "1"):
        klc._check(lib.klc_moe_experts(klc.ctx, c_p(x.data_ptr()), c_p(idx.data_ptr()), c_p(wt.data_ptr()), c_p(w13.data_ptr()),
                                       c_p(w2.data_ptr()), c_p(out.data_ptr()), c_p(ws.data_ptr()), c_z(ws_bytes), T, d, I, E, k, 0))
        klc.sync()
    rows = checked_rows(T)
    want = moe_reference(x, idx, wt, w13.double().reshape(E, 2 * I, d), w2.double().reshape(E, d, I), rows, 0.25)
    kernels = "wgmma" if wgmma_on() else "mma.sync"
    check(f"MoE bf16 experts T={T} E={E} (grouped, KLC_MOE_BF16_GEMM=1, {kernels})", rel(out[rows], want), 2e-2)


def moe_speed(klc, gen):
    """Routed experts of a prefill slice at the 48B widths (d 2304, I 1024, top-8), for each of MOE_SPEED_SHAPES
    (tokens x experts, default 1024x64: a 4,096-token slice's ~128 rows per expert over 64 of the 256 experts;
    32768x256 is a 32k-token slice, ~1,024 rows per expert): INT8 and INT4 read by the grouped kernels, the
    same dequantized 32 experts at a time into bf16 for cuBLAS (KLC_MOE_WQ_GEMM=0), and the bf16 experts alone."""
    for shape in os.environ.get("MOE_SPEED_SHAPES", "1024x64").split(","):
        T, E = (int(v) for v in shape.split("x"))
        moe_speed_at(klc, gen, T, E)
        torch.cuda.empty_cache()


def moe_speed_at(klc, gen, T, E):
    lib, ctx = klc.lib, klc.ctx
    d, I, k = 2304, 1024, 8
    set_tensor_cores(klc, True)
    x, idx, wt = moe_inputs(gen, T, E, d, k)
    lib.klc_moe_dense_bytes.restype = c_z
    ws, ws_bytes = moe_workspace(lib, T, d, I, E, k)
    dense = torch.empty(lib.klc_moe_dense_bytes(d, I, E, 0), dtype=torch.uint8, device="cuda")
    out = torch.zeros(T, d, device="cuda")
    flops = 2 * T * k * 3 * d * I
    start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)

    def timed(fn, iters=10):
        fn()
        klc.sync()
        start.record()
        for _ in range(iters):
            fn()
        stop.record()
        torch.cuda.synchronize()
        return start.elapsed_time(stop) / iters

    results = {}
    for bits, group in ((8, None), (4, 128)):
        m13 = QMat(E * 2 * I, d, bits, group or d, True, False, gen)
        m2 = QMat(E * d, I, bits, group or I, True, False, gen)
        del m13.w, m2.w

        def run():
            klc._check(lib.klc_moe_experts_wq(ctx, c_p(x.data_ptr()), c_p(idx.data_ptr()), c_p(wt.data_ptr()), ctypes.byref(m13.wq),
                                              ctypes.byref(m2.wq), c_p(out.data_ptr()), c_p(ws.data_ptr()), c_z(ws_bytes), c_p(dense.data_ptr()),
                                              0, T, d, I, E, k))
        with env("KLC_MOE_WGMMA", "0"):
            results[f"int{bits} grouped, mma.sync"] = timed(run)
            with env("KLC_MOE_WQ_TILE", "256"):
                results[f"int{bits} grouped, mma.sync, 256-row weight tiles"] = timed(run)
        if hopper():
            results[f"int{bits} grouped, wgmma (the Hopper default)"] = timed(run)
        with env("KLC_MOE_WQ_GEMM", "0"):
            results[f"int{bits} dequantized"] = timed(run)
        if bits == 8:
            w13 = torch.empty(E * 2 * I, d, dtype=torch.bfloat16, device="cuda")
            w2 = torch.empty(E * d, I, dtype=torch.bfloat16, device="cuda")
            klc._check(lib.klc_wq_dequant(ctx, ctypes.byref(m13.wq), 0, E * 2 * I, c_p(w13.data_ptr()), 0))
            klc._check(lib.klc_wq_dequant(ctx, ctypes.byref(m2.wq), 0, E * d, c_p(w2.data_ptr()), 0))

            def bf16_run():
                klc._check(lib.klc_moe_experts(ctx, c_p(x.data_ptr()), c_p(idx.data_ptr()), c_p(wt.data_ptr()), c_p(w13.data_ptr()),
                                               c_p(w2.data_ptr()), c_p(out.data_ptr()), c_p(ws.data_ptr()), c_z(ws_bytes), T, d, I, E, k, 0))
            results["bf16"] = timed(bf16_run)
            with env("KLC_MOE_BF16_GEMM", "1"):
                with env("KLC_MOE_WGMMA", "0"):
                    results["bf16 grouped, mma.sync (KLC_MOE_BF16_GEMM=1)"] = timed(bf16_run)
                if hopper():
                    results["bf16 grouped, wgmma (KLC_MOE_BF16_GEMM=1)"] = timed(bf16_run)
            del w13, w2
        del m13, m2
        torch.cuda.empty_cache()
    bf16 = results["bf16"]
    for name, ms in results.items():
        print(f"figure: MoE prefill experts T={T} k={k} E={E} d={d} I={I}, {name}: {ms * 1e3:.0f} us = {flops / ms / 1e9:.0f} TFLOP/s, "
              f"{100 * bf16 / ms:.0f}% of bf16 speed", flush=True)


def block_speed(klc, gen):
    """A decode step's MoE blocks at the 48B widths (d 2304, I 1024, 256 experts, top-8, a shared expert of the same
    width, fp32 router with its bias) for 26 layers recorded in one CUDA graph and replayed: each layer routes its
    own rows with its own router and has its own shared expert, so every layer reads its chosen experts from HBM as
    a real step does. The product's two paths: fused (klc_moe_router, then klc_moe_block_wq with the shared expert
    inside the small-batch kernels: 3 launches) and on their own (the router's GEMV and top-k, the shared expert's
    GEMV, SwiGLU and GEMV, the routed experts: 7 launches), each with the down kernel by column and by expert. Per layer: µs, bytes read (the distinct chosen experts,
    the shared expert and the router) and GB/s against the copy bandwidth; the last layer's output of each path is
    checked against float64. BLOCK_SPEED_ROWS (default 1,8) picks the batch sizes."""
    lib, ctx = klc.lib, klc.ctx
    d, I, E, k, layers, scaling = 2304, 1024, 256, 8, 26, 2.446
    copy_bw = copy_bandwidth()
    set_tensor_cores(klc, True)
    lib.klc_moe_dense_bytes.restype = c_z
    routers = [torch.randn(E, d, generator=gen, device="cuda") * d ** -0.5 for _ in range(layers)]
    biases = [torch.rand(E, generator=gen, device="cuda") * 0.01 for _ in range(layers)]
    start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    for bits, group in ((8, None), (4, 32)):
        m13 = QMat(E * 2 * I, d, bits, group or d, True, False, gen)
        m2 = QMat(E * d, I, bits, group or I, True, False, gen)
        shared = [(QMat(2 * I, d, bits, group or d, True, False, gen), QMat(d, I, bits, group or I, True, False, gen)) for _ in range(layers)]
        dense = torch.empty(lib.klc_moe_dense_bytes(d, I, E, 0), dtype=torch.uint8, device="cuda")
        expert_bytes = sum(m.packed[: m.packed.shape[0] // E].numel() * 4 + m.scales[: m.scales.shape[0] // E].numel() * 2 for m in (m13, m2))
        shared_bytes = sum(m.packed.numel() * 4 + m.scales.numel() * 2 for m in shared[0])
        for T in (int(v) for v in os.environ.get("BLOCK_SPEED_ROWS", "1,8").split(",")):
            xs = [torch.randn(T, d, generator=gen, device="cuda") for _ in range(layers)]
            idx = [torch.empty(T, k, dtype=torch.int32, device="cuda") for _ in range(layers)]
            wt = [torch.empty(T, k, device="cuda") for _ in range(layers)]
            logits = torch.empty(T, E, device="cuda")
            outs = [torch.empty(T, d, device="cuda") for _ in range(layers)]
            gu, hs = torch.empty(T, 2 * I, device="cuda"), torch.empty(T, I, device="cuda")
            ws, ws_bytes = moe_workspace(lib, T, d, I, E, k)
            pointers = [(c_p(xs[l].data_ptr()), c_p(idx[l].data_ptr()), c_p(wt[l].data_ptr()), c_p(outs[l].data_ptr())) for l in range(layers)]

            def fused_step():
                for l, (x, i, w, o) in enumerate(pointers):
                    klc._check(lib.klc_moe_router(ctx, x, c_p(routers[l].data_ptr()), 1, c_p(biases[l].data_ptr()), c_p(logits.data_ptr()), i, w,
                                                  T, d, E, k, 1, ctypes.c_float(scaling)))
                    klc._check(lib.klc_moe_block_wq(ctx, x, i, w, ctypes.byref(m13.wq), ctypes.byref(m2.wq), ctypes.byref(shared[l][0].wq),
                                                    ctypes.byref(shared[l][1].wq), o, c_p(ws.data_ptr()), c_z(ws_bytes), c_p(dense.data_ptr()), 0,
                                                    T, d, I, E, k))

            def apart_step():
                for l, (x, i, w, o) in enumerate(pointers):
                    klc._check(lib.klc_linear(ctx, x, d, c_p(routers[l].data_ptr()), c_p(logits.data_ptr()), E, T, E, d, 1, ctypes.c_longlong(0),
                                              ctypes.c_longlong(0), ctypes.c_longlong(0), 0, 1))
                    klc._check(lib.klc_moe_route(ctx, c_p(logits.data_ptr()), c_p(biases[l].data_ptr()), i, w, T, E, k, 1, ctypes.c_float(scaling)))
                    klc._check(lib.klc_wq_gemv(ctx, x, d, ctypes.byref(shared[l][0].wq), c_p(gu.data_ptr()), 2 * I, T, 0))
                    klc._check(lib.klc_silu_mul(ctx, c_p(gu.data_ptr()), c_p(hs.data_ptr()), T, I))
                    klc._check(lib.klc_wq_gemv(ctx, c_p(hs.data_ptr()), I, ctypes.byref(shared[l][1].wq), o, d, T, 0))
                    klc._check(lib.klc_moe_experts_wq(ctx, x, i, w, ctypes.byref(m13.wq), ctypes.byref(m2.wq), o, c_p(ws.data_ptr()), c_z(ws_bytes),
                                                      c_p(dense.data_ptr()), 0, T, d, I, E, k))

            for name, step, down in (("on their own (router GEMV + top-k, shared GEMV/SwiGLU/GEMV, experts)", apart_step, "columns"),
                                     ("fused (klc_moe_router + klc_moe_block_wq)", fused_step, "columns"),
                                     ("on their own, down kernel by expert (KLC_MOE_DOWN=experts)", apart_step, "experts"),
                                     ("fused, down kernel by expert (KLC_MOE_DOWN=experts)", fused_step, "experts")):
                with env("KLC_MOE_DOWN", down):
                    step()
                    klc.sync()
                    graph = c_p()
                    klc._check(lib.klc_graph_begin(ctx))
                    step()
                    klc._check(lib.klc_graph_end(ctx, ctypes.byref(graph)))
                launched = ctypes.c_int()
                klc._check(lib.klc_graph_launch(ctx, graph, ctypes.byref(launched)))
                klc.sync()
                start.record()
                for _ in range(10):
                    klc._check(lib.klc_graph_launch(ctx, graph, ctypes.byref(launched)))
                stop.record()
                torch.cuda.synchronize()
                klc._check(lib.klc_graph_free(ctx, graph))
                us = start.elapsed_time(stop) * 1e3 / 10 / layers
                distinct = sum(len(torch.unique(i)) for i in idx) / layers
                moved = distinct * expert_bytes + shared_bytes + E * d * 4
                s13, s2 = shared[-1]
                want = (moe_reference(xs[-1], idx[-1], wt[-1], m13.w.reshape(E, 2 * I, d), m2.w.reshape(E, d, I), list(range(T)), 0.0) +
                        shared_reference(xs[-1], s13.w, s2.w))
                label = f"MoE block speed INT{bits} group={group or 'channel'} T={T}, {name}"
                check(label + ": last layer", rel(outs[-1], want), 2e-5)
                print(f"figure: {label}: {us:.1f} us a layer ({distinct:.1f} experts, {moved / 1e6:.1f} MB): {moved / us / 1e3:.0f} GB/s = "
                      f"{100 * moved / (us * 1e-6) / copy_bw:.0f}% of copy", flush=True)
            del xs, idx, wt, outs, ws
        del m13, m2, shared, dense
        torch.cuda.empty_cache()


def moe_cases(klc, gen):
    for bits, group in ((4, 32), (4, 128), (8, None)):
        for symmetric in (True, False):
            moe_case(klc, gen, 1, bits, group, symmetric, True)
            moe_case(klc, gen, 16, bits, group, symmetric, False)
    moe_case(klc, gen, 1, 8, None, True, True, fp8=True)
    moe_case(klc, gen, 16, 8, None, True, False, fp8=True)
    # The mma.sync kernels (sm_80-sm_89, and Hopper with KLC_MOE_WGMMA=0) first.
    with env("KLC_MOE_WGMMA", "0"):
        mma_sync_moe_cases(klc, gen)
    # The Hopper kernels (moe_wgmma.cu, the default there), every kind of code, several tiles per expert and a partial group.
    if hopper():
        moe_case(klc, gen, 1024, 8, None, True, True, E=32)
        moe_case(klc, gen, 1024, 4, 32, False, True, E=32)
        moe_case(klc, gen, 1024, 4, 128, True, True, E=32)
        moe_case(klc, gen, 300, 8, None, True, True, E=40, fp8=True)
        moe_case(klc, gen, 200, 8, None, False, True)
        moe_bf16_case(klc, gen, 1024, 32)
        moe_bf16_case(klc, gen, 300, 40)


def mma_sync_moe_cases(klc, gen):
    # On tensor cores the experts are dequantized 32 at a time: 64 experts are two groups, 40 a full and a partial one.
    for tc in (False, True):
        moe_case(klc, gen, 200, 4, 128, True, tc)
        moe_case(klc, gen, 200, 8, None, False, tc)
        moe_case(klc, gen, 200, 8, None, True, tc, fp8=True)
    moe_case(klc, gen, 300, 4, 32, False, True, E=40)
    # Several 64-row tiles per expert (about 256 pairs each), every kind of code, on the grouped kernels
    # (moe_wq_gemm.cu), then once on the dequantizing path they replace.
    moe_case(klc, gen, 1024, 8, None, True, True, E=32)
    moe_case(klc, gen, 1024, 4, 32, False, True, E=32)
    moe_case(klc, gen, 1024, 8, None, True, True, E=32, fp8=True)
    with env("KLC_MOE_WQ_TILE", "256"):
        moe_case(klc, gen, 1024, 8, None, False, True, E=32)
        moe_case(klc, gen, 1024, 4, 32, True, True, E=32)
        moe_case(klc, gen, 300, 8, None, True, True, E=40, fp8=True)
    with env("KLC_MOE_WQ_GEMM", "0"):
        moe_case(klc, gen, 1024, 4, 128, True, True, E=32)
    moe_bf16_case(klc, gen, 1024, 32)
    moe_bf16_case(klc, gen, 300, 40)


# QUANT_CASES (comma-separated, default all but moespeed, which speed includes, manyspeed and blockspeed) picks the parts.
PARTS = {"gemv": gemv_cases, "split": gemv_split_cases, "many": gemv_many_cases, "dequant": dequant_cases, "moe": moe_cases, "block": moe_block_cases, "downexperts": down_by_expert_cases, "fp8": quantize_fp8_cases, "speed": speed,
         "moespeed": moe_speed, "manyspeed": gemv_many_speed, "blockspeed": block_speed}


def main():
    klc = Klc()
    gen = torch.Generator(device="cuda").manual_seed(11)
    wanted = os.environ.get("QUANT_CASES", ",".join(p for p in PARTS if p not in ("moespeed", "manyspeed", "blockspeed"))).split(",")
    unknown = [p for p in wanted if p not in PARTS]
    if unknown:
        sys.exit(f"QUANT_CASES: unknown part(s) {unknown}; known: {', '.join(PARTS)}")
    for name in wanted:
        PARTS[name](klc, gen)
    print(f"{sum(results)}/{len(results)} cases ok")
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
