#!/usr/bin/env bash
# Every CUDA check and figure of issue 6 in one device call (the session's device time is short):
# the library built once for sm_90, then the batched decode and device sampling checks with the
# model test (run-batch.sh: goldens, 64 greedy tokens and split continuation against the reference,
# decodeBatch, device picks), the default (tensor-core) mode against transformers' own bf16 run
# (run-hf-bf16.sh), then the op checks, the bundled checkpoint in tensor-core mode and the speed
# table at the real widths (run-speed.sh). The KDA kernel checks and the fla comparison
# stay in run-kda.sh (they need .ref and the KDA goldens).
# Carry: .device (node.xz, node-include/, golden/tiny-kimi-public, model.test.cjs, klc.cjs, speed-table.cjs, hf-bf16.test.cjs),
# prepared here by test/gpu/prepare-model.sh. Logs go to $OUT/batch, $OUT/hf-bf16 and $OUT/speed.
set -uo pipefail
OUT=${OUT:-/tmp/klc-out}
mkdir -p "$OUT"
xz -dc .device/node.xz > /tmp/node && chmod +x /tmp/node && export PATH=/tmp:$PATH
KLC_NODE_INCLUDE=$PWD/.device/node-include node tools/build-native.mjs --archs 90 --jobs 16 > "$OUT/build.log" 2>&1 \
  || { tail -n 20 "$OUT/build.log"; exit 1; }
rc=0
OUT=$OUT/batch KLC_DEVICE_BUILD=0 bash test/gpu/run-batch.sh || rc=1
OUT=$OUT/hf-bf16 bash test/gpu/run-hf-bf16.sh || rc=1
OUT=$OUT/speed KLC_PREBUILT=1 KLC_MODEL_TEST=0 OPS_ARGS=${OPS_ARGS:---small-batch} CONTEXTS=${CONTEXTS:-4096,32768} \
  bash test/gpu/run-speed.sh || rc=1
exit $rc
