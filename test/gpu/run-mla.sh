#!/usr/bin/env bash
# Device run of the MLA prefill kernels (issue 12): every variant the GPU runs (fa2; wgmma on
# H100/H200) against float64 torch, then timed beside cuDNN SDPA at 32k/128k causal and 4k slices
# over 128k and 1M prefixes (test/gpu/mla_prefill_check.py). About 2 minutes on an H200.
# Carry: native/build, built here with `node tools/build-native.mjs --archs 90` (it holds the sm_90a
# unit). KLC_DEVICE_BUILD=1 rebuilds there first, which needs .device (node.xz, node-include/) from
# test/gpu/prepare-device.sh. Logs and JSON go to $OUT.
set -uo pipefail
OUT=${OUT:-/tmp/klc-out}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader | tee "$OUT/gpu.txt"
if [ "${KLC_DEVICE_BUILD:-0}" = 1 ]; then
  xz -dc .device/node.xz > /tmp/node && chmod +x /tmp/node && export PATH=/tmp:$PATH
  KLC_NODE_INCLUDE=$PWD/.device/node-include node tools/build-native.mjs --archs 90 --jobs 16 > "$OUT/build.log" 2>&1 \
    || { tail -n 20 "$OUT/build.log"; exit 1; }
  tail -n 1 "$OUT/build.log"
fi
[ -f native/build/libklc_native.so ] || { echo "native/build/libklc_native.so missing: carry native/build or set KLC_DEVICE_BUILD=1"; exit 1; }
export PYTHONUNBUFFERED=1
timeout "${KLC_MLA_TIMEOUT:-420}" python3 test/gpu/mla_prefill_check.py "$OUT/mla_prefill.json" "$@" 2>&1 | tee "$OUT/mla_prefill.log"
