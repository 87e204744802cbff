/**
 * Checks a model folder before anything loads it, so that "Select Model Folder…" can say at once
 * what is wrong with a download: config.json readable and a Kimi Linear config, every shard the
 * index names present, the tokenizer files there, and a weight format the engine reads (a
 * quantization scheme it does not know is named). Reads only config.json, the index and file
 * sizes, never the weights.
 */
import { promises as fs } from 'node:fs';
import { join } from 'node:path';
import { isUserError } from '../../common/errors';
import { type KimiConfig, parseConfig } from './config';

/** How the weights are stored, as the folder's config.json says. */
export interface WeightFormat {
  /** Short name users know: bf16, fp32, FP8, INT4, INT8, or the unknown scheme's own name. */
  label: string;
  known: boolean;
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

type Json = Record<string, unknown>;

const isObject = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v);

/**
 * compressed-tensors formats the engine reads (llm-compressor's writer): packed integer weights
 * and FP8 weights. Other quant_method values (gptq, awq, bitsandbytes, …) are named as unknown.
 */
const KNOWN_COMPRESSED_FORMATS = ['pack-quantized', 'float-quantized'];

export const KNOWN_FORMATS_TEXT = 'bf16 or fp32 safetensors, or compressed-tensors pack-quantized (INT4/INT8) and float-quantized (FP8)';

/** The weight format config.json declares. */
export function weightFormat(config: Json): WeightFormat {
  const q = config.quantization_config;
  if (q === undefined || q === null) {
    const dtype = String(config.torch_dtype ?? config.dtype ?? 'bfloat16');
    const label = { bfloat16: 'bf16', float32: 'fp32' }[dtype];
    return label ? { label, known: true } : { label: dtype, known: false };
  }
  if (!isObject(q)) return { label: 'quantization_config (not an object)', known: false };
  const method = String(q.quant_method ?? 'unnamed');
  if (method !== 'compressed-tensors') return { label: method, known: false };
  const groups = isObject(q.config_groups) ? Object.values(q.config_groups).filter(isObject) : [];
  // A group may name its own format (newer compressed-tensors); else the top-level one applies.
  const formats = groups.length > 0 ? groups.map((g) => g.format ?? q.format) : [q.format];
  const unknown = [...new Set(formats.map((f) => String(f ?? '')))].filter((f) => !KNOWN_COMPRESSED_FORMATS.includes(f));
  if (unknown.length > 0) return { label: `compressed-tensors ${unknown.map((f) => f || '(no format)').join(', ')}`, known: false };
  const labels = new Set(groups.map((g) => {
    const w = isObject(g.weights) ? g.weights : {};
    return `${w.type === 'float' ? 'FP' : 'INT'}${Number(w.num_bits ?? 8)}`;
  }));
  return { label: [...labels].join('+') || 'compressed-tensors', known: true };
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
        result.format = weightFormat(json);
        if (!result.format.known) problem(`${configFile} declares weights as "${result.format.label}", which Kimi Linear does not read; it reads ${KNOWN_FORMATS_TEXT}`);
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
