/**
 * The CUDA loader's advice inside an installed package, where there are no sources to build from:
 * the loader bundled into a package folder without native/src (as every .vsix is) says the package
 * has no CUDA library and the onnx backend runs, instead of "npm run build:native".
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { test } from 'node:test';
import { build } from 'esbuild';

const root = resolve(__dirname, '..', '..', '..');

test('an installed package without the CUDA library says so and names the onnx backend', async () => {
  const pkg = mkdtempSync(join(tmpdir(), 'klc-installed-'));
  try {
    writeFileSync(join(pkg, 'package.json'), JSON.stringify({ name: 'kimi-linear-code' }));
    writeFileSync(join(pkg, 'entry.ts'), `import { loadCudaBackend } from ${JSON.stringify(join(root, 'src/engine/backends/cuda/loader'))};\nconsole.log(JSON.stringify(loadCudaBackend()));\n`);
    await build({ entryPoints: [join(pkg, 'entry.ts')], outfile: join(pkg, 'dist', 'probe.js'), bundle: true, platform: 'node', format: 'cjs', logLevel: 'warning' });
    const env = { ...process.env };
    delete env.KLC_NATIVE_PATH;
    const r = JSON.parse(execFileSync(process.execPath, [join(pkg, 'dist', 'probe.js')], { encoding: 'utf8', env })) as { ok: boolean; code: string; reason: string; path: string };
    assert.equal(r.ok, false);
    assert.equal(r.code, 'NOT_BUILT');
    assert.equal(r.path, join(pkg, 'native', 'build', 'klc_native.node'));
    assert.match(r.reason, new RegExp(`this installed package \\(${process.platform}-${process.arch}\\) has no CUDA library; the CUDA backend ships in the linux-x64 package only\\. The onnx backend runs here\\.`));
    assert.doesNotMatch(r.reason, /build:native/);
  } finally {
    rmSync(pkg, { recursive: true, force: true });
  }
});
