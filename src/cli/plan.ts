/**
 * `klc plan`: the GPU memory plan for a model, a context budget and a number of concurrent question
 * forks, without a GPU — "will it fit my card?", and what to change when it does not.
 */
import { promises as fs } from 'node:fs';
import { basename, join, resolve } from 'node:path';
import { UserError } from '../common/errors';
import { loadConfig, loadConfigFile, type KimiConfig } from '../engine/model/config';
import { storedScheme, weightFormat, type WeightFormat } from '../engine/model/folder-check';
import { loadCheckpointQuantization } from '../engine/model/quant/checkpoint-quantization';
import { MAX_CONTEXT_TOKENS, MAX_FORKS, planMemory, type MemoryPlan, type QuantizationChoice } from '../engine/plan/memory-plan';
import { parseBytes, parseTokens } from '../common/sizes';
import { QUANTIZATIONS, type Quantization } from '../common/quantization';
import { intOption, parseCommandArgs } from './args';

const USAGE = `usage: klc plan (--model DIR | --model-config FILE) --context N --gpu-memory BYTES [options]

The GPU memory the model needs (weights, MLA cache, KDA state, question forks, prefill workspace)
and whether it fits; computed from config.json alone, no GPU needed.

  --model DIR           checkpoint folder (only its config.json is read; a quantization_config there
                        is planned as stored: INT4, INT8 or FP8)
  --model-config FILE   a config.json by itself, e.g. assets/configs/kimi-linear-48b-a3b-instruct.json
  --context N           context budget in tokens, up to 1M (1M = 1048576, 128k = 131072)
  --gpu-memory BYTES    GPU memory the plan may use: 24GB, 24GiB or bytes
  --quantization Q      auto | none | fp8 | int8 | int4 (default auto: the first that fits, in that
                        order, then int4 with routed experts in host memory)
  --forks K             questions answered at once, each on a fork of the state, 0-${MAX_FORKS} (default ${MAX_FORKS})
  --json                print one JSON object instead of the table
`;

const CHOICES: readonly QuantizationChoice[] = ['auto', ...QUANTIZATIONS];

export async function run(argv: string[]): Promise<void> {
  const { values } = parseCommandArgs(
    argv,
    {
      model: { type: 'string' },
      'model-config': { type: 'string' },
      context: { type: 'string' },
      'gpu-memory': { type: 'string' },
      quantization: { type: 'string' },
      forks: { type: 'string' },
      json: { type: 'boolean' },
    },
    USAGE,
    false,
  );
  if (Boolean(values.model) === Boolean(values['model-config'])) throw new UserError("give either --model DIR or --model-config FILE. Run 'klc plan --help' for the options.");
  const { config, source, format } = await readConfig(values);
  const contextText = required(values, 'context');
  const contextTokens = parseTokens(contextText);
  if (contextTokens === undefined || contextTokens < 1 || contextTokens > MAX_CONTEXT_TOKENS) {
    throw new UserError(`--context must be 1 to ${MAX_CONTEXT_TOKENS} tokens (e.g. 131072, 128k, 1M), got '${contextText}'`);
  }
  const memoryText = required(values, 'gpu-memory');
  const gpuMemory = parseBytes(memoryText);
  if (!gpuMemory) throw new UserError(`--gpu-memory must be a size such as 24GB, 24GiB or a number of bytes, got '${memoryText}'`);
  const quantization = (values.quantization as string | undefined) ?? 'auto';
  if (!CHOICES.includes(quantization as QuantizationChoice)) throw new UserError(`--quantization must be one of ${CHOICES.join(', ')}, got '${quantization}'`);
  const forks = intOption(values, 'forks', 0) ?? MAX_FORKS;
  if (forks > MAX_FORKS) throw new UserError(`--forks must be 0 to ${MAX_FORKS}, got ${forks}`);

  // A checkpoint stored quantized runs as stored, as the CUDA backend loads it.
  const stored = format ? storedScheme(format) : undefined;
  if (stored !== undefined && quantization !== 'auto' && quantization !== 'none' && quantization !== stored) {
    throw new UserError(`${source} is already quantized (stored as ${format?.label}): --quantization ${quantization} needs a bf16 or fp32 checkpoint. Use auto or none, which plan it as stored.`, source);
  }
  const plan = planMemory(config, {
    contextTokens,
    forks,
    quantization: stored ?? (quantization as QuantizationChoice),
    ...(stored !== undefined ? { schemes: [stored] as Quantization[] } : {}),
    gpuMemory,
  });
  const how = stored !== undefined ? ` (as stored: ${format?.label})` : quantization === 'auto' ? ' (auto)' : '';
  process.stdout.write(values.json ? `${JSON.stringify(plan)}\n` : table(plan, source, how));
}

function required(values: Record<string, unknown>, name: string): string {
  const v = values[name];
  if (typeof v !== 'string' || v === '') throw new UserError(`--${name} is required. Run 'klc plan --help' for the options.`);
  return v;
}

async function readConfig(values: Record<string, unknown>): Promise<{ config: KimiConfig; source: string; format?: WeightFormat }> {
  if (typeof values.model === 'string') {
    const dir = resolve(values.model);
    const config = await loadConfig(dir);
    const file = join(dir, 'config.json');
    return { config, source: dir, format: weightFormat(JSON.parse(await fs.readFile(file, 'utf8')) as Record<string, unknown>, file, await loadCheckpointQuantization(dir)) };
  }
  const file = resolve(values['model-config'] as string);
  return { config: await loadConfigFile(file), source: basename(file) };
}

function table(p: MemoryPlan, source: string, how: string): string {
  const count = (n: number) => n.toLocaleString('en-US');
  const gb = (n: number) => (n / 1e9).toFixed(2).padStart(8);
  const row = (label: string, bytes: number) => `  ${label.padEnd(22)}${gb(bytes)} GB  ${count(bytes).padStart(16)} B`;
  const lines = [
    `model          ${source}`,
    `context        ${count(p.contextTokens)} tokens, ${p.forks} fork${p.forks === 1 ? '' : 's'}, prefill slices of ${count(p.sliceTokens)} tokens`,
    `quantization   ${p.quantization}${how}`,
    `GPU memory     ${(p.gpuMemory / 1e9).toFixed(2)} GB, ${(p.usable / 1e9).toFixed(2)} GB usable`,
    '',
    'on the GPU',
    row('weights', p.gpu.weights),
    row('MLA cache', p.gpu.mlaCache),
    row('KDA state', p.gpu.kdaState),
    row(`forks (${p.forks})`, p.gpu.forks),
    row('prefill workspace', p.gpu.workspace),
    row('total', p.gpu.total),
    'in host memory',
    row('routed experts', p.host.experts),
    `  offloaded layers      ${p.offloadedLayers.length > 0 ? p.offloadedLayers.join(', ') : 'none'}`,
    '',
    `fits           ${p.fits ? 'yes' : 'no'}`,
    `advice         ${p.advice}`,
  ];
  return `${lines.join('\n')}\n`;
}
