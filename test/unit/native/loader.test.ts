// The CUDA loader on machines without a GPU (CI): it must report a reason a user can act on and
// never throw. The GPU side of the library is tested on the device (test/gpu).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadCudaBackend, nativeLibraryPath, NATIVE_ABI_VERSION } from '../../../src/engine/backends/cuda/loader';

test('a missing library says how to build it', () => {
  const path = join(tmpdir(), 'klc-no-such-dir', 'klc_native.node');
  const r = loadCudaBackend(path);
  assert.equal(r.ok, false);
  if (r.ok) return;
  assert.equal(r.code, 'NOT_BUILT');
  assert.match(r.reason, /npm run build:native/);
  assert.ok(r.reason.includes(path));
});

test('a file that is not a shared library is reported, not thrown', () => {
  const dir = mkdtempSync(join(tmpdir(), 'klc-loader-'));
  try {
    const path = join(dir, 'klc_native.node');
    writeFileSync(path, 'not an ELF file');
    const r = loadCudaBackend(path);
    assert.equal(r.ok, false);
    if (r.ok) return;
    assert.equal(r.code, 'LOAD_FAILED');
    assert.ok(r.reason.includes(path));
    assert.match(r.reason, /build:native/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('the built library loads and names why there is no GPU here (or lists the GPU)', (t) => {
  const path = nativeLibraryPath();
  if (!existsSync(path)) {
    t.skip(`native library not built at ${path} (npm run build:native needs nvcc); loader-only checks ran`);
    return;
  }
  const r = loadCudaBackend(path);
  if (r.ok) {
    assert.ok(r.devices.length > 0);
    assert.equal(r.native.abiVersion(), NATIVE_ABI_VERSION);
    assert.ok(r.devices[0].major >= 8, `device ${r.devices[0].name} is older than sm_80`);
    return;
  }
  assert.ok(['NO_DRIVER', 'NO_DEVICE'].includes(r.code), `unexpected code ${r.code}: ${r.reason}`);
  assert.match(r.reason, /onnx backend/);
});

test('context creation without a device throws a coded error instead of crashing', (t) => {
  const path = nativeLibraryPath();
  if (!existsSync(path)) {
    t.skip(`native library not built at ${path}`);
    return;
  }
  const mod = { exports: {} as Record<string, unknown> };
  process.dlopen(mod, path);
  const native = mod.exports as unknown as { deviceCount(): { count: number }; create(d: number): unknown; buildArchs(): string };
  assert.match(native.buildArchs(), /sm_80.*sm_90.*compute_90/);
  if (native.deviceCount().count > 0) {
    t.skip('a CUDA device is present; covered by test/gpu');
    return;
  }
  assert.throws(() => native.create(0), (e: Error & { code?: string }) => {
    assert.ok(e.code === 'NO_DRIVER' || e.code === 'NO_DEVICE', `code ${e.code}`);
    assert.ok(e.message.length > 20);
    return true;
  });
});
