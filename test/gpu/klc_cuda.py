"""ctypes driver of native/build/libklc_native.so for the device tests: torch tensors in, no copies."""
import ctypes
import os

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
LIB = os.environ.get("KLC_LIB", os.path.join(HERE, "..", "..", "native", "build", "libklc_native.so"))


class KdaArgs(ctypes.Structure):
    _fields_ = [("B", ctypes.c_int), ("T", ctypes.c_int), ("H", ctypes.c_int), ("K", ctypes.c_int), ("V", ctypes.c_int),
                ("l2norm_qk", ctypes.c_int), ("raw_gates", ctypes.c_int), ("scale", ctypes.c_float),
                ("q", ctypes.c_void_p), ("k", ctypes.c_void_p), ("v", ctypes.c_void_p),
                ("g", ctypes.c_void_p), ("beta", ctypes.c_void_p),
                ("A_log", ctypes.c_void_p), ("dt_bias", ctypes.c_void_p),
                ("state", ctypes.c_void_p), ("o", ctypes.c_void_p)]


class Klc:
    def __init__(self, device=0):
        self.lib = ctypes.CDLL(LIB)
        self.lib.klc_last_error.restype = ctypes.c_char_p
        self.lib.klc_build_archs.restype = ctypes.c_char_p
        self.ctx = ctypes.c_void_p()
        self._check(self.lib.klc_create(device, ctypes.byref(self.ctx)))

    def _check(self, rc):
        if rc != 0:
            raise RuntimeError(f"klc error {rc}: {self.lib.klc_last_error().decode()}")

    def set_stream(self, stream_ptr):
        self._check(self.lib.klc_set_stream(self.ctx, ctypes.c_void_p(stream_ptr)))

    def set_max_segment_tokens(self, n):
        self._check(self.lib.klc_set_max_segment_tokens(self.ctx, n))

    def sync(self):
        self._check(self.lib.klc_synchronize(self.ctx))

    @staticmethod
    def args(q, k, v, g, beta, state, o, scale=None, l2norm=True, A_log=None, dt_bias=None):
        B, T, H, K = q.shape
        V = v.shape[-1]
        for name, t, dt in (("q", q, torch.bfloat16), ("k", k, torch.bfloat16), ("v", v, torch.bfloat16),
                            ("g", g, torch.float32), ("beta", beta, torch.float32), ("state", state, torch.float32),
                            ("o", o, torch.bfloat16)):
            assert t.dtype == dt and t.is_contiguous() and t.is_cuda, f"{name}: {t.dtype} contiguous={t.is_contiguous()}"
        raw = A_log is not None
        return KdaArgs(B, T, H, K, V, int(l2norm), int(raw), K ** -0.5 if scale is None else scale,
                       q.data_ptr(), k.data_ptr(), v.data_ptr(), g.data_ptr(), beta.data_ptr(),
                       A_log.data_ptr() if raw else None, dt_bias.data_ptr() if raw else None,
                       state.data_ptr(), o.data_ptr())

    def prefill(self, a):
        self._check(self.lib.klc_kda_prefill(self.ctx, ctypes.byref(a)))

    def decode(self, a):
        self._check(self.lib.klc_kda_decode(self.ctx, ctypes.byref(a)))

    def time(self, a, decode, iters):
        ms = ctypes.c_float()
        self._check(self.lib.klc_kda_time(self.ctx, ctypes.byref(a), int(decode), iters, ctypes.byref(ms)))
        return ms.value

    def close(self):
        if self.ctx:
            self.lib.klc_destroy(self.ctx)
            self.ctx = ctypes.c_void_p()
