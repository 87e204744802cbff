/**
 * The `quantization_config` of a compressed-tensors checkpoint (what llm-compressor writes into
 * config.json): config groups of a weight scheme and the modules it targets, an ignore list and the
 * storage format. Parsed strictly: a scheme the engine cannot reproduce exactly (static activation
 * scales, FP4, KV-cache quantization, sparsity) is a UserError naming the scheme and the file, never
 * a silently different model.
 */
import { UserError } from '../../../common/errors';

/** Storage formats of quantized weights, as compressed-tensors names them. */
export type QuantFormat = 'pack-quantized' | 'float-quantized' | 'int-quantized' | 'naive-quantized';
const FORMATS: QuantFormat[] = ['pack-quantized', 'float-quantized', 'int-quantized', 'naive-quantized'];

/** How a scheme's weights are stored: a compressed-tensors format, or GPTQ's and AWQ's own layouts (./gptq.ts, ./awq.ts). */
export type StorageFormat = QuantFormat | 'gptq' | 'gptq_v2' | 'awq';

export type Strategy = 'tensor' | 'channel' | 'group' | 'block';

export interface WeightArgs {
  numBits: number;
  type: 'int' | 'float';
  symmetric: boolean;
  strategy: Strategy;
  /** Columns per scale for 'group'. */
  groupSize: number | null;
  /** [rows, cols] per scale for 'block'. */
  blockStructure: [number, number] | null;
}

export interface QuantScheme {
  /** The config_groups key, for messages. */
  name: string;
  targets: string[];
  weights: WeightArgs;
  format: StorageFormat;
  /**
   * Activations quantized per token at run time (FP8_DYNAMIC, W8A8). The reference computes them
   * in fp32: the weights are what a checkpoint stores, and they are reproduced exactly.
   */
  dynamicActivations: boolean;
  /**
   * Activation order as the config declares it (compressed-tensors actorder "group", GPTQ desc_act
   * without static groups): each column's group is read from g_idx, so groups are not runs of
   * consecutive columns, which the CUDA kernels need.
   */
  activationOrder: boolean;
}

export interface QuantizationConfig {
  schemes: QuantScheme[];
  ignore: string[];
  /** config.json, for messages. */
  file: string;
}

export type Json = Record<string, unknown>;

/** A JSON object (not an array, not null). */
export const isObject = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v);

/** The preset names llm-compressor accepts as config_groups keys with a bare target list. */
const PRESETS: Record<string, { weights: Json; format: QuantFormat; input?: Json }> = {
  W4A16: { weights: { num_bits: 4, type: 'int', symmetric: true, strategy: 'group', group_size: 128 }, format: 'pack-quantized' },
  W4A16_ASYM: { weights: { num_bits: 4, type: 'int', symmetric: false, strategy: 'group', group_size: 128 }, format: 'pack-quantized' },
  W8A16: { weights: { num_bits: 8, type: 'int', symmetric: true, strategy: 'channel' }, format: 'pack-quantized' },
  FP8_DYNAMIC: {
    weights: { num_bits: 8, type: 'float', symmetric: true, strategy: 'channel' },
    format: 'float-quantized',
    input: { num_bits: 8, type: 'float', strategy: 'token', symmetric: true, dynamic: true },
  },
  W8A8: {
    weights: { num_bits: 8, type: 'int', symmetric: true, strategy: 'channel' },
    format: 'int-quantized',
    input: { num_bits: 8, type: 'int', strategy: 'token', symmetric: true, dynamic: true },
  },
};
PRESETS.INT8 = PRESETS.W8A8;

class Reader {
  constructor(readonly file: string) {}

  fail(where: string, what: string): never {
    throw new UserError(`${this.file}: quantization_config${where}${/^[.:]/.test(what) ? '' : ' '}${what}`, this.file);
  }
}

function weightArgs(r: Reader, where: string, w: Json): WeightArgs {
  const numBits = w.num_bits ?? 8;
  const type = typeof w.type === 'string' ? w.type.toLowerCase() : 'int';
  if (typeof numBits !== 'number' || !Number.isInteger(numBits)) r.fail(where, `.num_bits must be an integer, got ${JSON.stringify(numBits)}.`);
  if (type !== 'int' && type !== 'float') r.fail(where, `.type "${String(w.type)}" is not a quantization type (int or float).`);
  if (type === 'int' && (numBits < 2 || numBits > 8)) r.fail(where, `: ${numBits}-bit integer weights are not supported (2 to 8 bits are).`);
  if (type === 'float' && numBits !== 8) {
    r.fail(where, `: ${numBits}-bit float weights (FP4/NVFP4/MXFP4) are not supported; FP8 E4M3 and 2–8-bit integer schemes are.`);
  }
  if (w.dynamic !== undefined && w.dynamic !== false) r.fail(where, `.dynamic must be false for weights, got ${JSON.stringify(w.dynamic)}.`);
  const groupSize = w.group_size ?? null;
  if (groupSize !== null && (typeof groupSize !== 'number' || !Number.isInteger(groupSize) || groupSize < -1 || groupSize === 0)) {
    r.fail(where, `.group_size must be a positive integer or -1, got ${JSON.stringify(groupSize)}.`);
  }
  let strategy = typeof w.strategy === 'string' ? w.strategy.toLowerCase() : null;
  // compressed-tensors infers the strategy from group_size when it is absent.
  strategy ??= groupSize === null ? 'tensor' : groupSize === -1 ? 'channel' : 'group';
  if (!['tensor', 'channel', 'group', 'block'].includes(strategy)) {
    r.fail(where, `.strategy "${strategy}" is not supported for weights; tensor, channel, group and block are.`);
  }
  if (strategy === 'group' && !(typeof groupSize === 'number' && groupSize > 0)) r.fail(where, `.group_size must be positive for the group strategy, got ${JSON.stringify(groupSize)}.`);
  let blockStructure: [number, number] | null = null;
  if (strategy === 'block') {
    const b = w.block_structure;
    if (!Array.isArray(b) || b.length !== 2 || !b.every((x) => Number.isInteger(x) && x > 0)) r.fail(where, `.block_structure must be [rows, cols], got ${JSON.stringify(b)}.`);
    blockStructure = [b[0] as number, b[1] as number];
  }
  if (w.actorder !== undefined && w.actorder !== null && w.actorder !== false && strategy !== 'group') {
    r.fail(where, `.actorder is set for the ${strategy} strategy; only group quantization can reorder.`);
  }
  return {
    numBits,
    type,
    symmetric: w.symmetric === undefined ? true : w.symmetric === true,
    strategy: strategy as Strategy,
    groupSize: strategy === 'group' ? (groupSize as number) : null,
    blockStructure,
  };
}

function parseScheme(r: Reader, name: string, value: unknown, globalFormat: string): QuantScheme {
  const where = `.config_groups.${name}`;
  let scheme: Json;
  if (Array.isArray(value)) {
    const preset = PRESETS[name.toUpperCase()];
    if (!preset) r.fail(where, `names the preset "${name}", which is not supported (supported: ${Object.keys(PRESETS).join(', ')}).`);
    scheme = { targets: value, weights: preset.weights, input_activations: preset.input ?? null, format: preset.format };
  } else if (isObject(value)) {
    scheme = value;
  } else {
    r.fail(where, 'must be a scheme object or a list of targets.');
  }
  const targets = scheme.targets;
  if (!Array.isArray(targets) || !targets.every((t) => typeof t === 'string')) r.fail(where, '.targets must be a list of strings.');
  if (!isObject(scheme.weights)) r.fail(where, '.weights is missing: weight-only-less schemes (activations only) are not supported.');
  const weights = weightArgs(r, `${where}.weights`, scheme.weights);
  const format = (typeof scheme.format === 'string' ? scheme.format : globalFormat) as QuantFormat;
  if (!FORMATS.includes(format)) r.fail(where, `uses the format "${format}", which is not supported (supported: ${FORMATS.join(', ')}).`);
  if (format === 'pack-quantized' && weights.type !== 'int') r.fail(where, 'stores float weights as pack-quantized, which compressed-tensors never writes.');
  if (format === 'float-quantized' && weights.type !== 'float') r.fail(where, 'stores integer weights as float-quantized, which compressed-tensors never writes.');
  if ((format === 'int-quantized' || format === 'naive-quantized') && !(weights.type === 'int' && weights.numBits === 8) && !(weights.type === 'float')) {
    r.fail(where, `stores ${weights.numBits}-bit weights unpacked as ${format}; only 8-bit values are stored that way.`);
  }
  if (weights.strategy === 'block' && weights.type !== 'float') r.fail(where, 'uses block scales for integer weights, which is not supported.');
  const input = scheme.input_activations;
  let dynamicActivations = false;
  if (input !== undefined && input !== null) {
    if (!isObject(input) || input.dynamic !== true) {
      r.fail(where, '.input_activations are static (calibrated input_scale): not supported; use a weight-only or dynamic-activation checkpoint (W4A16, W8A16, FP8_DYNAMIC).');
    }
    dynamicActivations = true;
  }
  if (scheme.output_activations !== undefined && scheme.output_activations !== null) r.fail(where, '.output_activations are quantized, which is not supported.');
  const actorder = isObject(scheme.weights) ? scheme.weights.actorder : undefined;
  const activationOrder = actorder === true || actorder === 'group' || actorder === 'dynamic';
  return { name, targets: targets as string[], weights, format, dynamicActivations, activationOrder };
}

/**
 * The quantization of a parsed config.json, or null when it has none. `file` names config.json in
 * messages.
 */
export function parseQuantizationConfig(json: unknown, file: string): QuantizationConfig | null {
  if (!isObject(json) || json.quantization_config === undefined || json.quantization_config === null) return null;
  const r: Reader = new Reader(file);
  const q = json.quantization_config;
  if (!isObject(q)) r.fail('', 'must be an object.');
  const method = q.quant_method ?? 'compressed-tensors';
  if (method !== 'compressed-tensors') {
    r.fail('.quant_method', `is "${String(method)}"; only compressed-tensors checkpoints (llm-compressor) are supported. Use the bf16 checkpoint with --quantization, or a compressed-tensors export.`);
  }
  if (q.kv_cache_scheme !== undefined && q.kv_cache_scheme !== null) r.fail('.kv_cache_scheme', 'is set: a quantized KV cache is not supported.');
  if (isObject(q.sparsity_config) && Object.keys(q.sparsity_config).length > 0) r.fail('.sparsity_config', 'is set: sparse checkpoints are not supported.');
  if (isObject(q.transform_config) && Object.keys(q.transform_config).length > 0) r.fail('.transform_config', 'is set: rotated (transformed) checkpoints are not supported.');
  const globalFormat = typeof q.format === 'string' ? q.format : 'dense';
  if (globalFormat === 'dense') r.fail('.format', 'is "dense": the weights were saved unquantized with quantization parameters beside them (fake quantization); export the checkpoint compressed.');
  const groups = q.config_groups;
  if (!isObject(groups) || Object.keys(groups).length === 0) r.fail('.config_groups', 'must be a non-empty object.');
  const schemes = Object.entries(groups).map(([name, value]) => parseScheme(r, name, value, globalFormat));
  const ignore = q.ignore ?? [];
  if (!Array.isArray(ignore) || !ignore.every((t) => typeof t === 'string')) r.fail('.ignore', 'must be a list of module names or "re:" patterns.');
  return { schemes, ignore: ignore as string[], file };
}

/**
 * Whether `target` selects the module `name`: "re:" + a Python regex matched at the start (as
 * re.match), the class name "Linear" (every projection), or an exact module name.
 */
export function matchesTarget(name: string, isLinear: boolean, target: string): boolean {
  if (target.startsWith('re:')) return new RegExp(`^(?:${target.slice(3)})`).test(name);
  if (target === 'Linear') return isLinear;
  return target === name;
}

/**
 * The scheme that applies to module `name`, or null when no group targets it or it is ignored.
 * Exact names win over patterns, patterns over the class name, as compressed-tensors orders them.
 */
export function schemeFor(qc: QuantizationConfig, name: string, isLinear: boolean): QuantScheme | null {
  if (qc.ignore.some((t) => matchesTarget(name, isLinear, t))) return null;
  const rank = (t: string) => (t.startsWith('re:') ? 1 : t === 'Linear' ? 2 : 0);
  let best: { scheme: QuantScheme; rank: number } | null = null;
  for (const scheme of qc.schemes) {
    for (const t of scheme.targets) {
      if (matchesTarget(name, isLinear, t) && (best === null || rank(t) < best.rank)) best = { scheme, rank: rank(t) };
    }
  }
  return best?.scheme ?? null;
}
