#!/usr/bin/env bash
# Here (no GPU): fills the git-ignored .device/ and .ref/ folders that test/gpu/run-kda.sh needs.
set -euo pipefail
cd "$(dirname "$0")/../.."
mkdir -p .device/golden .device/node-include .ref
node_include=$(node -e "const p=require('path'),f=require('fs');for(const d of [process.env.KLC_NODE_INCLUDE,p.join(p.dirname(process.execPath),'..','include','node'),'/usr/include/node'])if(d&&f.existsSync(p.join(d,'node_api.h'))){console.log(d);break}")
cp "$node_include"/node_api.h "$node_include"/node_api_types.h "$node_include"/js_native_api.h "$node_include"/js_native_api_types.h .device/node-include/
[ -f .device/node.xz ] || xz -T2 -6 -c "$(command -v node)" > .device/node.xz
cp ../shared/golden/kda/kda_golden.safetensors ../shared/golden/kda/kda_golden_manifest.json .device/golden/
npx esbuild test/gpu/native-binding.test.ts --bundle --platform=node --format=cjs --target=node20 \
  --outfile=.device/native-binding.test.cjs --log-level=warning
node tools/build-native.mjs
[ -d .ref/fla-src/fla ] || echo "fetch github:fla-org/flash-linear-attention and extract its fla/ into .ref/fla-src/ for the fla columns"
