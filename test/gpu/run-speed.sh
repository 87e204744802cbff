#!/usr/bin/env bash
# Device run of the tensor-core milestone: the layer-op checks against float64 torch (the exact
# fp32 kernels and the cuBLAS tensor-core forms), the model against the goldens and the reference
# backend in exact mode (KLC_CUDA_EXACT=1), the bundled checkpoint in tensor-core mode against the
# reference (reported), then the speed table at the real widths on a synthetic checkpoint made here
# (test/gpu/make_synthetic.py) next to the HF anchor.
# OPS_ARGS=--mla-heads limits the op checks to the flash MLA prefill; OPS_ARGS=--small-batch to the linear, MoE
# and small-batch (decode) checks and timings.
# Carry: .device, or the folder named by KLC_DEVICE_DIR (node.xz, node-include/, golden/tiny-kimi-public, model.test.cjs,
# klc.cjs, speed-table.cjs, and for KLC_PREBUILT=1 native-build.tar.xz with the two built libraries); the
# library is built there for sm_90.
# Prepare here with test/gpu/prepare-model.sh. Logs go to $OUT.
set -uo pipefail
OUT=${OUT:-/tmp/klc-out}
CONTEXTS=${CONTEXTS:-4096,32768,131072}
LAYERS=${LAYERS:-3}
DEV=${KLC_DEVICE_DIR:-.device}
mkdir -p "$OUT"
xz -dc $DEV/node.xz > /tmp/node && chmod +x /tmp/node && export PATH=/tmp:$PATH
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader | tee "$OUT/gpu.txt"
# cuBLAS comes with torch's CUDA wheels here; a user's comes with the CUDA toolkit.
KLC_CUBLAS=$(python3 -c "import glob,os,torch; c=sorted(glob.glob(os.path.join(os.path.dirname(os.path.dirname(torch.__file__)),'nvidia','**','libcublas.so.1*'),recursive=True)); print(c[0] if c else '')")
export KLC_CUBLAS LD_LIBRARY_PATH=$(dirname "${KLC_CUBLAS:-/x}"):${LD_LIBRARY_PATH:-}
echo "cuBLAS: ${KLC_CUBLAS:-not found}"
rc=0
# KLC_PREBUILT=1 runs the carried native/build (built here by prepare-model.sh; or packed as
# $DEV/native-build.tar.xz to save room in the carry) instead of building there.
if [ "${KLC_PREBUILT:-0}" = 1 ] && [ -f "$DEV/native-build.tar.xz" ]; then mkdir -p native/build && tar -C native/build -xJf "$DEV/native-build.tar.xz"; fi
if [ "${KLC_PREBUILT:-0}" = 1 ] && [ -f native/build/libklc_native.so ]; then
  echo "library: carried native/build" | tee "$OUT/build.log"
else
  KLC_NODE_INCLUDE=$PWD/$DEV/node-include node tools/build-native.mjs --archs 90 --jobs 16 > "$OUT/build.log" 2>&1 || { tail "$OUT/build.log"; exit 1; }
fi
mkdir -p $DEV/node_modules/onnxruntime-node && echo 'module.exports = {};' > $DEV/node_modules/onnxruntime-node/index.js
export PYTHONUNBUFFERED=1 KLC_GOLDEN_DIR=${KLC_GOLDEN_DIR:-$PWD/$DEV/golden} KLC_TINY_MODEL=$PWD/assets/tiny-model
( cd test/gpu && python3 ops_check.py "$OUT/ops.json" ${OPS_ARGS:-} ) > "$OUT/ops.log" 2>&1 || rc=1
grep -E "FAIL|engine|flash|Error|^time|copy bandwidth" "$OUT/ops.log" | head -40
# KLC_MODEL_TEST=0 skips the model test when the same call already ran it (test/gpu/run-all.sh).
if [ "${KLC_MODEL_TEST:-1}" != 0 ]; then
  KLC_CUDA_EXACT=1 node --test --test-reporter=spec $DEV/model.test.cjs > "$OUT/model.log" 2>&1 || rc=1
  grep -E "✔|✖|Error" "$OUT/model.log" | head -12
fi
python3 - > $DEV/ids.json <<'PY'
import json; print(json.dumps([[(i * 7919 + 11) % 3800 for i in range(150)], [(i * 104729 + 3) % 3800 for i in range(97)]]))
PY
node $DEV/klc.cjs forward --model assets/tiny-model --input-ids $DEV/ids.json --out /tmp/fwd_tc.safetensors --backend cuda 2>>"$OUT/model.log"
KLC_CUDA_EXACT=1 node $DEV/klc.cjs forward --model assets/tiny-model --input-ids $DEV/ids.json --out /tmp/fwd_ref.safetensors --backend reference 2>>"$OUT/model.log"
python3 - >> "$OUT/model.log" <<'PY'
from safetensors.numpy import load_file
a, b = load_file("/tmp/fwd_tc.safetensors"), load_file("/tmp/fwd_ref.safetensors")
for k in b:
    print(f"bundled bf16 checkpoint, tensor-core mode, {k}: relative error vs reference {float(abs(a[k] - b[k]).max() / abs(b[k]).max()):.2e}, "
          f"argmax equal at {int((a[k].argmax(-1) == b[k].argmax(-1)).sum())} of {b[k].shape[0]} positions")
PY
tail -n 2 "$OUT/model.log"
python3 test/gpu/make_synthetic.py /tmp/synth "$LAYERS" 2>&1 | tee "$OUT/speed.log"
COPY=$(python3 -c "
import torch
x = torch.empty(2**28, device='cuda'); y = torch.empty_like(x); y.copy_(x); torch.cuda.synchronize()
a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
a.record()
for _ in range(20): y.copy_(x)
b.record(); torch.cuda.synchronize()
print(f'{2 * 2**30 * 20 / (a.elapsed_time(b) / 1e3) / 1e12:.3f}')")
echo "device copy bandwidth (read + write): $COPY TB/s" | tee -a "$OUT/speed.log"
node $DEV/speed-table.cjs /tmp/synth "$CONTEXTS" "$OUT/speed.json" "$COPY" 2>&1 | tee -a "$OUT/speed.log" || rc=1
exit $rc
