import assert from 'node:assert/strict';
import { test } from 'node:test';
import { openParamsFrom, packSettingsFrom, samplingFrom, type SettingsReader } from '../../../src/client/settings';
import { isUserError } from '../../../src/common/errors';

function reader(values: Record<string, unknown>): SettingsReader {
  return { get: <T>(key: string) => values[key] as T | undefined };
}

test('an empty model path selects the bundled checkpoint', () => {
  assert.deepEqual(openParamsFrom(reader({ modelPath: '  ', backend: 'onnx' }), '/c'), { modelDir: undefined, backend: 'onnx', cacheDir: '/c' });
  assert.equal(openParamsFrom(reader({ modelPath: '/models/kimi' }), '/c').modelDir, '/models/kimi');
  assert.equal(openParamsFrom(reader({}), '/c').backend, 'auto');
});

test('an unknown backend names the setting and the choices', () => {
  assert.throws(() => openParamsFrom(reader({ backend: 'tpu' }), '/c'), (e) => isUserError(e) && /kimiLinear\.backend is "tpu"; use one of auto, cuda, onnx, reference, remote/.test(e.message));
});

test('the remote backend takes its endpoint and model from settings and its key from the caller', () => {
  const remote = reader({ backend: 'remote', 'remote.endpoint': ' http://gpu:8000/v1 ', 'remote.model': 'kimi-linear' });
  assert.deepEqual(openParamsFrom(remote, '/c', 'sk-1'), {
    modelDir: undefined, backend: 'remote', cacheDir: '/c', remote: { url: 'http://gpu:8000/v1', model: 'kimi-linear', apiKey: 'sk-1' },
  });
  assert.deepEqual(openParamsFrom(remote, '/c').remote, { url: 'http://gpu:8000/v1', model: 'kimi-linear' });
  assert.equal(openParamsFrom(reader({ backend: 'onnx', 'remote.endpoint': 'http://x' }), '/c', 'sk-1').remote, undefined);
  assert.throws(() => openParamsFrom(reader({ backend: 'remote', 'remote.model': 'm' }), '/c'), (e) => isUserError(e) && /kimiLinear\.remote\.endpoint is empty/.test(e.message));
  assert.throws(() => openParamsFrom(reader({ backend: 'remote', 'remote.endpoint': 'http://x' }), '/c'), (e) => isUserError(e) && /kimiLinear\.remote\.model is empty/.test(e.message));
});

test('pack settings leave out unset and empty values so the engine defaults apply', () => {
  const s = packSettingsFrom(reader({ maxContextTokens: 5000, include: [' src/** ', ''], exclude: [] }), ['/a', '/b']);
  assert.deepEqual(s, { roots: ['/a', '/b'], maxTokens: 5000, include: ['src/**'] });
  assert.ok(!('exclude' in s) && !('maxFileBytes' in s));
});

test('sampling settings map one to one', () => {
  assert.deepEqual(samplingFrom(reader({ temperature: 0, topP: 0.9, maxNewTokens: 64 })), { temperature: 0, topP: 0.9, maxNewTokens: 64 });
  assert.deepEqual(samplingFrom(reader({})), {});
});

test('the context budget and GPU memory limit go to the engine for its memory plan', () => {
  assert.deepEqual(openParamsFrom(reader({ maxContextTokens: 131072, gpuMemoryLimit: ' 24GB ' }), '/c').memory, { contextTokens: 131072, gpuMemory: 24_000_000_000 });
  assert.deepEqual(openParamsFrom(reader({ gpuMemoryLimit: '24GiB' }), '/c').memory, { gpuMemory: 25_769_803_776 });
  assert.deepEqual(openParamsFrom(reader({ maxContextTokens: 4096, gpuMemoryLimit: '' }), '/c').memory, { contextTokens: 4096 });
  assert.throws(() => openParamsFrom(reader({ gpuMemoryLimit: 'a lot' }), '/c'), (e) => isUserError(e) && /kimiLinear\.gpuMemoryLimit is "a lot"; use a size such as 24GB/.test(e.message));
});
