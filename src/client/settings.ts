/**
 * Turns the `kimiLinear.*` settings into what the engine takes. Pure: the caller passes a reader
 * (VS Code's WorkspaceConfiguration in the extension), so the mapping is tested without an editor.
 */
import type { PackSettings, SamplingOptions } from '../engine/api';
import type { OpenParams } from '../common/engine-protocol';
import { UserError } from '../common/errors';
import type { MemoryBudget, QuantizationChoice } from '../engine/plan/memory-plan';
import { QUANTIZATIONS } from '../common/quantization';
import { parseBytes } from '../common/sizes';

export interface SettingsReader {
  /** The value of `kimiLinear.<key>`, or undefined when unset and without a default. */
  get<T>(key: string): T | undefined;
}

const BACKENDS: readonly OpenParams['backend'][] = ['auto', 'cuda', 'onnx', 'reference', 'remote'];

/**
 * `apiKey` comes from VS Code's SecretStorage, never from settings, and is only used by the
 * remote backend.
 */
export function openParamsFrom(settings: SettingsReader, cacheDir: string, apiKey?: string): OpenParams {
  const modelPath = (settings.get<string>('modelPath') ?? '').trim();
  const backend = settings.get<string>('backend') ?? 'auto';
  if (!BACKENDS.includes(backend as OpenParams['backend'])) {
    throw new UserError(`Setting kimiLinear.backend is "${backend}"; use one of ${BACKENDS.join(', ')}.`);
  }
  const memory = memoryBudgetFrom(settings);
  const params: OpenParams = {
    modelDir: modelPath === '' ? undefined : modelPath,
    backend: backend as OpenParams['backend'],
    cacheDir,
    ...(Object.keys(memory).length > 0 ? { memory } : {}),
  };
  if (backend !== 'remote') return params;
  const url = (settings.get<string>('remote.endpoint') ?? '').trim();
  const model = (settings.get<string>('remote.model') ?? '').trim();
  if (!url) throw new UserError('Setting kimiLinear.backend is "remote" but kimiLinear.remote.endpoint is empty; set it to the server\'s URL, e.g. http://gpu-box:8000/v1.');
  if (!model) throw new UserError('Setting kimiLinear.backend is "remote" but kimiLinear.remote.model is empty; set it to a model id the server lists at <endpoint>/models.');
  return { ...params, remote: { url, model, ...(apiKey ? { apiKey } : {}) } };
}

const QUANTIZATION_CHOICES: readonly QuantizationChoice[] = ['auto', ...QUANTIZATIONS];

/** The context budget, GPU memory limit and weight quantization the engine plans the model's memory for. */
export function memoryBudgetFrom(settings: SettingsReader): MemoryBudget {
  const quantization = settings.get<string>('quantization');
  if (quantization !== undefined && !(QUANTIZATION_CHOICES as readonly string[]).includes(quantization)) {
    throw new UserError(`Setting kimiLinear.quantization is "${quantization}"; use one of ${QUANTIZATION_CHOICES.join(', ')}.`);
  }
  const limit = (settings.get<string>('gpuMemoryLimit') ?? '').trim();
  const gpuMemory = limit === '' ? undefined : parseBytes(limit);
  if (gpuMemory === 0 || (limit !== '' && gpuMemory === undefined)) {
    throw new UserError(`Setting kimiLinear.gpuMemoryLimit is "${limit}"; use a size such as 24GB, 24GiB or a number of bytes, or leave it empty to use the GPU's free memory.`);
  }
  return withoutUndefined({ contextTokens: settings.get<number>('maxContextTokens'), gpuMemory, quantization: quantization as QuantizationChoice | undefined });
}

export function packSettingsFrom(settings: SettingsReader, roots: string[]): PackSettings {
  return withoutUndefined({
    roots,
    maxTokens: settings.get<number>('maxContextTokens'),
    include: nonEmpty(settings.get<string[]>('include')),
    exclude: nonEmpty(settings.get<string[]>('exclude')),
    maxFileBytes: settings.get<number>('maxFileBytes'),
  });
}

export function samplingFrom(settings: SettingsReader): Partial<SamplingOptions> {
  return withoutUndefined({
    temperature: settings.get<number>('temperature'),
    topP: settings.get<number>('topP'),
    maxNewTokens: settings.get<number>('maxNewTokens'),
  });
}

function nonEmpty(list: string[] | undefined): string[] | undefined {
  const kept = (list ?? []).map((s) => s.trim()).filter((s) => s.length > 0);
  return kept.length > 0 ? kept : undefined;
}

/** Unset keys are left out rather than sent as undefined, so the engine's defaults apply to them. */
function withoutUndefined<T extends object>(value: T): T {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as T;
}
