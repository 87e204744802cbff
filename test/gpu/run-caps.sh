#!/usr/bin/env bash
# Device run of the "every GPU from 24 GB" table (issue 11): test/gpu/caps-table.ts loads the 48B
# model (dummy weights, quantization auto) under each --gpu-memory cap for each context and prints
# the plan's scheme and placement, a 4,096-token prefill slice at that depth and the decode TPOT.
# CAPS (GB, default 24,32,48,80,141) and CONTEXTS (default 131072,1048576) pick the rows.
# Carry: .device (node.xz, caps-table.cjs: test/gpu/prepare-model.sh) and native/build. Logs and JSON go to $OUT.
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/klc-out}
mkdir -p "$OUT"
xz -dc .device/node.xz > /tmp/node && chmod +x /tmp/node && export PATH=/tmp:$PATH
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$OUT/gpu.txt"
export KLC_NATIVE_PATH=$PWD/native/build/klc_native.node
mkdir -p .device/node_modules/onnxruntime-node && echo 'module.exports = {};' > .device/node_modules/onnxruntime-node/index.js
node .device/caps-table.cjs "${CAPS:-24,32,48,80,141}" "${CONTEXTS:-131072,1048576}" --json "$OUT/caps.json" 2>&1 | tee "$OUT/caps.log"
