// Bundles every entry point of the project: the extension (runs in the extension host), the
// engine process (spawned by the extension and by the CLI), the `klc` CLI, and the chat webview.
// Usage: node esbuild.mjs [--production] [--watch]
import * as esbuild from 'esbuild';

const production = process.argv.includes('--production');
const watch = process.argv.includes('--watch');

const node = {
  bundle: true,
  platform: 'node',
  target: 'node20',
  format: 'cjs',
  sourcemap: true,
  minify: production,
  logLevel: 'info',
  // The extension API is provided by the host; native addons are loaded from disk at run time.
  external: ['vscode', '*.node', 'onnxruntime-node'],
};

const builds = [
  { ...node, entryPoints: { extension: 'src/extension.ts' }, outdir: 'dist' },
  { ...node, entryPoints: { 'engine-host': 'src/engine/host/main.ts' }, outdir: 'dist' },
  { ...node, entryPoints: { cli: 'src/cli.ts' }, outdir: 'dist' },
  {
    bundle: true,
    platform: 'browser',
    target: 'es2022',
    format: 'iife',
    sourcemap: true,
    minify: production,
    logLevel: 'info',
    entryPoints: { chat: 'webview/chat/main.ts' },
    outdir: 'dist/webview',
    loader: { '.css': 'css' },
  },
];

const present = (await Promise.all(builds.map(async (b) => {
  const entries = Object.values(b.entryPoints);
  const { existsSync } = await import('node:fs');
  return entries.every((e) => existsSync(e)) ? b : null;
}))).filter(Boolean);

if (watch) {
  const contexts = await Promise.all(present.map((b) => esbuild.context(b)));
  await Promise.all(contexts.map((c) => c.watch()));
} else {
  await Promise.all(present.map((b) => esbuild.build(b)));
}
