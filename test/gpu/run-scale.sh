#!/usr/bin/env bash
# Device run of issue 10 (the whole model at the whole context): the model test on the CUDA backend
# (goldens, reference parity, dummy weights filled on the GPU vs the host generator, copy-on-write
# forks with and without virtual memory, streamed state files) in exact mode (fp32 MLA caches), the
# same in tensor-core mode over bf16 MLA caches (bf16-cache.test.ts) and the plan parity check, then
# `klc bench --contexts` on the full 27-layer Kimi-Linear-48B-A3B with dummy weights in bf16.
# Carry: .device (node.xz, node-include/, model.test.cjs, bf16-cache.test.cjs, plan-parity.test.cjs, klc.cjs: test/gpu/prepare-model.sh) and
# native/build/klc_native.node (built here for sm_90; the goldens are the tracked test/fixtures/golden).
# CONTEXTS picks the contexts (default 4096,131072; none: the tests only); KLC_SCALE_ONLY=1 skips the tests.
# Logs and the JSON figures go to $OUT.
set -uo pipefail
source "$(dirname "$0")/device-env.sh"
export KLC_NATIVE_PATH=$PWD/native/build/klc_native.node
rc=0
if [ "${KLC_SCALE_ONLY:-0}" != 1 ]; then
  KLC_CUDA_EXACT=1 KLC_GOLDEN_DIR=$PWD/test/fixtures/golden KLC_TINY_MODEL=$PWD/assets/tiny-model KLC_BIG_CONFIG=$PWD/assets/configs/kimi-linear-48b-a3b-instruct.json \
    timeout 300 node --test --test-reporter=spec .device/model.test.cjs > "$OUT/model.log" 2>&1 || rc=1
  KLC_TINY_MODEL=$PWD/assets/tiny-model timeout 180 node --test --test-reporter=spec .device/bf16-cache.test.cjs >> "$OUT/model.log" 2>&1 || rc=1
  KLC_TINY_MODEL=$PWD/assets/tiny-model timeout 60 node --test --test-reporter=spec .device/plan-parity.test.cjs >> "$OUT/model.log" 2>&1 || rc=1
  grep -E "figure:|✔|✖|skipped|Error|error" "$OUT/model.log" | head -60
fi
[ "${CONTEXTS-4096,131072}" = none ] && exit $rc
node .device/klc.cjs bench --backend cuda --load-format dummy --model-config assets/configs/kimi-linear-48b-a3b-instruct.json \
  --contexts "${CONTEXTS:-4096,131072}" --decode-tokens "${DECODE_TOKENS:-64}" --json "$OUT/scale.json" ${SCALE_ARGS:-} 2>&1 | tee "$OUT/scale.log" || rc=1
nvidia-smi --query-gpu=memory.used,memory.total --format=csv,noheader >> "$OUT/gpu.txt"
exit $rc
