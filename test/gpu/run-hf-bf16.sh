#!/usr/bin/env bash
# Device check of the CUDA default mode (bf16 activations into tensor-core GEMMs) against
# transformers' own bf16 run, in one call (issue 15): test/gpu/hf_bf16_reference.py writes bf16 copies
# of the golden tiny-kimi-public and the bundled tiny model, a seeded checkpoint at wider widths, and
# transformers' fp32 and bf16 logits on fixed tokens; test/gpu/hf-bf16.test.ts then runs our CUDA
# backend in its default mode on the same checkpoints and tokens and fails unless it is no farther
# from transformers' fp32 logits than transformers' bf16 run is.
# Carry: .device (node.xz, hf-bf16.test.cjs; node-include/ when native/build is not carried) and
# native/build (the sm_90 library test/gpu/prepare-model.sh builds; built here when absent).
# Prepare here with test/gpu/prepare-model.sh. Logs go to $OUT; the checkpoints and logits (about
# 1 GB) to $KLC_HF_BF16_DIR (default /tmp/klc-hf-bf16), outside $OUT.
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/klc-out}
DEV=${KLC_DEVICE_DIR:-.device}
export KLC_HF_BF16_DIR=${KLC_HF_BF16_DIR:-/tmp/klc-hf-bf16} PYTHONUNBUFFERED=1
mkdir -p "$OUT"
xz -dc $DEV/node.xz > /tmp/node && chmod +x /tmp/node && export PATH=/tmp:$PATH
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$OUT/gpu.txt"
# cuBLAS comes with torch's CUDA wheels here; a user's comes with the CUDA toolkit.
KLC_CUBLAS=$(python3 -c "import glob,os,torch; c=sorted(glob.glob(os.path.join(os.path.dirname(os.path.dirname(torch.__file__)),'nvidia','**','libcublas.so.1*'),recursive=True)); print(c[0] if c else '')")
export KLC_CUBLAS LD_LIBRARY_PATH=$(dirname "${KLC_CUBLAS:-/x}"):${LD_LIBRARY_PATH:-}
echo "cuBLAS: ${KLC_CUBLAS:-not found}"
if [ -f native/build/klc_native.node ]; then
  echo "library: carried native/build" | tee "$OUT/build.log"
else
  KLC_NODE_INCLUDE=$PWD/$DEV/node-include node tools/build-native.mjs --archs 90 --jobs 16 > "$OUT/build.log" 2>&1 \
    || { tail -n 20 "$OUT/build.log"; exit 1; }
fi
# The bundle keeps onnxruntime-node external and the device has no node_modules: an empty module
# stands in, so the onnx backend is simply absent there (this check uses cuda only).
mkdir -p $DEV/node_modules/onnxruntime-node && echo 'module.exports = {};' > $DEV/node_modules/onnxruntime-node/index.js
# The default mode is what is checked, never the exact one.
unset KLC_CUDA_EXACT
python3 test/gpu/hf_bf16_reference.py "$KLC_HF_BF16_DIR" > "$OUT/hf_bf16_reference.log" 2>&1 \
  || { echo "hf_bf16_reference.py FAILED"; tail -n 30 "$OUT/hf_bf16_reference.log"; exit 1; }
cat "$OUT/hf_bf16_reference.log"
cp "$KLC_HF_BF16_DIR/hf_bf16.json" "$OUT/"
rc=0
node --test --test-reporter=spec $DEV/hf-bf16.test.cjs > "$OUT/hf-bf16.log" 2>&1 || rc=1
grep -E "figure:|✔|✖|Error|error" "$OUT/hf-bf16.log" | head -80
exit $rc
