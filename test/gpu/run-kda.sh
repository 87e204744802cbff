#!/usr/bin/env bash
# Device run of the KDA milestone: build the native library there, the kernel checks against the
# float64 reference and the goldens, the Node binding test, then the speed table beside fla.
# Carry: .device (node.xz, node-include/, golden/, native-binding.test.cjs), .ref (fla source), native/build.
# Logs go to $OUT. Prepare here with test/gpu/prepare-device.sh.
# Kernel-only runs: KLC_DEVICE_BUILD=0 uses the carried native/build as it is (built here for sm_90)
# and KLC_GOLDEN=test/fixtures/golden/kda reads the tracked goldens, so only .ref and the two
# library files need carrying; without .device/node.xz the build and the Node binding test are
# skipped with a line saying so.
set -uo pipefail
OUT=${OUT:-/tmp/klc-out}
mkdir -p "$OUT"
have_node=0
if [ -f .device/node.xz ]; then
  xz -dc .device/node.xz > /tmp/node && chmod +x /tmp/node && export PATH=/tmp:$PATH && have_node=1
else
  echo "no .device/node.xz carried: device build and Node binding test skipped"
fi
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader | tee "$OUT/gpu.txt"
rc=0
if [ "${KLC_DEVICE_BUILD:-1}" != 0 ] && [ $have_node = 1 ]; then
  ( time KLC_NODE_INCLUDE=$PWD/.device/node-include node tools/build-native.mjs --archs "${KLC_DEVICE_ARCHS:-90}" --jobs 16 ) > "$OUT/build.log" 2>&1 || { echo "device build FAILED (carried build used)"; rc=1; }
  tail -n 4 "$OUT/build.log"
fi
export PYTHONUNBUFFERED=1 KLC_GOLDEN=${KLC_GOLDEN:-.device/golden}
python3 test/gpu/kda_check.py 2>&1 | tee "$OUT/check.log" || rc=1
if [ $have_node = 1 ]; then
  node --test --test-reporter=spec .device/native-binding.test.cjs 2>&1 | tee "$OUT/binding.log" | grep -E "binding:|✔|✖|skipped|fail " || rc=1
fi
FLA_SRC=$PWD/.ref/fla-src timeout "${KLC_BENCH_TIMEOUT:-330}" python3 test/gpu/kda_bench.py > "$OUT/bench.log" 2>&1 || { echo "bench exited non-zero"; rc=1; }
sed -n '/^NVIDIA\|^$/,$p' "$OUT/bench.log" | tail -n 20
grep -E "Error|error" "$OUT/bench.log" | head -5
exit $rc
