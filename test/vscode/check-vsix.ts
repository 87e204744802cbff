/**
 * Lists a linux-x64 .vsix as built (the archive itself, not vsce's plan of it) and checks it before
 * it is installed: the files an installed extension runs from are there, with the CUDA library and
 * only the linux-x64 onnxruntime binary, and no sources, tests, tools or source maps.
 * Usage: node --import tsx test/vscode/check-vsix.ts FILE.vsix
 */
import { zipEntries } from '../../tools/vsix/zip-entries';

const file = process.argv[2];
if (!file) {
  console.error('usage: check-vsix.ts FILE.vsix');
  process.exit(2);
}
const entries = zipEntries(file);
const names = new Set(entries.map((e) => e.name));
for (const e of entries) console.log(`  ${String(e.size).padStart(10)}  ${e.name}`);

const required = [
  'extension/package.json', 'extension/LICENSE.txt', 'extension/readme.md',
  'extension/dist/extension.js', 'extension/dist/engine-host.js', 'extension/dist/webview/chat.js', 'extension/dist/webview/chat.css',
  'extension/assets/tiny-model/config.json', 'extension/assets/tiny-model/model.safetensors', 'extension/assets/tokenizer/tiktoken.model',
  'extension/native/build/klc_native.node',
  'extension/node_modules/onnxruntime-node/dist/index.js',
  'extension/node_modules/onnxruntime-node/bin/napi-v6/linux/x64/onnxruntime_binding.node',
  'extension/node_modules/onnxruntime-node/bin/napi-v6/linux/x64/libonnxruntime.so.1',
  'extension/node_modules/onnxruntime-common/dist/cjs/index.js',
];
const problems = required.filter((r) => !names.has(r)).map((r) => `missing ${r}`);
const forbidden: [RegExp, string][] = [
  [/^extension\/node_modules\/onnxruntime-node\/bin\/napi-v6\/(?!linux\/x64\/)/, "another platform's onnxruntime binary"],
  [/\.map$/, 'a source map'],
  [/\.d\.ts$/, 'a type declaration'],
  [/^extension\/(src|test|tools|webview|scripts|native\/src|native\/include)\//, 'a source, test or tool file'],
  [/^extension\/node_modules\/(?!onnxruntime-node\/|onnxruntime-common\/)/, 'a bundled dependency shipped again'],
];
for (const name of names) {
  for (const [pattern, what] of forbidden) if (pattern.test(name)) problems.push(`${name} is ${what}`);
}
const mb = (n: number) => `${(n / 1e6).toFixed(1)} MB`;
console.log(`check-vsix: ${file}: ${entries.length} files, ${mb(entries.reduce((s, e) => s + e.compressedSize, 0))} compressed`);
if (problems.length > 0) {
  console.error(`check-vsix: ${problems.length} problem(s):\n  ${problems.join('\n  ')}`);
  process.exit(1);
}
