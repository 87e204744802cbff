/**
 * Checks a model folder before anything loads it, so that "Select Model Folder…" can say at once
 * what is wrong with a download: config.json readable and a Kimi Linear config, every shard the
 * index names present, the tokenizer files there, and a weight format the engine reads (a
 * quantization scheme the loader would refuse is named, in the loader's words). Reads only
 * config.json, the index and file sizes, never the weights.
 */
import { promises as fs } from 'node:fs';
import { join } from 'node:path';
import { isUserError, UserError } from '../../common/errors';
import { type KimiConfig, parseConfig } from './config';
import { quantizationOf, quantizationOfSidecar, SIDECAR_FILES, type CheckpointQuantization } from './quant/checkpoint-quantization';
import { isObject, type Json } from './quant/scheme';
import type { Quantization } from '../../common/quantization';

/** How the weights are stored, as the folder's config.json says. */
export interface WeightFormat {
  /** Short name users know: bf16, fp16, fp32, or the quantized schemes' (FP8, INT4, INT4+FP8, …). */
  label: string;
  /** A quantized checkpoint (compressed-tensors, GPTQ or AWQ), whose weights each backend reads its own way. */
  quantized: boolean;
  /** Some weights are grouped in activation order (g_idx), which the CUDA backend runs dequantized. */
  activationOrder?: boolean;
}

export interface FolderCheck {
  dir: string;
  /** Each a sentence saying what is wrong and what to do; empty when the folder looks loadable. */
  problems: string[];
  config?: KimiConfig;
  format?: WeightFormat;
  shards: number;
  /** Bytes of the safetensors files present. */
  weightBytes: number;
}

const DTYPES: Record<string, string> = { bfloat16: 'bf16', float16: 'fp16', float32: 'fp32' };

/**
 * The weight format config.json declares (or `quantization`, read from a sidecar file when
 * config.json has none). A quantization is read by the loader's own parsers
 * (model/quant/checkpoint-quantization.ts), so a scheme it would refuse at load throws the same
 * UserError here. Unquantized weights are named by torch_dtype only: the loader goes by each
 * tensor's own dtype.
 */
export function weightFormat(config: Json, file: string, quantization: CheckpointQuantization | null = quantizationOf(config, file)): WeightFormat {
  const qc = quantization;
  if (qc) {
    const labels = new Set(qc.schemes.map((s) => `${s.weights.type === 'float' ? 'FP' : 'INT'}${s.weights.numBits}`));
    return { label: [...labels].join('+'), quantized: true, ...(qc.schemes.some((s) => s.activationOrder) ? { activationOrder: true } : {}) };
  }
  const dtype = String(config.torch_dtype ?? config.dtype ?? 'bfloat16');
  return { label: DTYPES[dtype] ?? dtype, quantized: false };
}

/**
 * The scheme the CUDA backend runs a stored quantized checkpoint in: INT4, INT8 or FP8 as stored,
 * anything else (mixed schemes, activation order) dequantized to bf16 ('none'); undefined for an unquantized one. The
 * plan's sizes for it are an estimate (INT4 at group 128; FP8 per row, though block-scaled FP8 is
 * dequantized); the load itself counts the checkpoint's exact bytes.
 */
export function storedScheme(format: WeightFormat): Quantization | undefined {
  if (!format.quantized) return undefined;
  if (format.activationOrder) return 'none';
  if (format.label === 'INT4') return 'int4';
  if (format.label === 'INT8') return 'int8';
  if (format.label === 'FP8') return 'fp8';
  return 'none';
}

/** The quantization an older GPTQ or AWQ export keeps beside config.json, if any. */
async function sidecarQuantization(dir: string, entries: string[]): Promise<CheckpointQuantization | null> {
  const name = SIDECAR_FILES.find((f) => entries.includes(f));
  if (!name) return null;
  const { json, problem } = await readJson(join(dir, name));
  if (problem) throw new UserError(problem, join(dir, name));
  return quantizationOfSidecar(json, join(dir, name));
}

async function fileSize(path: string): Promise<number | undefined> {
  try {
    const s = await fs.stat(path);
    return s.isFile() ? s.size : undefined;
  } catch {
    return undefined;
  }
}

async function readJson(path: string): Promise<{ json?: unknown; problem?: string }> {
  let text: string;
  try {
    text = await fs.readFile(path, 'utf8');
  } catch (e) {
    return { problem: `cannot read ${path} (${(e as NodeJS.ErrnoException).code ?? String(e)})` };
  }
  try {
    return { json: JSON.parse(text) };
  } catch (e) {
    return { problem: `${path} is not valid JSON (${(e as Error).message}); download it again` };
  }
}

const listed = (names: string[]) => names.slice(0, 5).join(', ') + (names.length > 5 ? ` and ${names.length - 5} more` : '');

export async function checkModelFolder(dir: string): Promise<FolderCheck> {
  const result: FolderCheck = { dir, problems: [], shards: 0, weightBytes: 0 };
  const problem = (text: string) => result.problems.push(text);
  let entries: string[];
  try {
    entries = await fs.readdir(dir);
  } catch (e) {
    problem(`cannot open the folder ${dir} (${(e as NodeJS.ErrnoException).code ?? String(e)})`);
    return result;
  }

  const configFile = join(dir, 'config.json');
  if (!entries.includes('config.json')) {
    problem(`${dir} has no config.json: pick the folder of a Kimi Linear checkpoint in Hugging Face layout`);
  } else {
    const { json, problem: unreadable } = await readJson(configFile);
    if (unreadable) problem(unreadable);
    else {
      try {
        result.config = parseConfig(json, configFile);
      } catch (e) {
        if (!isUserError(e)) throw e;
        problem(e.message);
      }
      if (isObject(json)) {
        try {
          result.format = weightFormat(json, configFile, quantizationOf(json, configFile) ?? (await sidecarQuantization(dir, entries)));
        } catch (e) {
          if (!isUserError(e)) throw e;
          problem(e.message.replace(/\.$/, ''));
        }
      }
    }
  }

  const gguf = entries.filter((e) => e.toLowerCase().endsWith('.gguf'));
  if (entries.includes('model.safetensors.index.json')) {
    const indexFile = join(dir, 'model.safetensors.index.json');
    const { json, problem: unreadable } = await readJson(indexFile);
    const map = isObject(json) && isObject(json.weight_map) ? json.weight_map : undefined;
    if (unreadable) problem(unreadable);
    else if (!map) problem(`${indexFile} has no "weight_map"; download it again`);
    else {
      const shards = [...new Set(Object.values(map).map(String))].sort();
      const sizes = await Promise.all(shards.map((s) => fileSize(join(dir, s))));
      const missing = shards.filter((_, i) => sizes[i] === undefined);
      result.shards = shards.length - missing.length;
      result.weightBytes = sizes.reduce<number>((s, n) => s + (n ?? 0), 0);
      if (missing.length > 0) problem(`${missing.length} of the ${shards.length} weight shards that model.safetensors.index.json lists are missing: ${listed(missing)}. The download is incomplete; fetch the missing files`);
    }
  } else if (entries.includes('model.safetensors')) {
    result.shards = 1;
    result.weightBytes = (await fileSize(join(dir, 'model.safetensors'))) ?? 0;
  } else if (gguf.length > 0) {
    problem(`${dir} holds GGUF files (${listed(gguf)}), which Kimi Linear does not read; download the safetensors checkpoint instead`);
  } else {
    problem(`${dir} has no weights: neither model.safetensors nor model.safetensors.index.json`);
  }

  const hasTiktoken = entries.includes('tiktoken.model');
  if (hasTiktoken && !entries.includes('tokenizer_config.json')) {
    problem(`${dir} has tiktoken.model but no tokenizer_config.json, which names its special tokens; download it too`);
  } else if (!hasTiktoken && !entries.includes('tokenizer.json')) {
    problem(`${dir} has no tokenizer: expected tiktoken.model and tokenizer_config.json (as published) or tokenizer.json`);
  }
  return result;
}
