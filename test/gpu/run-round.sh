#!/usr/bin/env bash
# One device call for the checks of several issues, under one deadline (a call may run 600 s):
# the MLA prefill kernels (run-mla.sh: fa2 and wgmma against float64, timed beside cuDNN), the
# quantized-weight kernels (quant_check.py), the model tests (run-scale.sh with CONTEXTS=none), the default mode
# against transformers' bf16 (run-hf-bf16.sh), then `klc bench` on the 48B model at $CONTEXTS with the
# MLA kernel that passed its check (wgmma when it did, else fa2). Each step gets the time that is
# left, so a slow or hanging one cannot take the later ones' results with it.
# Carry: .device and native/build (test/gpu/prepare-model.sh). STEPS picks steps (default all of
# "mla bench model hf w4a16", in that order). Logs and JSON go to $OUT/<step>.
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/klc-out}
DEADLINE=$(( $(date +%s) + ${BUDGET_S:-570} ))
left() { echo $(( DEADLINE - $(date +%s) )); }
rc=0
mla_kernel=fa2
for step in ${STEPS:-mla bench model hf w4a16}; do
  t=$(left)
  [ "$t" -lt 20 ] && { echo "== $step: skipped, ${t} s left"; rc=1; continue; }
  mkdir -p "$OUT/$step"
  echo "== $step ($t s left)"
  case $step in
    mla) OUT=$OUT/mla KLC_MLA_VARIANTS="fa2 wgmma" KLC_MLA_TIMEOUT=$(( t / 2 < 110 ? t / 2 : 110 )) timeout "$t" bash test/gpu/run-mla.sh > "$OUT/mla/run.log" 2>&1
         r=$?; grep -E "FAIL|fail|wrong|TFLOP|cuDNN" "$OUT/mla/run.log" | tail -30
         [ $r = 0 ] && mla_kernel=auto || rc=1 ;;
    w4a16) (cd test/gpu && timeout "$(( t < 150 ? t : 150 ))" python3 quant_check.py) > "$OUT/w4a16/run.log" 2>&1 || rc=1; grep -E "FAIL|figure:|cases ok" "$OUT/w4a16/run.log" | tail -30 ;;
    model) OUT=$OUT/model CONTEXTS=none KLC_MLA_KERNEL=$mla_kernel timeout "$(( t < 240 ? t : 240 ))" bash test/gpu/run-scale.sh || rc=1 ;;
    hf) OUT=$OUT/hf KLC_MLA_KERNEL=$mla_kernel timeout "$(( t < 180 ? t : 180 ))" bash test/gpu/run-hf-bf16.sh > "$OUT/hf/run.log" 2>&1 || rc=1; tail -40 "$OUT/hf/run.log" ;;
    bench) echo "MLA kernel: $mla_kernel"; OUT=$OUT/bench KLC_SCALE_ONLY=1 CONTEXTS=${CONTEXTS:-4096,131072} KLC_MLA_KERNEL=$mla_kernel timeout "${BENCH_S:-$t}" bash test/gpu/run-scale.sh || rc=1 ;;
  esac
done
exit $rc
