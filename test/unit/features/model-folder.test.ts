/**
 * "Select Model Folder…" before anything loads: the folder check (config, every shard the index
 * lists, tokenizer files, weight format, GGUF downloads), the fit against a GPU, and what the user
 * is told, including the onnx backend when no GPU can run the model. The last test runs the real
 * engine bundle's --inspect-model on the bundled checkpoint.
 */
import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { cpSync, mkdtempSync, readFileSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { checkModelFolder, type FolderCheck, weightFormat } from '../../../src/engine/model/folder-check';
import { parseConfig } from '../../../src/engine/model/config';
import { fitOnGpu, type GpuReport, type ModelInspection } from '../../../src/engine/host/inspect-model';
import { folderVerdict, setupSummary } from '../../../src/features/status/model-folder-text';
import { inspectModelFolder } from '../../../src/client/inspect-model';
import { buildEngineHost } from '../client/engine-fixture';

const root = resolve(__dirname, '..', '..', '..');
const tiny = join(root, 'assets', 'tiny-model');
const made: string[] = [];
after(() => made.forEach((d) => rmSync(d, { recursive: true, force: true })));

/** A copy of the bundled checkpoint to break. */
function copyOfTiny(): string {
  const dir = mkdtempSync(join(tmpdir(), 'klc-folder-'));
  made.push(dir);
  cpSync(tiny, dir, { recursive: true });
  return dir;
}

const H100: GpuReport = { devices: [{ name: 'NVIDIA H100 80GB HBM3', totalBytes: 85e9, freeBytes: 84e9, computeCapability: '9.0' }] };
const NO_GPU: GpuReport = { devices: [], unavailable: 'CUDA backend not available: looking for CUDA devices failed: the NVIDIA driver is missing.' };

test('the bundled checkpoint passes: one shard, its size, bf16', async () => {
  const check = await checkModelFolder(tiny);
  assert.deepEqual(check.problems, []);
  assert.equal(check.shards, 1);
  assert.equal(check.weightBytes, 4287848);
  assert.deepEqual(check.format, { label: 'bf16', known: true });
  assert.equal(check.config?.numLayers, 4);
});

test('every shard the index lists must be present; the missing ones are named and counted', async () => {
  const dir = copyOfTiny();
  const map: Record<string, string> = {};
  for (let i = 0; i < 8; i++) map[`t${i}`] = `model-0000${i + 1}-of-00008.safetensors`;
  writeFileSync(join(dir, 'model.safetensors.index.json'), JSON.stringify({ weight_map: map }));
  writeFileSync(join(dir, 'model-00001-of-00008.safetensors'), 'x'.repeat(10));
  writeFileSync(join(dir, 'model-00002-of-00008.safetensors'), 'x'.repeat(5));
  const check = await checkModelFolder(dir);
  assert.equal(check.shards, 2);
  assert.equal(check.weightBytes, 15);
  assert.equal(check.problems.length, 1);
  assert.match(check.problems[0], /6 of the 8 weight shards .* missing: model-00003-of-00008\.safetensors, .*model-00007-of-00008\.safetensors and 1 more\. The download is incomplete/);
});

test('missing tokenizer files, config and weights are each reported', async () => {
  const dir = copyOfTiny();
  unlinkSync(join(dir, 'tokenizer_config.json'));
  assert.match((await checkModelFolder(dir)).problems.join('\n'), /tiktoken\.model but no tokenizer_config\.json/);
  unlinkSync(join(dir, 'tiktoken.model'));
  unlinkSync(join(dir, 'config.json'));
  unlinkSync(join(dir, 'model.safetensors'));
  writeFileSync(join(dir, 'Kimi-Linear-Q4_K_M.gguf'), '');
  const problems = (await checkModelFolder(dir)).problems.join('\n');
  assert.match(problems, /has no config\.json/);
  assert.match(problems, /GGUF files \(Kimi-Linear-Q4_K_M\.gguf\).*safetensors checkpoint instead/);
  assert.match(problems, /has no tokenizer: expected tiktoken\.model and tokenizer_config\.json/);
});

test('a config of another model is refused with the field that says so', async () => {
  const dir = copyOfTiny();
  writeFileSync(join(dir, 'config.json'), JSON.stringify({ model_type: 'llama' }));
  assert.match((await checkModelFolder(dir)).problems.join('\n'), /model_type.*kimi_linear/);
});

test('weight formats: compressed-tensors INT4 and FP8 are known; GPTQ and other compressed formats are named as unknown', async () => {
  const ct = (format: string, weights: object) => ({
    quantization_config: { quant_method: 'compressed-tensors', format, config_groups: { group_0: { targets: ['Linear'], weights } } },
  });
  assert.deepEqual(weightFormat(ct('pack-quantized', { num_bits: 4, type: 'int', group_size: 32, symmetric: true })), { label: 'INT4', known: true });
  assert.deepEqual(weightFormat(ct('float-quantized', { num_bits: 8, type: 'float', strategy: 'channel' })), { label: 'FP8', known: true });
  assert.deepEqual(weightFormat(ct('marlin-24', { num_bits: 4, type: 'int' })), { label: 'compressed-tensors marlin-24', known: false });
  assert.deepEqual(weightFormat({ quantization_config: { quant_method: 'gptq', bits: 4 } }), { label: 'gptq', known: false });
  assert.deepEqual(weightFormat({ torch_dtype: 'float32' }), { label: 'fp32', known: true });
  assert.deepEqual(weightFormat({ torch_dtype: 'float16' }), { label: 'float16', known: false });

  const dir = copyOfTiny();
  const config = JSON.parse(readFileSync(join(tiny, 'config.json'), 'utf8')) as object;
  writeFileSync(join(dir, 'config.json'), JSON.stringify({ ...config, quantization_config: { quant_method: 'awq', bits: 4 } }));
  assert.match((await checkModelFolder(dir)).problems.join('\n'), /declares weights as "awq", which Kimi Linear does not read/);
});

const kimi48b = JSON.parse(readFileSync(join(root, 'assets', 'configs', 'kimi-linear-48b-a3b-instruct.json'), 'utf8')) as Record<string, unknown>;
const fp8 = { quant_method: 'compressed-tensors', format: 'float-quantized', config_groups: { group_0: { targets: ['Linear'], weights: { num_bits: 8, type: 'float', strategy: 'channel' } } } };

/** A folder check of the published 48B config, as the bf16 or FP8 download. */
function check48b(format: 'bf16' | 'FP8'): FolderCheck {
  const json = format === 'FP8' ? { ...kimi48b, quantization_config: fp8 } : kimi48b;
  return { dir: '/models/kimi-48b', problems: [], shards: 20, weightBytes: format === 'FP8' ? 49.5e9 : 98.3e9, config: parseConfig(json), format: weightFormat(json) };
}

test('the memory plan for the folder on the first GPU: the 48B model in bf16 does not fit an 80 GB card, in FP8 it does, and the limit setting caps it', () => {
  const bf16 = fitOnGpu(check48b('bf16'), H100, { contextTokens: 131072 });
  assert.equal(bf16.fits, false);
  assert.equal(bf16.lines[0], 'NVIDIA H100 80GB HBM3: 84.00 GB free of 85.00 GB');
  // The published bf16 checkpoint is about 98 GB.
  assert.match(bf16.lines[1], /^for 131,072 tokens and 8 forks at bf16: weights (9[6-9]|10[0-1])\.\d\d GB \+ MLA cache .* = \d+\.\d\d GB$/);
  assert.match(bf16.advice ?? '', /^does not fit: .*a bigger GPU: at least/);

  const fp8Fit = fitOnGpu(check48b('FP8'), H100, { contextTokens: 131072 });
  assert.equal(fp8Fit.fits, true, fp8Fit.lines.join('\n'));
  // The published FP8 checkpoint is about 49–50 GB.
  assert.match(fp8Fit.lines[1], /at fp8: weights (4[89]|5[01])\.\d\d GB/);

  const capped = fitOnGpu(check48b('FP8'), H100, { contextTokens: 131072, gpuMemory: 24e9 });
  assert.equal(capped.fits, false);
  assert.equal(capped.lines[0], 'NVIDIA H100 80GB HBM3: 84.00 GB free of 85.00 GB, limited to 24.00 GB');
  // Past the config's 1M tokens the plan stays at the config's maximum.
  assert.match(fitOnGpu(check48b('FP8'), H100, { contextTokens: 4_000_000 }).lines[1], /^for 1,048,576 tokens/);
  assert.deepEqual(fitOnGpu(check48b('bf16'), NO_GPU), { lines: [] });
});

test('what the user is told: problems refuse the folder; no GPU names the onnx backend and moves a cuda setting to it', () => {
  const inspection = (check: FolderCheck, gpu: GpuReport): ModelInspection => ({ check, gpu, fit: fitOnGpu(check, gpu, { contextTokens: 131072 }) });

  const refused = folderVerdict(inspection({ ...check48b('FP8'), problems: ['a', 'b'] }, H100), 'auto');
  assert.deepEqual(refused, { use: false, severity: 'error', message: 'Kimi Linear cannot use /models/kimi-48b: a; b.' });

  const cpu = folderVerdict(inspection(check48b('FP8'), NO_GPU), 'cuda');
  assert.equal(cpu.use, true);
  assert.equal(cpu.severity, 'warning');
  assert.equal(cpu.backend, 'onnx');
  assert.match(cpu.message, /\(FP8, 49\.5 GB\).*No NVIDIA GPU can run it here \(looking for CUDA devices failed: the NVIDIA driver is missing\).*onnx backend.*now "onnx"/);
  assert.equal(folderVerdict(inspection(check48b('FP8'), NO_GPU), 'auto').backend, undefined);

  const fits = folderVerdict(inspection(check48b('FP8'), H100), 'auto');
  assert.deepEqual([fits.use, fits.severity], [true, 'info']);
  assert.match(fits.message, /NVIDIA H100 80GB HBM3: 84\.00 GB free of 85\.00 GB; for 131,072 tokens and 8 forks at fp8: .*: it fits\.$/);
  const tooBig = folderVerdict(inspection(check48b('bf16'), H100), 'auto');
  assert.equal(tooBig.severity, 'warning');
  assert.match(tooBig.message, /at bf16: weights .*\. It does not fit: needs /);

  assert.match(setupSummary(inspection(check48b('FP8'), NO_GPU)).message, /no NVIDIA GPU can run the CUDA backend here .* onnx backend runs on the CPU/);
  assert.match(setupSummary(inspection(check48b('FP8'), H100)).message, /CUDA backend runs on NVIDIA H100 80GB HBM3 \(84\.0 GB free of 85\.0 GB, compute 9\.0\)/);
});

test('the engine bundle\'s --inspect-model reports the folder check and the GPU (or why there is none) in its own process', async () => {
  const engine = await buildEngineHost();
  const good = await inspectModelFolder(engine, tiny);
  assert.deepEqual(good.check.problems, []);
  assert.equal(good.check.weightBytes, 4287848);
  // Either this machine has a usable GPU, or the report says why not; never both, never neither.
  assert.equal(good.gpu.devices.length > 0, good.gpu.unavailable === undefined, JSON.stringify(good.gpu));
  const empty = mkdtempSync(join(tmpdir(), 'klc-empty-'));
  made.push(empty);
  const bad = await inspectModelFolder(engine, empty);
  assert.equal(bad.check.problems.length, 3, bad.check.problems.join('\n'));
});
