#!/usr/bin/env bash
# Here (no GPU): builds the linux-x64 package (the CUDA library for sm_80/86/89/90 + PTX and sm_90a, built
# with this machine's nvcc) and fills the git-ignored .device/ folder that test/gpu/run-package.sh
# needs: the .vsix, Node, and the CLI bundle. Carry: .device.
set -euo pipefail
cd "$(dirname "$0")/../.."
mkdir -p .device
npm run package -- --target linux-x64
cp out/vsix/kimi-linear-code-linux-x64-*.vsix .device/kimi-linear-code-linux-x64.vsix
[ -f .device/node.xz ] || xz -T2 -6 -c "$(command -v node)" > .device/node.xz
npx esbuild src/cli.ts --bundle --platform=node --format=cjs --target=node20 --external:'*.node' --external:onnxruntime-node \
  --outfile=.device/klc.cjs --log-level=warning
du -sh .device/kimi-linear-code-linux-x64.vsix .device/node.xz .device/klc.cjs
