#!/usr/bin/env bash
# Device run of the KDA milestone: build the native library there, the kernel checks against the
# float64 reference and the goldens, the Node binding test, then the speed table beside fla.
# Carry: .device (node.xz, node-include/, golden/, native-binding.test.cjs), .ref (fla source), native/build.
# Logs go to $OUT. Prepare here with test/gpu/prepare-device.sh.
set -uo pipefail
OUT=${OUT:-/tmp/klc-out}
mkdir -p "$OUT"
xz -dc .device/node.xz > /tmp/node && chmod +x /tmp/node && export PATH=/tmp:$PATH
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader | tee "$OUT/gpu.txt"
rc=0
( time KLC_NODE_INCLUDE=$PWD/.device/node-include node tools/build-native.mjs --archs "${KLC_DEVICE_ARCHS:-90}" --jobs 16 ) > "$OUT/build.log" 2>&1 || { echo "device build FAILED (carried build used)"; rc=1; }
tail -n 4 "$OUT/build.log"
export PYTHONUNBUFFERED=1 KLC_GOLDEN=${KLC_GOLDEN:-.device/golden}
python3 test/gpu/kda_check.py 2>&1 | tee "$OUT/check.log" || rc=1
node --test --test-reporter=spec .device/native-binding.test.cjs 2>&1 | tee "$OUT/binding.log" | grep -E "binding:|✔|✖|skipped|fail " || rc=1
FLA_SRC=$PWD/.ref/fla-src timeout "${KLC_BENCH_TIMEOUT:-330}" python3 test/gpu/kda_bench.py > "$OUT/bench.log" 2>&1 || { echo "bench exited non-zero"; rc=1; }
sed -n '/^NVIDIA\|^$/,$p' "$OUT/bench.log" | tail -n 16
grep -E "Error|error" "$OUT/bench.log" | head -5
exit $rc
