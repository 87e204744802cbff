#!/usr/bin/env bash
# Device run of the quantized CUDA paths (issue 11), about 4 minutes: the klc_wq kernels against
# float64 torch (test/gpu/quant_check.py: GEMV at 4 and 8 bits and on FP8 E4M3 codes,
# dequantization, MoE on quantized experts, the device quantizer to FP8 bit for bit, GEMV bandwidth
# per decode shape against the copy bandwidth, and the prefill GEMM on dequantized INT4 against
# bf16), then the tiny golden model with INT4/INT8/FP8 weights (at load and stored) on the CUDA
# backend against the reference backend (test/gpu/quant-model.test.ts).
# QUANT_CASES picks quant_check.py's parts (gemv,split,dequant,moe,fp8,speed,moespeed; default all but moespeed, which speed includes).
# Carry: .device (node.xz, quant-model.test.cjs; the goldens are the tracked test/fixtures/golden), native/build.
# Prepare here with test/gpu/prepare-model.sh. Logs go to $OUT.
set -uo pipefail
source "$(dirname "$0")/device-env.sh"
rc=0
# The reference-equality checks need exact fp32 activations.
export KLC_CUDA_EXACT=1 PYTHONUNBUFFERED=1 KLC_GOLDEN_DIR=$PWD/test/fixtures/golden
# QUANT_KERNELS=0 runs only the models (run-round.sh step quantmodel).
if [ "${QUANT_KERNELS:-1}" = 1 ]; then
  ( cd test/gpu && python3 quant_check.py ) > "$OUT/quant_check.log" 2>&1 || rc=1
  grep -E "FAIL|figure:|cases ok|Error" "$OUT/quant_check.log" | head -100
fi
node --test --test-reporter=spec .device/quant-model.test.cjs > "$OUT/quant-model.log" 2>&1 || rc=1
grep -E "figure:|✔|✖|skipped|Error|error" "$OUT/quant-model.log" | head -40
exit $rc
