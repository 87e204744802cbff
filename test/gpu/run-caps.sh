#!/usr/bin/env bash
# Device run of the "every GPU from 24 GB" table (issue 11): test/gpu/caps-table.ts loads the 48B
# model (dummy weights, quantization auto) under each --gpu-memory cap for each context and prints
# the plan's scheme and placement, a 4,096-token prefill slice at that depth and the decode TPOT.
# CAPS (GB, default 24,32,48,80,141) and CONTEXTS (default 131072,1048576) pick the rows.
# Carry: .device (node.xz, caps-table.cjs: test/gpu/prepare-model.sh) and native/build. Logs and JSON go to $OUT.
set -uo pipefail
source "$(dirname "$0")/device-env.sh"
export KLC_NATIVE_PATH=$PWD/native/build/klc_native.node
node .device/caps-table.cjs "${CAPS:-24,32,48,80,141}" "${CONTEXTS:-131072,1048576}" --json "$OUT/caps.json" 2>&1 | tee "$OUT/caps.log"
