#!/usr/bin/env bash
# Ours and transformers side by side from one device call (issue 12): transformers' own Kimi Linear at
# the 48B widths (../shared/tools/hf_scale_anchor.py: a 9-layer slice scaled to 27 layers per kind,
# fla's KDA kernels when .ref/fla-src is carried), then `klc bench` on the whole 27-layer model with
# dummy weights at the same contexts (a raw prefill of each, TPOT, 8 answers together, each with its
# floor), then one table (test/gpu/side-by-side.ts). The 48B model in bf16 needs an H200; on an
# 80 GB card pass SCALE_ARGS="--quantization int8" (then the two do not compare at equal precision,
# and the table's card line is the only place that says so: name it in the results).
# CONTEXTS (default 4096,32768,131072), HF_S (transformers' time budget, default 240 s).
# Carry: .device (node.xz, klc.cjs, side-by-side.cjs and hf-anchor/, the anchor script with its
# kimi_config.py: test/gpu/prepare-model.sh), native/build, and for fla .ref/fla-src. Logs go to $OUT.
set -uo pipefail
source "$(dirname "$0")/device-env.sh"
export KLC_NATIVE_PATH=$PWD/native/build/klc_native.node
CONTEXTS=${CONTEXTS:-4096,32768,131072}
HF_S=${HF_S:-240}
rc=0
ANCHOR=.device/hf-anchor/hf_scale_anchor.py
[ -d .ref/fla-src ] && export PYTHONPATH=$PWD/.ref/fla-src:${PYTHONPATH:-}
timeout $(( HF_S + 60 )) python3 "$ANCHOR" --out "$OUT/hf" --lengths "$CONTEXTS" --budget "$HF_S" --fla-bare \
  > "$OUT/hf.log" 2>&1 || rc=1
tail -5 "$OUT/hf.log"
node .device/klc.cjs bench --backend cuda --load-format dummy --model-config assets/configs/kimi-linear-48b-a3b-instruct.json \
  --contexts "$CONTEXTS" --raw-prefill-up-to 1048576 --decode-tokens "${DECODE_TOKENS:-32}" --json "$OUT/scale.json" ${SCALE_ARGS:-} \
  > "$OUT/scale.log" 2>&1 || rc=1
tail -3 "$OUT/scale.log"
node .device/side-by-side.cjs "$OUT/scale.json" "$OUT/hf/hf_scale_anchor.json" | tee "$OUT/side-by-side.md" || rc=1
exit $rc
