# Sourced by the device scripts (run-*.sh): the repository root as the working folder, $OUT made,
# node from .device/node.xz on the PATH, the card named in $OUT/gpu.txt, and an empty
# onnxruntime-node module for the bundles, which keep it external: the device has no node_modules,
# so the onnx backend is simply absent there (these checks use cuda and reference).
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
OUT=${OUT:-/tmp/klc-out}
mkdir -p "$OUT"
xz -dc .device/node.xz > /tmp/node && chmod +x /tmp/node && export PATH=/tmp:$PATH
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$OUT/gpu.txt"
mkdir -p .device/node_modules/onnxruntime-node && echo 'module.exports = {};' > .device/node_modules/onnxruntime-node/index.js
