/**
 * The quantization of the loaded weights is part of every state key: a repository ingested with
 * int4 weights is never resumed on the bf16 weights of the same folder (or the other way round),
 * while the same quantization resumes as before. Also the words each source's quantization is
 * keyed by, and the kimiLinear.quantization setting's way to the engine.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { bundledModelDir } from '../../../../src/common/package-root';
import { isUserError } from '../../../../src/common/errors';
import { openParamsFrom } from '../../../../src/client/settings';
import { requestParamsError } from '../../../../src/engine/host/request-params';
import { stateModelId } from '../../../../src/engine/model-id';
import { Checkpoint } from '../../../../src/engine/model/checkpoint';
import { loadConfig } from '../../../../src/engine/model/config';
import { quantizeAtLoad, weightQuantization } from '../../../../src/engine/model/quant/at-load';
import { loadModel } from '../../../../src/engine/model/model';
import { EngineSession } from '../../../../src/engine/session';
import { configGroup, quantizationConfig, writeQuantizedGolden } from './ct-writer';

function workspace(): string {
  const root = mkdtempSync(join(tmpdir(), 'klc-qkey-ws-'));
  mkdirSync(join(root, 'src'));
  writeFileSync(join(root, 'src', 'a.ts'), 'export const answer = 42;\n');
  writeFileSync(join(root, 'README.md'), '# a\nOne constant.\n');
  return root;
}

test('stateModelId keeps the identity for unquantized weights and gives each quantization its own', () => {
  const id = 'a'.repeat(32);
  assert.equal(stateModelId(id, 'none'), id);
  const int4 = stateModelId(id, 'at load: int4 (w4a16-g128)');
  const int8 = stateModelId(id, 'at load: int8 (w8a16)');
  assert.match(int4, /^[0-9a-f]{32}$/);
  assert.notEqual(int4, id);
  assert.notEqual(int4, int8);
  assert.equal(stateModelId(id, 'at load: int4 (w4a16-g128)'), int4, 'deterministic');
  assert.notEqual(stateModelId('b'.repeat(32), 'at load: int4 (w4a16-g128)'), int4, 'another model, another key');
});

test('weightQuantization names the scheme applied at load or stored in the checkpoint', async () => {
  const dir = bundledModelDir();
  const config = await loadConfig(dir);
  const plain = await Checkpoint.open(dir, config);
  assert.equal(weightQuantization(plain), 'none');
  const int4 = await quantizeAtLoad(plain, config, 'int4');
  assert.equal(weightQuantization(int4), 'at load: int4 (w4a16-g128)');
  await int4.close();

  const written = await writeQuantizedGolden(
    (m) => (m === 'lm_head' ? null : { kind: 'int', bits: 4, symmetric: true, group: 32 }),
    quantizationConfig({ group_0: configGroup(['Linear'], { num_bits: 4, type: 'int', symmetric: true, strategy: 'group', group_size: 32 }, 'pack-quantized') }, 'pack-quantized', ['lm_head']),
  );
  try {
    const stored = await Checkpoint.open(written.quantized, await loadConfig(written.quantized));
    assert.equal(weightQuantization(stored), 'stored: INT4 symmetric, group 32, pack-quantized');
    await stored.close();
  } finally {
    rmSync(written.quantized, { recursive: true, force: true });
    rmSync(written.dequantized, { recursive: true, force: true });
  }
});

test('a model loaded with quantization reports it; auto on the reference backend loads the weights as stored', async () => {
  const dir = bundledModelDir();
  assert.equal((await loadModel(dir, { backend: 'reference', quantization: 'int8' })).weights, 'at load: int8 (w8a16)');
  assert.equal((await loadModel(dir, { backend: 'reference', quantization: 'auto' })).weights, 'none');
  assert.equal((await loadModel(dir, { backend: 'reference' })).weights, 'none');
});

test('states ingested with int4 weights are not resumed with bf16 ones, and the same quantization resumes', async () => {
  const root = workspace();
  const cacheDir = mkdtempSync(join(tmpdir(), 'klc-qkey-cache-'));
  const open = (quantization?: 'int4' | 'none') =>
    EngineSession.open({ backend: 'reference', cacheDir, workspace: { roots: [root] }, memory: quantization ? { quantization } : undefined });
  try {
    const int4 = await open('int4');
    const first = await int4.ingest(undefined);
    assert.equal(first.upToDate, false);
    await int4.dispose();

    const plain = await open('none');
    assert.notEqual(plain.modelId, int4.modelId);
    const second = await plain.ingest(undefined);
    assert.equal(second.upToDate, false, 'the int4 state is not the bf16 model\'s');
    assert.equal(second.resumedTokens, 0);
    await plain.dispose();

    const again = await open('int4');
    assert.equal(again.modelId, int4.modelId);
    const third = await again.ingest(undefined);
    assert.equal(third.upToDate, true, 'the same quantization finds its saved state');
    await again.dispose();
  } finally {
    rmSync(root, { recursive: true, force: true });
    rmSync(cacheDir, { recursive: true, force: true });
  }
});

test('kimiLinear.quantization reaches engine/open, and a wrong value is a user error', () => {
  const reader = (values: Record<string, unknown>) => ({ get: <T>(key: string) => values[key] as T | undefined });
  assert.deepEqual(openParamsFrom(reader({ quantization: 'int4' }), '/c').memory, { quantization: 'int4' });
  assert.deepEqual(openParamsFrom(reader({ quantization: 'auto', gpuMemoryLimit: '24GB' }), '/c').memory, { gpuMemory: 24_000_000_000, quantization: 'auto' });
  assert.throws(() => openParamsFrom(reader({ quantization: 'int3' }), '/c'), (e) => isUserError(e) && /kimiLinear\.quantization is "int3"; use one of auto, none, fp8, int8, int4/.test(e.message));
  assert.equal(requestParamsError('engine/open', { backend: 'reference', cacheDir: '/c', memory: { quantization: 'int4' } }), undefined);
  assert.match(requestParamsError('engine/open', { backend: 'reference', cacheDir: '/c', memory: { quantization: 'int3' } }) ?? '', /params\.memory\.quantization must be one of/);
});
