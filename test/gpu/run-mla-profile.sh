#!/usr/bin/env bash
# Device run (issue 12): Nsight Compute's view of one launch of each Hopper MLA prefill kernel at 32k causal
# (test/gpu/mla_profile.py): throughput against the SM and memory peaks, tensor-pipe activity, occupancy and
# what the warps wait on, so that the kernels' distance to cuDNN can be attributed before it is worked on.
# MLA_VARIANTS (default "wgmma wgmma_pipe wgmma_ws"). Carry: native/build. Full reports go to $OUT/ncu_<variant>.txt.
set -uo pipefail
OUT=${OUT:-/tmp/klc-out}
mkdir -p "$OUT"
command -v ncu > /dev/null || { echo "ncu is not on this machine"; exit 1; }
export PYTHONUNBUFFERED=1
rc=0
for v in ${MLA_VARIANTS:-wgmma wgmma_pipe wgmma_ws}; do
  # A call is 4 launches at 32k (8,192-key blocks): skip the warm-up call's, take the next call's first.
  ( cd test/gpu && timeout 150 ncu --kernel-name regex:mla_wgmma --launch-skip 4 --launch-count 1 \
      --section SpeedOfLight --section ComputeWorkloadAnalysis --section MemoryWorkloadAnalysis --section Occupancy \
      --section LaunchStats --section WarpStateStats --section SchedulerStats \
      --metrics "regex:smsp__average_warps_issue_stalled_.*_per_issue_active\.ratio" \
      python3 mla_profile.py "$v" ) > "$OUT/ncu_$v.txt" 2>&1 || { echo "ncu of $v FAILED"; rc=1; }
  echo "== $v"
  grep -E "Duration|Compute \(SM\) Throughput|Memory Throughput|L2 Cache Throughput|L1/TEX Cache Throughput|DRAM Throughput|Tensor|Registers Per|Achieved Occupancy|Issue Slots Busy|Warp Cycles Per Issued|No Eligible|stalled_(long_scoreboard|barrier|wait|math_pipe_throttle|short_scoreboard|mio_throttle|lg_throttle|membar|sleeping|dispatch_stall|not_selected|selected|no_instruction|branch_resolving|drain|tex_throttle|misc)_per" \
    "$OUT/ncu_$v.txt" | sed 's/  */ /g' | cut -c1-150
done
exit $rc
