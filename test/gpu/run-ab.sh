#!/usr/bin/env bash
# This build against an earlier one in one device call (timings compare only within one call, on one card): the
# earlier revision's native sources and build script, exported here into .device/old and carried,
#     rm -rf .device/old && mkdir -p .device/old && git archive REV native/src native/include tools/build-native.mjs | tar -x -C .device/old
# are built beside this tree's (both for sm_90), then AB_STEPS (default "checks blockspeed decode") run:
#   checks      this build only: quant_check.py's MoE parts (block, downexperts, moe) and batch_check.py against
#               float64 (a later step's figures count only if these pass);
#   blockspeed  quant_check.py's MoE blocks of a decode step alone (1 and 8 rows, INT8 and INT4 g32, each way of
#               running them), µs a layer, with the earlier library and then this one;
#   decode      decode-profile.cjs on the 48B model (AB_QUANT at load, default int8; AB_CONTEXT tokens, default 256),
#               ms per step of 1 and of 8 answers, AB_ROUNDS times (default 2) alternating old and new;
#   variants    decode-profile.cjs as in decode with this build under each of AB_VARIANTS (space-separated environment
#               assignments, e.g. "KLC_FUSED_DECODE=0 KLC_FUSED_DECODE=shared KLC_MOE_DOWN=columns").
# Logs go to $OUT/ab; the figures are gathered in $OUT/ab/summary.txt. Carry .device/old, .device/node.xz,
# .device/node-include and .device/decode-profile.cjs.
set -uo pipefail
cd "$(dirname "$0")/../.."
source test/gpu/device-env.sh
mkdir -p "$OUT/ab"
[ -f .device/old/tools/build-native.mjs ] || { echo "no earlier tree in .device/old (see the header of $0)"; exit 2; }
export KLC_NODE_INCLUDE=${KLC_NODE_INCLUDE:-$PWD/.device/node-include}
for tree in . .device/old; do
  [ -f "$tree/native/build/libklc_native.so" ] && [ "${AB_REBUILD:-1}" = 0 ] && continue
  node "$tree/tools/build-native.mjs" --archs 90 --jobs 16 >> "$OUT/ab/build.log" 2>&1 || { tail -30 "$OUT/ab/build.log"; exit 1; }
done
old=$PWD/.device/old/native/build new=$PWD/native/build
summary=$OUT/ab/summary.txt
rc=0
for step in ${AB_STEPS:-checks blockspeed decode}; do
  case $step in
    checks) ( cd test/gpu && KLC_LIB=$new/libklc_native.so KLC_CUDA_EXACT=1 QUANT_CASES=block,downexperts,moe PYTHONUNBUFFERED=1 \
                timeout 200 python3 quant_check.py && KLC_LIB=$new/libklc_native.so timeout 150 python3 batch_check.py "$OUT/ab/batch.json" ) \
          > "$OUT/ab/checks.log" 2>&1 || rc=1
        grep -E "FAIL|cases ok|checks passed|Error" "$OUT/ab/checks.log" | cut -c1-200 | tee -a "$summary" ;;
    blockspeed) for v in old new; do lib=${!v}
          ( cd test/gpu && KLC_LIB=$lib/libklc_native.so QUANT_CASES=blockspeed PYTHONUNBUFFERED=1 timeout 200 python3 quant_check.py ) \
            > "$OUT/ab/blockspeed-$v.log" 2>&1 || rc=1
          grep -E "^figure|FAIL" "$OUT/ab/blockspeed-$v.log" | sed "s/^/$v: /" | tee -a "$summary"
        done ;;
    decode) for r in $(seq "${AB_ROUNDS:-2}"); do for v in old new; do lib=${!v}
          KLC_NATIVE_PATH=$lib/klc_native.node timeout 150 node .device/decode-profile.cjs 100 --quantization "${AB_QUANT:-int8}" \
            --context "${AB_CONTEXT:-256}" > "$OUT/ab/decode-$v-$r.log" 2>&1 || rc=1
          grep -E "^decode|rror" "$OUT/ab/decode-$v-$r.log" | sed "s/^/$v, round $r: /" | tee -a "$summary"
        done; done ;;
    variants) for v in ${AB_VARIANTS:-KLC_FUSED_DECODE=0}; do
          env "$v" KLC_NATIVE_PATH=$new/klc_native.node timeout 150 node .device/decode-profile.cjs 100 --quantization "${AB_QUANT:-int8}" \
            --context "${AB_CONTEXT:-256}" > "$OUT/ab/variant-${v//[^A-Za-z0-9_]/_}.log" 2>&1 || rc=1
          grep -E "^decode|rror" "$OUT/ab/variant-${v//[^A-Za-z0-9_]/_}.log" | sed "s/^/new, $v: /" | tee -a "$summary"
        done ;;
    *) echo "unknown AB step $step"; rc=2 ;;
  esac
done
exit $rc
