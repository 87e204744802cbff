#!/usr/bin/env bash
# Device run of batched decode and device sampling (issue 6): builds the library for sm_90 there,
# checks the batched KDA/MLA decode kernels against float64 torch and device sampling against a
# port of pickToken, prints the timing table (batch_check.py), then runs the model test on the
# CUDA backend (decodeBatch vs single decodes, device picks vs host picks, goldens, reference).
# Carry: .device (node.xz, node-include/, golden/tiny-kimi-public, model.test.cjs) and native/build.
# Prepare here with test/gpu/prepare-model.sh. KLC_DEVICE_BUILD=0 uses the carried native/build;
# KLC_LIB_DIR and KLC_MODEL_TEST point at other carried copies of the library and the test bundle.
# Logs go to $OUT.
set -uo pipefail
OUT=${OUT:-/tmp/klc-out}
mkdir -p "$OUT"
xz -dc .device/node.xz > /tmp/node && chmod +x /tmp/node && export PATH=/tmp:$PATH
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader | tee "$OUT/gpu.txt"
rc=0
lib=${KLC_LIB_DIR:-$PWD/native/build}
if [ "${KLC_DEVICE_BUILD:-1}" != 0 ]; then
  rm -rf /tmp/klc-batch && mkdir -p /tmp/klc-batch && cp -r native tools package.json /tmp/klc-batch/
  ( cd /tmp/klc-batch && time KLC_NODE_INCLUDE=$OLDPWD/.device/node-include node tools/build-native.mjs --archs 90 --jobs 16 ) > "$OUT/build.log" 2>&1 \
    || { echo "device build FAILED"; tail -n 20 "$OUT/build.log"; exit 1; }
  tail -n 4 "$OUT/build.log"
  lib=/tmp/klc-batch/native/build
fi
export KLC_LIB=$lib/libklc_native.so KLC_NATIVE_PATH=$lib/klc_native.node PYTHONUNBUFFERED=1
( cd test/gpu && python3 batch_check.py "$OUT/batch.json" ) 2>&1 | tee "$OUT/batch.log" || rc=1
# The bundle keeps onnxruntime-node external and the device has no node_modules: an empty module
# stands in, so the onnx backend is simply absent there.
mkdir -p .device/node_modules/onnxruntime-node && echo 'module.exports = {};' > .device/node_modules/onnxruntime-node/index.js
KLC_CUDA_EXACT=1 KLC_GOLDEN_DIR=$PWD/.device/golden KLC_TINY_MODEL=$PWD/assets/tiny-model \
  node --test --test-reporter=spec "${KLC_MODEL_TEST:-.device/model.test.cjs}" > "$OUT/model.log" 2>&1 || rc=1
[ -f .device/plan-parity.test.cjs ] && { KLC_TINY_MODEL=$PWD/assets/tiny-model node --test --test-reporter=spec .device/plan-parity.test.cjs >> "$OUT/model.log" 2>&1 || rc=1; }
grep -E "figure:|✔|✖|skipped|Error|error" "$OUT/model.log" | head -40
exit $rc
