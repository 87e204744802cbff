/**
 * How a checkpoint's weights are quantized, whichever tool wrote it: compressed-tensors
 * (llm-compressor), GPTQ (AutoGPTQ, GPTQModel) or AWQ (AutoAWQ's GEMM layout). Read from
 * config.json's `quantization_config`, or, for older GPTQ and AWQ exports that keep it beside the
 * weights, from quantize_config.json or quant_config.json (as vLLM falls back to them).
 */
import { promises as fs } from 'node:fs';
import { join } from 'node:path';
import { UserError } from '../../../common/errors';
import { AwqFormat } from './awq';
import { CompressedLayout, type QuantLayout } from './compressed';
import { GptqFormat } from './gptq';
import { InputMajorLayout } from './input-major';
import { isObject, parseQuantizationConfig, type Json, type QuantScheme } from './scheme';

export interface CheckpointQuantization {
  method: 'compressed-tensors' | 'gptq' | 'awq';
  /** The file the quantization was read from, for messages. */
  file: string;
  /** Every weight scheme the checkpoint may use (for labels such as INT4 or INT4+FP8). */
  schemes: QuantScheme[];
  /** A collector of the quantized modules' tensors; `linear` maps each Linear module to its [rows, cols]. */
  layout(linear: Map<string, [number, number]>): QuantLayout;
}

/** Files older GPTQ and AWQ exports keep their quantization in, when config.json does not. */
export const SIDECAR_FILES = ['quantize_config.json', 'quant_config.json'] as const;

/** The quantization config.json declares, or null for an unquantized checkpoint. */
export function quantizationOf(config: unknown, file: string): CheckpointQuantization | null {
  if (!isObject(config) || config.quantization_config === undefined || config.quantization_config === null) return null;
  if (!isObject(config.quantization_config)) throw new UserError(`${file}: quantization_config must be an object.`, file);
  return fromQuantizationConfig(config.quantization_config, file, null);
}

/**
 * The quantization of a sidecar file's object: GPTQ unless it names another method or uses AWQ's
 * own keys (w_bit, q_group_size, zero_point, version).
 */
export function quantizationOfSidecar(q: unknown, file: string): CheckpointQuantization {
  if (!isObject(q)) throw new UserError(`${file}: must hold a JSON object of quantization settings.`, file);
  const awqKeys = ['w_bit', 'q_group_size', 'zero_point', 'version'].some((k) => k in q);
  return fromQuantizationConfig(q, file, awqKeys ? 'awq' : 'gptq');
}

function fromQuantizationConfig(q: Json, file: string, implied: 'gptq' | 'awq' | null): CheckpointQuantization {
  if (q.quant_method === undefined && q.method === undefined && implied === null && !('config_groups' in q)) {
    // MLX exports write {group_size, bits, mode} here; other tools name their method.
    const mlx = 'mode' in q || ('bits' in q && 'group_size' in q) ? ' (its bits/group_size/mode keys are those of an MLX export, which stores weights differently)' : '';
    throw new UserError(`${file}: quantization_config names no quant_method${mlx}; checkpoints quantized with compressed-tensors (llm-compressor), GPTQ (AutoGPTQ, GPTQModel) and AWQ (AutoAWQ, GEMM layout) are read. Use one of those, or the bf16 checkpoint with --quantization.`, file);
  }
  const method = String(q.quant_method ?? q.method ?? implied ?? 'compressed-tensors').toLowerCase();
  switch (method) {
    case 'compressed-tensors': {
      const qc = parseQuantizationConfig({ quantization_config: q }, file);
      if (!qc) throw new Error('unreachable: a quantization_config object parsed to none');
      return { method, file, schemes: qc.schemes, layout: (linear) => new CompressedLayout(qc, linear) };
    }
    case 'gptq': {
      const f = GptqFormat.parse(q, file);
      return { method, file, schemes: f.allSchemes, layout: (linear) => new InputMajorLayout(f, linear) };
    }
    case 'awq': {
      const f = AwqFormat.parse(q, file);
      return { method, file, schemes: [f.scheme], layout: (linear) => new InputMajorLayout(f, linear) };
    }
    default:
      throw new UserError(
        `${file}: quantization_config.quant_method is ${JSON.stringify(q.quant_method ?? q.method)}; checkpoints quantized with compressed-tensors (llm-compressor), GPTQ (AutoGPTQ, GPTQModel) and AWQ (AutoAWQ, GEMM layout) are read. Use one of those, or the bf16 checkpoint with --quantization.`,
        file,
      );
  }
}

async function readJson(file: string): Promise<unknown> {
  const text = await fs.readFile(file, 'utf8');
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new UserError(`${file} is not valid JSON (${(e as Error).message}).`, file);
  }
}

async function readIfPresent(file: string): Promise<unknown> {
  try {
    return await readJson(file);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw e;
  }
}

/** The quantization of the checkpoint in `dir`; null when neither config.json nor a sidecar declares one. */
export async function loadCheckpointQuantization(dir: string): Promise<CheckpointQuantization | null> {
  const configFile = join(dir, 'config.json');
  const config = await readIfPresent(configFile);
  const declared = config === undefined ? null : quantizationOf(config, configFile);
  if (declared) return declared;
  for (const name of SIDECAR_FILES) {
    const file = join(dir, name);
    const sidecar = await readIfPresent(file);
    if (sidecar !== undefined) return quantizationOfSidecar(sidecar, file);
  }
  return null;
}
