#!/usr/bin/env bash
# Device run: where one decode step of the 48B model (dummy weights, QUANT at load, default int8) spends its
# GPU time, kernel by kernel (issue 12: TPOT against its byte floor). With nsys: the steps as the product
# runs them (CUDA graphs replayed, traced node by node), and nsys's table of kernels by total time, which
# decode dominates (test/gpu/decode-profile.ts: 256-token prompts, then STEPS steps of 1 and of 8 answers).
# Without nsys, ncu times LAUNCHES kernels one by one (graphs off) from the first decode step on
# (KLC_PROFILE_DECODE=1 starts the profiler there; about 700 launches a step of one answer), by default with caches
# flushed and clocks locked before each kernel; NCU_CACHE=none NCU_CLOCK=none time them as a step runs them (warm L2,
# boost clocks), one after another.
# PROFILE_ARGS go to decode-profile.cjs (--context N, --batches 8).
# Carry: .device (node.xz, node-include/, decode-profile.cjs: test/gpu/prepare-model.sh) and native/build.
# Output in $OUT: decode-profile.log, the nsys report and its kernel table (kernels.csv), or ncu.csv.
set -uo pipefail
source "$(dirname "$0")/device-env.sh"
export KLC_NATIVE_PATH=$PWD/native/build/klc_native.node
OUT=${OUT:-/tmp/klc-out}
quant=${QUANT:-int8}
rc=0
if command -v nsys > /dev/null; then
  nsys profile -t cuda --cuda-graph-trace=node --force-overwrite true -o "$OUT/decode" \
    node .device/decode-profile.cjs "${STEPS:-200}" --quantization "$quant" ${PROFILE_ARGS:-} > "$OUT/decode-profile.log" 2>&1 || rc=1
  nsys stats -q -r cuda_gpu_kern_sum -f csv -o "$OUT/kernels" "$OUT/decode.nsys-rep" >> "$OUT/decode-profile.log" 2>&1 || rc=1
  grep -E "^decode" "$OUT/decode-profile.log"
  head -45 "$OUT"/kernels*.csv | cut -c1-220
elif command -v ncu > /dev/null; then
  KLC_CUDA_GRAPHS=0 KLC_PROFILE_DECODE=1 ncu --metrics gpu__time_duration.sum --csv --profile-from-start off --launch-count "${LAUNCHES:-1400}" \
    --cache-control "${NCU_CACHE:-all}" --clock-control "${NCU_CLOCK:-base}" \
    node .device/decode-profile.cjs "${STEPS:-20}" --quantization "$quant" ${PROFILE_ARGS:-} > "$OUT/ncu.csv" 2> "$OUT/decode-profile.log" || rc=1
  grep -E "^decode" "$OUT/ncu.csv" "$OUT/decode-profile.log"
  python3 - "$OUT/ncu.csv" <<'EOF'
import csv, sys, collections
rows = [r for r in csv.reader(open(sys.argv[1])) if len(r) > 10 and r[-3] == "gpu__time_duration.sum"]
total = collections.Counter(); count = collections.Counter()
for r in rows:
    name = r[4].split("(")[0]
    total[name] += float(r[-1].replace(",", "")); count[name] += 1
unit = rows[0][-2] if rows else "?"
for name, t in total.most_common(30):
    print(f"{t:12.1f} {unit} {count[name]:6d} x  {name}")
EOF
else
  echo "neither nsys nor ncu on this machine"; rc=1
fi
exit $rc
