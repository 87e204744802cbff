#!/usr/bin/env bash
# Device run of expert offload (issue 11 item 4), about 5 minutes: the golden tiny model at INT4,
# INT8 and FP8 with every MoE layer's routed experts in pinned host memory (a --gpu-memory cap) against the
# same model with every expert on the GPU and against the reference backend
# (test/gpu/offload-model.test.ts), the CPU experts' speed at the 48B model's shapes on this
# machine's CPU (cpu-experts-driver bench: ms per offloaded layer and GB/s of expert weights read),
# then (SPEED=0 skips it) prefill and TPOT of the 48B model (dummy weights, INT4 at load, 128k
# context, 8 forks) with every expert on the GPU and under --gpu-memory 24GB (test/gpu/offload-speed.ts).
# Carry: .device (node.xz, offload-model.test.cjs, offload-speed.cjs, cpu-experts-driver; the goldens
# are the tracked test/fixtures/golden), native/build. Prepare here with test/gpu/prepare-model.sh. Logs go to $OUT.
set -uo pipefail
source "$(dirname "$0")/device-env.sh"
echo "CPU: $(nproc) threads, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2)" | tee -a "$OUT/gpu.txt"
rc=0
# The reference-equality checks need exact fp32 activations.
export KLC_CUDA_EXACT=1 KLC_GOLDEN_DIR=$PWD/test/fixtures/golden
node --test --test-reporter=spec .device/offload-model.test.cjs > "$OUT/offload-model.log" 2>&1 || rc=1
grep -E "figure:|✔|✖|skipped|Error|error" "$OUT/offload-model.log" | head -40
# 48B shapes: d 2304, I 1024, 256 experts, top-8; decode (1 token) and 4/16/32 tokens, INT4 g32 and g128, INT8 g128.
chmod +x .device/cpu-experts-driver
: > "$OUT/cpu-experts-bench.jsonl"
for shape in "1 4 32" "1 4 128" "1 8 128" "4 4 32" "16 4 32" "32 4 32"; do
  set -- $shape
  .device/cpu-experts-driver bench "$1" 2304 1024 256 8 "$2" "$3" 0 50 >> "$OUT/cpu-experts-bench.jsonl" || rc=1
done
cat "$OUT/cpu-experts-bench.jsonl"
if [ "${SPEED:-1}" != 0 ]; then
  # Tensor-core mode as users run it: cuBLAS from torch's CUDA wheels (as run-speed.sh).
  KLC_CUBLAS=$(python3 -c "import glob,os,torch; c=sorted(glob.glob(os.path.join(os.path.dirname(os.path.dirname(torch.__file__)),'nvidia','**','libcublas.so.1*'),recursive=True)); print(c[0] if c else '')")
  export KLC_CUBLAS LD_LIBRARY_PATH=$(dirname "${KLC_CUBLAS:-/x}"):${LD_LIBRARY_PATH:-}
  env -u KLC_CUDA_EXACT timeout 420 node .device/offload-speed.cjs 24 > "$OUT/offload-speed.log" 2>&1 || rc=1
  grep -E "figure:|loaded|Error|error" "$OUT/offload-speed.log" | head -20
fi
exit $rc
