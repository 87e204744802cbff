#!/usr/bin/env bash
# Here (no GPU): fills the git-ignored .device/ folder that test/gpu/run-model.sh (and run-speed.sh,
# run-all.sh, run-hf-bf16.sh, run-quant.sh, run-offload.sh) need and builds the library for sm_90 (the lent H100/H200) to carry.
set -euo pipefail
cd "$(dirname "$0")/../.."
mkdir -p .device/node-include
node_include=$(node -e "const p=require('path'),f=require('fs');for(const d of [process.env.KLC_NODE_INCLUDE,p.join(p.dirname(process.execPath),'..','include','node'),'/usr/include/node'])if(d&&f.existsSync(p.join(d,'node_api.h'))){console.log(d);break}")
cp "$node_include"/node_api.h "$node_include"/node_api_types.h "$node_include"/js_native_api.h "$node_include"/js_native_api_types.h .device/node-include/
[ -f .device/node.xz ] || xz -T2 -6 -c "$(command -v node)" > .device/node.xz

npx esbuild test/gpu/model.test.ts --bundle --platform=node --format=cjs --target=node20 --external:'*.node' --external:onnxruntime-node \
  --outfile=.device/model.test.cjs --log-level=warning
npx esbuild test/gpu/bf16-cache.test.ts --bundle --platform=node --format=cjs --target=node20 --external:'*.node' --external:onnxruntime-node \
  --outfile=.device/bf16-cache.test.cjs --log-level=warning
npx esbuild test/gpu/quant-model.test.ts --bundle --platform=node --format=cjs --target=node20 --external:'*.node' --external:onnxruntime-node \
  --outfile=.device/quant-model.test.cjs --log-level=warning
npx esbuild test/gpu/offload-model.test.ts --bundle --platform=node --format=cjs --target=node20 --external:'*.node' --external:onnxruntime-node \
  --outfile=.device/offload-model.test.cjs --log-level=warning
npx esbuild test/gpu/offload-speed.ts --bundle --platform=node --format=cjs --target=node20 --external:'*.node' --external:onnxruntime-node \
  --outfile=.device/offload-speed.cjs --log-level=warning
# The offloaded experts' CPU kernels as a plain executable (test/gpu/run-offload.sh times them on the device's CPU).
g++ -O3 -std=c++17 -pthread -static-libstdc++ -static-libgcc -Inative/include native/src/cpu_experts.cpp test/unit/native/cpu-experts-driver.cpp -o .device/cpu-experts-driver
npx esbuild test/gpu/plan-parity.test.ts --bundle --platform=node --format=cjs --target=node20 --external:'*.node' --external:onnxruntime-node \
  --outfile=.device/plan-parity.test.cjs --log-level=warning
npx esbuild test/gpu/hf-bf16.test.ts --bundle --platform=node --format=cjs --target=node20 --external:'*.node' --external:onnxruntime-node \
  --outfile=.device/hf-bf16.test.cjs --log-level=warning
npx esbuild src/cli.ts --bundle --platform=node --format=cjs --target=node20 --external:'*.node' --external:onnxruntime-node \
  --outfile=.device/klc.cjs --log-level=warning
npx esbuild test/gpu/decode-profile.ts --bundle --platform=node --format=cjs --target=node20 --external:'*.node' --external:onnxruntime-node \
  --outfile=.device/decode-profile.cjs --log-level=warning
npx esbuild test/gpu/caps-table.ts --bundle --platform=node --format=cjs --target=node20 --external:'*.node' --external:onnxruntime-node \
  --outfile=.device/caps-table.cjs --log-level=warning
npx esbuild test/gpu/speed-table.ts --bundle --platform=node --format=cjs --target=node20 --external:'*.node' --external:onnxruntime-node \
  --outfile=.device/speed-table.cjs --log-level=warning
npx esbuild test/gpu/side-by-side.ts --bundle --platform=node --format=cjs --target=node20 \
  --outfile=.device/side-by-side.cjs --log-level=warning
# transformers' side of run-side-by-side.sh: the shared anchor script and the config module it imports.
mkdir -p .device/hf-anchor && cp ../shared/tools/hf_scale_anchor.py ../shared/tools/kimi_config.py .device/hf-anchor/
node tools/build-native.mjs --archs 90
