#!/usr/bin/env bash
# Device run of the MLA prefill kernels (issue 12): every variant the GPU runs (fa2; wgmma, wgmma_pipe
# and wgmma_ws on H100/H200) against float64 torch, then timed beside cuDNN SDPA at 32k/128k causal and 4k slices
# over 128k and 1M prefixes (test/gpu/mla_prefill_check.py). About 4 minutes on an H200.
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
# fa2 alone first, then each Hopper variant in its own process (checked against fa2, timed alone), so
# that a faulting or hanging kernel loses only its own results.
# KLC_MLA_VARIANTS (space-separated) runs only those.
variants=fa2
[ "$(python3 -c 'import torch; print(torch.cuda.get_device_capability() == (9, 0))')" = True ] && variants="fa2 wgmma wgmma_pipe wgmma_ws"
variants=${KLC_MLA_VARIANTS:-$variants}
rc=0
for v in $variants; do
  timeout "${KLC_MLA_TIMEOUT:-240}" python3 test/gpu/mla_prefill_check.py "$OUT/mla_$v.json" --variants "$v" --time "$v" "$@" \
    2>&1 | tee "$OUT/mla_$v.log" || { echo "MLA prefill check of $v FAILED (exit ${PIPESTATUS[0]})"; rc=1; }
done
exit $rc
