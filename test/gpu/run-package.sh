#!/usr/bin/env bash
# Device check of the linux-x64 package as a user gets it: unpacked from the .vsix, its CUDA
# library (built without a GPU) must find this GPU from the packaged engine bundle
# (engine-host.js --inspect-model, what Select Model Folder runs), and answer a question on the
# cuda backend through the CLI with that library; the onnx backend runs from the package's
# onnxruntime-node too. Prepare here with test/gpu/prepare-package.sh; carry .device. Logs in $OUT.
set -uo pipefail
OUT=${OUT:-/tmp/klc-out}
mkdir -p "$OUT"
xz -dc .device/node.xz > /tmp/node && chmod +x /tmp/node && export PATH=/tmp:$PATH
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$OUT/gpu.txt"
EXT=$(mktemp -d)
python3 -c "import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])" .device/kimi-linear-code-linux-x64.vsix "$EXT"
PKG="$EXT/extension"
rc=0
node "$PKG/dist/engine-host.js" --inspect-model "$PKG/assets/tiny-model" > "$OUT/inspect.json" || rc=1
python3 - "$OUT/inspect.json" <<'PY' || rc=1
import json, sys
r = json.load(open(sys.argv[1]))
gpu = r["gpu"]
print("inspect:", json.dumps(gpu))
print("fit:", json.dumps(r["fit"]))
assert gpu["devices"], f"the packaged CUDA library found no GPU: {gpu.get('unavailable')}"
assert r["fit"].get("fits") is True, "the tiny model must fit"
print("PASS the packaged engine sees the GPU and plans the tiny model on it")
PY
export KLC_NATIVE_PATH="$PKG/native/build/klc_native.node" NODE_PATH="$PKG/node_modules"
node -e "const m={exports:{}};process.dlopen(m,process.env.KLC_NATIVE_PATH);console.log('packaged library built for', m.exports.buildArchs(), 'ABI', m.exports.abiVersion())" | tee -a "$OUT/answers.log"
for backend in cuda onnx; do
  if node .device/klc.cjs ask "What does src/math.ts export?" --workspace test/vscode/fixtures/workspace --model "$PKG/assets/tiny-model" \
      --backend "$backend" --max-new-tokens 16 --cache-dir "$(mktemp -d)" > "$OUT/answer_$backend.txt" 2>> "$OUT/answers.log"; then
    echo "PASS klc ask on the $backend backend from the package: $(wc -c < "$OUT/answer_$backend.txt") bytes of answer"
  else
    echo "FAIL klc ask on the $backend backend from the package"; tail -5 "$OUT/answers.log"; rc=1
  fi
done
grep -E "backend|cuda|onnx" "$OUT/answers.log" | head -10
rm -rf "$EXT"
exit $rc
