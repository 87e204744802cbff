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
import { isUserError } from '../../../src/common/errors';
import { planLoad } from '../../../src/engine/backends/cuda/load-plan';
import { checkModelFolder, storedScheme, type FolderCheck, weightFormat } from '../../../src/engine/model/folder-check';
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
const H200: GpuReport = { devices: [{ name: 'NVIDIA H200', totalBytes: 143e9, freeBytes: 141e9, computeCapability: '9.0' }] };
const NO_GPU: GpuReport = { devices: [], unavailable: 'CUDA backend not available: looking for CUDA devices failed: the NVIDIA driver is missing.' };

test('the bundled checkpoint passes: one shard, its size, bf16', async () => {
  const check = await checkModelFolder(tiny);
  assert.deepEqual(check.problems, []);
  assert.equal(check.shards, 1);
  assert.equal(check.weightBytes, 4287848);
  assert.deepEqual(check.format, { label: 'bf16', quantized: false });
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

test('weight formats: compressed-tensors schemes the loader reads are named; one it refuses is a problem in the loader\'s words', async () => {
  const ct = (format: string, weights: object) => ({
    quantization_config: { quant_method: 'compressed-tensors', format, config_groups: { group_0: { targets: ['Linear'], weights } } },
  });
  assert.deepEqual(weightFormat(ct('pack-quantized', { num_bits: 4, type: 'int', group_size: 32, symmetric: true }), 'config.json'), { label: 'INT4', quantized: true });
  assert.deepEqual(weightFormat(ct('float-quantized', { num_bits: 8, type: 'float', strategy: 'channel' }), 'config.json'), { label: 'FP8', quantized: true });
  assert.deepEqual(weightFormat(ct('int-quantized', { num_bits: 8, type: 'int', strategy: 'channel' }), 'config.json'), { label: 'INT8', quantized: true });
  assert.deepEqual(weightFormat({ torch_dtype: 'float32' }, 'config.json'), { label: 'fp32', quantized: false });
  assert.deepEqual(weightFormat({ torch_dtype: 'float16' }, 'config.json'), { label: 'fp16', quantized: false });
  assert.deepEqual(weightFormat({}, 'config.json'), { label: 'bf16', quantized: false });
  assert.throws(() => weightFormat(ct('marlin-24', { num_bits: 4, type: 'int' }), 'config.json'), (e) => isUserError(e) && /format "marlin-24", which is not supported/.test(e.message));
  assert.throws(() => weightFormat(ct('float-quantized', { num_bits: 4, type: 'float' }), 'config.json'), (e) => isUserError(e) && /4-bit float weights \(FP4/.test(e.message));
  assert.throws(() => weightFormat({ quantization_config: { quant_method: 'gptq', bits: 5 } }, 'config.json'), (e) => isUserError(e) && /bits is 5; GPTQ checkpoints of 2, 3, 4 and 8 bits/.test(e.message));
  assert.deepEqual(weightFormat({ quantization_config: { quant_method: 'gptq', bits: 4, group_size: 128, dynamic: { '+:.*experts': { bits: 8 } } } }, 'config.json'), { label: 'INT4+INT8', quantized: true });
  assert.deepEqual(weightFormat({ quantization_config: { quant_method: 'awq', bits: 4, group_size: 32, version: 'gemm', zero_point: true } }, 'config.json'), { label: 'INT4', quantized: true });
  // An MLX export's quantization_config has no quant_method.
  assert.throws(() => weightFormat({ quantization_config: { group_size: 32, bits: 4, mode: 'mxfp4' } }, 'config.json'), (e) => isUserError(e) && /names no quant_method \(its bits\/group_size\/mode keys are those of an MLX export/.test(e.message));
  // Activation order: the CUDA backend runs such weights dequantized, so the plan counts them so.
  const actOrder = weightFormat({ quantization_config: { quant_method: 'gptq', bits: 4, group_size: 128, desc_act: true } }, 'config.json');
  assert.deepEqual([actOrder, storedScheme(actOrder)], [{ label: 'INT4', quantized: true, activationOrder: true }, 'none']);
  const staticGroups = weightFormat({ quantization_config: { quant_method: 'gptq', bits: 4, group_size: 128, desc_act: true, meta: { static_groups: true } } }, 'config.json');
  assert.deepEqual([staticGroups, storedScheme(staticGroups)], [{ label: 'INT4', quantized: true }, 'int4']);
  assert.equal(weightFormat(ct('pack-quantized', { num_bits: 4, type: 'int', strategy: 'group', group_size: 128, actorder: 'group' }), 'config.json').activationOrder, true);
  assert.equal(weightFormat(ct('pack-quantized', { num_bits: 4, type: 'int', strategy: 'group', group_size: 128, actorder: 'weight' }), 'config.json').activationOrder, undefined);

  const dir = copyOfTiny();
  const config = JSON.parse(readFileSync(join(tiny, 'config.json'), 'utf8')) as object;
  writeFileSync(join(dir, 'config.json'), JSON.stringify({ ...config, quantization_config: { quant_method: 'awq', bits: 4, version: 'gemv' } }));
  assert.match((await checkModelFolder(dir)).problems.join('\n'), /config\.json: quantization_config\.version is "gemv"; AWQ checkpoints are read in AutoAWQ's GEMM layout only/);
  // An older GPTQ export keeps its settings in quantize_config.json.
  writeFileSync(join(dir, 'config.json'), JSON.stringify(config));
  writeFileSync(join(dir, 'quantize_config.json'), JSON.stringify({ bits: 4, group_size: 128, desc_act: false, sym: true }));
  const sidecar = await checkModelFolder(dir);
  assert.deepEqual([sidecar.problems, sidecar.format], [[], { label: 'INT4', quantized: true }]);
});

const kimi48b = JSON.parse(readFileSync(join(root, 'assets', 'configs', 'kimi-linear-48b-a3b-instruct.json'), 'utf8')) as Record<string, unknown>;
const int4 = { quant_method: 'compressed-tensors', format: 'pack-quantized', config_groups: { group_0: { targets: ['Linear'], weights: { num_bits: 4, type: 'int', strategy: 'group', group_size: 32, symmetric: true } } } };
const fp8 = { quant_method: 'compressed-tensors', format: 'float-quantized', config_groups: { group_0: { targets: ['Linear'], weights: { num_bits: 8, type: 'float', strategy: 'channel' } } } };

/** A folder check of the published 48B config, as the bf16, FP8 or INT4 download. */
function check48b(format: 'bf16' | 'FP8' | 'INT4'): FolderCheck {
  const quantization_config = { FP8: fp8, INT4: int4, bf16: undefined }[format];
  const json = quantization_config ? { ...kimi48b, quantization_config } : kimi48b;
  return { dir: '/models/kimi-48b', problems: [], shards: 20, weightBytes: { FP8: 49.5e9, INT4: 27e9, bf16: 98.3e9 }[format], config: parseConfig(json), format: weightFormat(json, 'config.json') };
}

test('the memory plan is the one the CUDA backend loads with: the 48B model\'s bf16 weights (98.28 GB) do not fit an 80 GB card; INT8 at load, the stored INT4 checkpoint and the stored FP8 one (1 byte per weight) fit; a 141 GB card holds it; the limit setting caps it', () => {
  // 98,278,444,544 bytes of bf16 weights: worked out by hand in test/unit/plan/memory-plan.test.ts.
  const bf16 = fitOnGpu(check48b('bf16'), H100, { contextTokens: 131072 });
  assert.equal(bf16.fits, false);
  assert.equal(bf16.lines[0], 'NVIDIA H100 80GB HBM3: 84.00 GB free of 85.00 GB');
  assert.match(bf16.lines[1], /^for 131072 tokens and 8 forks it needs weights 98\.28 GB \+ MLA cache .* = \d+\.\d\d GB$/);
  assert.match(bf16.advice ?? '', /^does not fit: .*--quantization fp8 needs 63\.05 GB.*a bigger GPU: at least .* In VS Code, --quantization is the kimiLinear\.quantization setting \(fp8, int8, int4\)/);
  const int8 = fitOnGpu(check48b('bf16'), H100, { contextTokens: 131072, quantization: 'int8' });
  assert.equal(int8.fits, true, int8.lines.join('\n'));
  const int4Stored = fitOnGpu(check48b('INT4'), H100, { contextTokens: 131072 });
  assert.equal(int4Stored.fits, true, int4Stored.lines.join('\n'));
  assert.equal(int4Stored.lines.length, 2);
  assert.throws(() => fitOnGpu(check48b('INT4'), H100, { contextTokens: 131072, quantization: 'int8' }), (e) => isUserError(e) && /already quantized/.test(e.message));

  // The stored FP8 checkpoint: 50,017,362,304 bytes of weights (memory-plan.test.ts), + 9.10 GB at 128k (with the
  // dequantization buffer) = 59.12 GB.
  const fp8OnH100 = fitOnGpu(check48b('FP8'), H100, { contextTokens: 131072 });
  assert.equal(fp8OnH100.fits, true, fp8OnH100.lines.join('\n'));
  assert.equal(fp8OnH100.lines.length, 2);
  assert.match(fp8OnH100.lines[1], /it needs weights 50\.02 GB \+ .* = 63\.05 GB$/);
  const mixed = fitOnGpu({ ...check48b('FP8'), format: { label: 'INT4+FP8', quantized: true } }, H100, { contextTokens: 131072 });
  assert.equal(mixed.lines[1], 'the CUDA backend loads these INT4+FP8 weights dequantized to bf16 (it runs INT4, INT8 and FP8 weights as stored)');

  const fp8OnH200 = fitOnGpu(check48b('FP8'), H200, { contextTokens: 131072 });
  assert.equal(fp8OnH200.fits, true, fp8OnH200.lines.join('\n'));
  assert.equal(fp8OnH200.advice, undefined);

  const capped = fitOnGpu(check48b('bf16'), H200, { contextTokens: 131072, gpuMemory: 24e9 });
  assert.equal(capped.fits, false);
  assert.equal(capped.lines[0], 'NVIDIA H200: 141.00 GB free of 143.00 GB, limited to 24.00 GB');
  assert.throws(() => fitOnGpu(check48b('bf16'), H100, { contextTokens: 4_000_000 }), (e) => isUserError(e) && /1 to 1048576 tokens/.test(e.message));
  assert.deepEqual(fitOnGpu(check48b('bf16'), NO_GPU), { lines: [] });
});

test('the folder check says "does not fit" exactly where the CUDA backend\'s load refuses, with the same figures', () => {
  const device = H100.devices[0];
  for (const [budget, fits] of [[{ contextTokens: 131072 }, false], [{ contextTokens: 131072, gpuMemory: 24e9 }, false]] as const) {
    const fit = fitOnGpu(check48b('bf16'), H100, budget);
    assert.equal(fit.fits, fits);
    assert.throws(
      () => planLoad(check48b('bf16').config!, { ...budget, log: () => {} }, { free: device.freeBytes, matrixBytes: 2, tensorCores: true, sampleScratch: 53_477_408, gpuName: device.name, dir: '/models/kimi-48b' }),
      (e) => isUserError(e) && e.message.includes(fit.lines[1].replace(/ = .*$/, '')),
    );
  }
  const onH200 = check48b('bf16');
  assert.equal(fitOnGpu(onH200, H200, { contextTokens: 131072 }).fits, true);
  assert.equal(planLoad(onH200.config!, { contextTokens: 131072 }, { free: 141e9, matrixBytes: 2, tensorCores: true, sampleScratch: 53_477_408, gpuName: 'NVIDIA H200', dir: '/models/kimi-48b' }).fits, true);
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

  const fits = folderVerdict(inspection(check48b('FP8'), H200), 'auto');
  assert.deepEqual([fits.use, fits.severity], [true, 'info']);
  assert.match(fits.message, /NVIDIA H200: 141\.00 GB free of 143\.00 GB; for 131072 tokens and 8 forks it needs weights 50\.02 GB .* = 63\.05 GB: it fits\.$/);
  const tooBig = folderVerdict(inspection(check48b('bf16'), H100), 'auto');
  assert.equal(tooBig.severity, 'warning');
  assert.match(tooBig.message, /it needs weights .*\. It does not fit: needs /);

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
