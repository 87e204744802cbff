#!/usr/bin/env bash
# Device run of the whole-model milestone: kernel checks of the layer ops against float64 torch
# (MLA attention up to 32k tokens and long-cache decode, linear layers at Kimi's shapes), the model
# on the CUDA backend against the goldens and the reference backend (logits, 64 greedy tokens,
# continuation through an exported state), `klc forward --backend cuda [--split]` against
# `--backend reference`, and a rebuild of the library for every architecture there.
# Carry: .device (node.xz, node-include/, model.test.cjs, klc.cjs; the goldens are the tracked test/fixtures/golden), native/build.
# Prepare here with test/gpu/prepare-model.sh. Logs go to $OUT.
set -uo pipefail
OUT=${OUT:-/tmp/klc-out}
mkdir -p "$OUT"
xz -dc .device/node.xz > /tmp/node && chmod +x /tmp/node && export PATH=/tmp:$PATH
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$OUT/gpu.txt"
rc=0
# The full multi-architecture build runs beside the checks, which use the carried sm_90 build.
mkdir -p /tmp/klc-build && cp -r native tools package.json /tmp/klc-build/ 2>/dev/null
( cd /tmp/klc-build && time KLC_NODE_INCLUDE=$OLDPWD/.device/node-include node tools/build-native.mjs --jobs 12 ) > "$OUT/build.log" 2>&1 &
build=$!
# The bundles keep onnxruntime-node external and the device has no node_modules: an empty module
# stands in, so the onnx backend is simply absent there (these checks use cuda and reference).
mkdir -p .device/node_modules/onnxruntime-node && echo 'module.exports = {};' > .device/node_modules/onnxruntime-node/index.js
# The reference-equality checks need exact fp32 activations; run-speed.sh checks tensor-core mode.
export KLC_CUDA_EXACT=1 PYTHONUNBUFFERED=1 KLC_GOLDEN_DIR=$PWD/test/fixtures/golden KLC_TINY_MODEL=$PWD/assets/tiny-model
( cd test/gpu && python3 ops_check.py "$OUT/ops.json" ) 2>&1 | tee "$OUT/ops.log" || rc=1
node --test --test-reporter=spec .device/model.test.cjs > "$OUT/model.log" 2>&1 || rc=1
grep -E "figure:|✔|✖|skipped|Error|error" "$OUT/model.log" | head -40
python3 - > .device/ids.json <<'PY'
import json; print(json.dumps([[(i * 7919 + 11) % 3800 for i in range(150)], [(i * 104729 + 3) % 3800 for i in range(97)]]))
PY
for v in "cuda" "cuda --split 61" "reference"; do
  name=$(echo "$v" | tr ' ' '_')
  node .device/klc.cjs forward --model assets/tiny-model --input-ids .device/ids.json --out "$OUT/fwd_$name.safetensors" --backend $v 2>>"$OUT/forward.log" || { echo "klc forward --backend $v FAILED"; rc=1; }
done
tail -n 3 "$OUT/forward.log"
python3 - "$OUT" <<'PY' || rc=1
import sys
from safetensors.numpy import load_file
out = sys.argv[1]
ref = load_file(f"{out}/fwd_reference.safetensors")
worst = 0.0
for name in ("cuda", "cuda_--split_61"):
    got = load_file(f"{out}/fwd_{name}.safetensors")
    for k, want in ref.items():
        e = float(abs(got[k] - want).max() / abs(want).max())
        worst = max(worst, e)
        print(f"klc forward --backend {name.replace('_', ' ')} {k}: relative error vs reference {e:.2e}")
sys.exit(0 if worst < 1e-4 else 1)
PY
wait $build || { echo "device build FAILED"; rc=1; }
tail -n 5 "$OUT/build.log"
exit $rc
