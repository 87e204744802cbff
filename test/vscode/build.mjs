// Bundles the extension-host test suites (test/vscode/suite/**/*.ts) to out/test/vscode/suite/**/*.js.
// Separate from esbuild.mjs so the product bundles never depend on test code.
import * as esbuild from 'esbuild';
import { readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';

const suite = 'test/vscode/suite';
const outdir = 'out/test/vscode/suite';
rmSync(outdir, { recursive: true, force: true });
await esbuild.build({
  // Top-level files are the main scenario's suite; each subfolder holds another scenario's (see run-e2e.mjs).
  entryPoints: readdirSync(suite, { recursive: true, encoding: 'utf8' }).filter((f) => f.endsWith('.ts')).map((f) => join(suite, f)),
  outbase: suite,
  outdir,
  bundle: true,
  platform: 'node',
  target: 'node20',
  format: 'cjs',
  sourcemap: 'inline',
  // The host provides vscode; mocha is loaded from the checkout's node_modules at run time.
  external: ['vscode', 'mocha'],
  logLevel: 'warning',
});
