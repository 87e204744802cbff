#!/usr/bin/env bash
# One device call for the checks of several issues, under one deadline (a call may run 600 s):
# the MLA prefill kernels (run-mla.sh: fa2 and wgmma, or $MLA_VARIANTS, against float64, timed beside cuDNN), the
# quantized paths (run-quant.sh: the klc_wq kernels alone, then INT4/INT8 models against the reference), the model tests (run-scale.sh with CONTEXTS=none), the default mode
# against transformers' bf16 (run-hf-bf16.sh), the batched decode kernels against float64 and their timing
# (batch_check.py: step batch), every op against float64 (ops_check.py: step ops), expert
# offload (run-offload.sh: step offload, OFFLOAD_SPEED=0 skips its 48B timing), the MoE kernels on quantized experts
# against float64 and their timing (quant_check.py: step quantcheck, QUANT_CASES picks), one decode step kernel by
# kernel (run-decode-profile.sh: step profile, PROFILE_STEPS decode steps), the decode fusions of KLC_FUSED_DECODE=1
# and the down kernels by column and by expert (KLC_MOE_DOWN) against float64 and timed against each other (step fused), a decode
# step's MoE blocks alone (step blockspeed), Nsight Compute on the Hopper MLA kernels (run-mla-profile.sh: step mlaprofile), the quantized tiny models alone
# against the reference (step quantmodel: quant-model.test.ts without quant_check.py), `klc accuracy` on the 48B
# model with dummy weights (step accuracy: int8, int4, fp8 against bf16, which needs an H200; on an 80 GB card
# ACCURACY_CONFIG=test/gpu/configs/kimi-linear-48b-widths-8-layers.json, the 48B widths in 8 layers), the 48B model under
# --gpu-memory caps (run-caps.sh: step caps, CAPS_CONTEXTS picks the contexts), `klc bench` at $CONTEXTS with decode steps
# run call by call and then replayed from CUDA graphs (step graphs), `klc bench` at $SLICE_CONTEXTS with each of $SLICES
# tokens per prefill call (step slices), then `klc bench` on the 48B model at $CONTEXTS with the
# MLA kernel that passed its check (wgmma when it did, else fa2). Each step gets the time that is
# left, so a slow or hanging one cannot take the later ones' results with it.
# Carry: .device and native/build (test/gpu/prepare-model.sh). STEPS picks steps (default all of
# "mla bench model hf quant", in that order). Logs and JSON go to $OUT/<step>.
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/klc-out}
DEADLINE=$(( $(date +%s) + ${BUDGET_S:-570} ))
left() { echo $(( DEADLINE - $(date +%s) )); }
rc=0
# KLC_MLA_KERNEL=auto uses wgmma_pipe without step mla (when an earlier call already checked it).
mla_kernel=${KLC_MLA_KERNEL:-fa2}
for step in ${STEPS:-mla bench model hf quant}; do
  t=$(left)
  [ "$t" -lt 20 ] && { echo "== $step: skipped, ${t} s left"; rc=1; continue; }
  mkdir -p "$OUT/$step"
  echo "== $step ($t s left)"
  case $step in
    mla) OUT=$OUT/mla KLC_MLA_VARIANTS=${MLA_VARIANTS:-fa2 wgmma} KLC_MLA_TIMEOUT=$(( t / 2 < 110 ? t / 2 : 110 )) timeout "$t" bash test/gpu/run-mla.sh > "$OUT/mla/run.log" 2>&1
         r=$?; grep -E "FAIL|fail|wrong|TFLOP|cuDNN" "$OUT/mla/run.log" | tail -30
         [ $r = 0 ] && mla_kernel=auto || rc=1 ;;
    # A failed check of the quantized kernels leaves the later steps on the dequantizing MoE path.
    quant) OUT=$OUT/quant timeout "$(( t < 240 ? t : 240 ))" bash test/gpu/run-quant.sh || { rc=1; export KLC_MOE_WQ_GEMM=0; echo "quant failed: later steps run with KLC_MOE_WQ_GEMM=0"; } ;;
    model) OUT=$OUT/model CONTEXTS=none KLC_MLA_KERNEL=$mla_kernel timeout "$(( t < 240 ? t : 240 ))" bash test/gpu/run-scale.sh || rc=1 ;;
    hf) OUT=$OUT/hf KLC_MLA_KERNEL=$mla_kernel timeout "$(( t < 240 ? t : 240 ))" bash test/gpu/run-hf-bf16.sh > "$OUT/hf/run.log" 2>&1 || rc=1; tail -40 "$OUT/hf/run.log" ;;
    batch) ( cd test/gpu && PYTHONUNBUFFERED=1 timeout "$(( t < 300 ? t : 300 ))" python3 batch_check.py "$OUT/batch/batch.json" ) > "$OUT/batch/run.log" 2>&1 || rc=1
         grep -E "FAIL|checks passed|mla decode|copy" "$OUT/batch/run.log" | tail -40 ;;
    ops) ( cd test/gpu && timeout "$(( t < 200 ? t : 200 ))" python3 ops_check.py "$OUT/ops/ops.json" ) > "$OUT/ops/run.log" 2>&1 || rc=1
         grep -E "FAIL|fail|bf16|append" "$OUT/ops/run.log" | tail -30 ;;
    offload) OUT=$OUT/offload SPEED=${OFFLOAD_SPEED:-1} timeout "$(( t < 420 ? t : 420 ))" bash test/gpu/run-offload.sh || rc=1 ;;
    quantcheck) ( source test/gpu/device-env.sh; cd test/gpu && PYTHONUNBUFFERED=1 KLC_CUDA_EXACT=1 QUANT_CASES=${QUANT_CASES:-moe,moespeed} \
           timeout "$(( t < 200 ? t : 200 ))" python3 quant_check.py ) > "$OUT/quantcheck/run.log" 2>&1 || rc=1
         tail -40 "$OUT/quantcheck/run.log" | cut -c1-200 ;;
    profile) OUT=$OUT/profile STEPS=${PROFILE_STEPS:-200} timeout "$(( t < 240 ? t : 240 ))" bash test/gpu/run-decode-profile.sh > "$OUT/profile/run.log" 2>&1 || rc=1
         rm -f "$OUT"/profile/*.sqlite; tail -50 "$OUT/profile/run.log" | cut -c1-200 ;;
    mlaprofile) OUT=$OUT/mlaprofile timeout "$t" bash test/gpu/run-mla-profile.sh > "$OUT/mlaprofile/run.log" 2>&1 || rc=1
         cat "$OUT/mlaprofile/run.log" ;;
    # The decode fusions taken with KLC_FUSED_DECODE=1 and the down kernel by expert: their kernels against float64,
    # then decode steps of the 48B model (FUSED_QUANT at load, default int8; none, bf16, needs an H200) off, fused, and
    # fused by expert, interleaved, at a 256-token and a 128k context (FUSED_CONTEXTS).
    fused) ( source test/gpu/device-env.sh; cd test/gpu && KLC_CUDA_EXACT=1 QUANT_CASES=block,downexperts PYTHONUNBUFFERED=1 timeout 150 python3 quant_check.py &&
             timeout 150 python3 batch_check.py "$OUT/fused/batch.json" ) > "$OUT/fused/checks.log" 2>&1 || rc=1
         grep -E "FAIL|MoE block|MoE down|b_proj|gated norm|moe router|cases ok|Error" "$OUT/fused/checks.log" | cut -c1-200
         for ctx in ${FUSED_CONTEXTS:-256 131072}; do for v in "0 columns" "1 columns" "1 experts"; do set -- $v
           ( source test/gpu/device-env.sh; KLC_FUSED_DECODE=$1 KLC_MOE_DOWN=$2 timeout 150 node .device/decode-profile.cjs 100 --quantization "${FUSED_QUANT:-int8}" --context $ctx ) 2>&1 |
             grep -E "^decode|rror" | sed "s/^/context $ctx, KLC_FUSED_DECODE=$1 KLC_MOE_DOWN=$2: /" | tee -a "$OUT/fused/ab.log"
         done; done ;;
    # A decode step's MoE blocks alone (26 layers in a CUDA graph, 1 and 8 rows, INT8 and INT4 g32): fused against on
    # their own, the down kernel by column against by expert, per layer against the bytes they read.
    blockspeed) ( source test/gpu/device-env.sh; cd test/gpu && QUANT_CASES=blockspeed PYTHONUNBUFFERED=1 timeout "$(( t < 200 ? t : 200 ))" python3 quant_check.py ) \
           > "$OUT/blockspeed/run.log" 2>&1 || rc=1
         grep -E "FAIL|figure|cases ok|Error" "$OUT/blockspeed/run.log" | cut -c1-220 ;;
    quantmodel) OUT=$OUT/quantmodel QUANT_KERNELS=0 timeout "$(( t < 180 ? t : 180 ))" bash test/gpu/run-quant.sh || rc=1 ;;
    accuracy) ( source test/gpu/device-env.sh; timeout "$(( t < 300 ? t : 300 ))" node .device/klc.cjs accuracy --backend cuda --load-format dummy \
           --model-config "${ACCURACY_CONFIG:-assets/configs/kimi-linear-48b-a3b-instruct.json}" --json "$OUT/accuracy/accuracy.json" ) > "$OUT/accuracy/accuracy.log" 2>&1 || rc=1
         tail -8 "$OUT/accuracy/accuracy.log" ;;
    caps) OUT=$OUT/caps CONTEXTS=${CAPS_CONTEXTS:-131072,1048576} timeout "$t" bash test/gpu/run-caps.sh || rc=1 ;;
    bench) echo "MLA kernel: $mla_kernel"; OUT=$OUT/bench KLC_SCALE_ONLY=1 CONTEXTS=${CONTEXTS:-4096,131072} KLC_MLA_KERNEL=$mla_kernel timeout "${BENCH_S:-$t}" bash test/gpu/run-scale.sh || rc=1 ;;
    graphs) for g in 0 1; do echo "KLC_CUDA_GRAPHS=$g"; mkdir -p "$OUT/graphs/g$g"
              KLC_CUDA_GRAPHS=$g OUT=$OUT/graphs/g$g KLC_SCALE_ONLY=1 CONTEXTS=${CONTEXTS:-4096} KLC_MLA_KERNEL=$mla_kernel timeout "$(( $(left) / (2 - g) ))" \
                bash test/gpu/run-scale.sh 2>&1 | grep -E "^\[|Error|error" || rc=1; done ;;
    slices) for s in ${SLICES:-4096 8192 16384}; do echo "--prefill-slice $s"; mkdir -p "$OUT/slices/s$s"
              SCALE_ARGS="${SCALE_ARGS:-} --prefill-slice $s" OUT=$OUT/slices/s$s KLC_SCALE_ONLY=1 CONTEXTS=${SLICE_CONTEXTS:-131072} KLC_MLA_KERNEL=$mla_kernel \
                timeout "$(left)" bash test/gpu/run-scale.sh 2>&1 | grep -E "^\[|first forward|Error|error" || rc=1; done ;;
  esac
done
exit $rc
