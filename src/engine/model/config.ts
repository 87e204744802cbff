/**
 * The HF `config.json` of a Kimi Linear checkpoint (model_type `kimi_linear`), parsed into the
 * typed, validated shape the engine computes with. Layer kinds come from the 1-based
 * `linear_attn_config.kda_layers` / `full_attn_layers` lists; dense vs MoE from
 * `first_k_dense_replace` and `moe_layer_freq`. Field aliases follow transformers 5.17.
 */
import { promises as fs } from 'node:fs';
import { join } from 'node:path';
import { UserError } from '../../common/errors';

export type AttentionKind = 'kda' | 'mla';
export type FfnKind = 'dense' | 'moe';

export interface LayerSpec {
  attention: AttentionKind;
  ffn: FfnKind;
}

export interface KdaConfig {
  numHeads: number;
  headDim: number;
  convKernel: number;
}

export interface MlaConfig {
  numHeads: number;
  qkNopeHeadDim: number;
  qkRopeHeadDim: number;
  vHeadDim: number;
  kvLoraRank: number;
  /**
   * Epsilon of kv_a_layernorm. No config field sets it: transformers 5.17 (the golden oracle) and
   * Moonshot's modeling file build that norm with the RMSNorm default 1e-6, not rms_norm_eps
   * (vLLM and llama.cpp use rms_norm_eps). Matching the golden `mla_kv` tensor confirms 1e-6.
   */
  kvNormEps: number;
}

export interface MoeConfig {
  numExperts: number;
  topK: number;
  numSharedExperts: number;
  intermediateSize: number;
  renormalize: boolean;
  routedScalingFactor: number;
  numExpertGroup: number;
  topkGroup: number;
}

export interface KimiConfig {
  vocabSize: number;
  hiddenSize: number;
  numLayers: number;
  intermediateSize: number;
  rmsNormEps: number;
  tieWordEmbeddings: boolean;
  bosTokenId: number | null;
  /** Every id the config names as end of sequence (`eos_token_id` may be a number or a list). */
  eosTokenIds: number[];
  padTokenId: number | null;
  maxPositionEmbeddings: number | null;
  kda: KdaConfig;
  mla: MlaConfig;
  moe: MoeConfig;
  /** One entry per decoder layer, 0-based. */
  layers: LayerSpec[];
}

type Json = Record<string, unknown>;

class Fields {
  constructor(
    private readonly obj: Json,
    private readonly file: string,
    private readonly prefix = '',
  ) {}

  private fail(field: string, what: string): never {
    throw new UserError(`${this.file}: field "${this.prefix}${field}" ${what}. Fix config.json or use the config that came with the checkpoint.`, this.file);
  }

  /** The first of `names` that is present (aliases), or undefined. */
  private pick(names: string[]): [string, unknown] | undefined {
    for (const n of names) if (this.obj[n] !== undefined && this.obj[n] !== null) return [n, this.obj[n]];
    return undefined;
  }

  int(names: string | string[], opts: { min?: number; default?: number } = {}): number {
    const list = Array.isArray(names) ? names : [names];
    const found = this.pick(list);
    if (!found) {
      if (opts.default !== undefined) return opts.default;
      this.fail(list[0], 'is missing');
    }
    const [name, v] = found;
    if (typeof v !== 'number' || !Number.isSafeInteger(v)) this.fail(name, `must be an integer, got ${JSON.stringify(v)}`);
    const min = opts.min ?? 1;
    if (v < min) this.fail(name, `must be ≥ ${min}, got ${v}`);
    return v;
  }

  optionalInt(names: string | string[], min = 0): number | null {
    const list = Array.isArray(names) ? names : [names];
    return this.pick(list) ? this.int(list, { min }) : null;
  }

  num(names: string | string[], opts: { positive?: boolean; default?: number } = {}): number {
    const list = Array.isArray(names) ? names : [names];
    const found = this.pick(list);
    if (!found) {
      if (opts.default !== undefined) return opts.default;
      this.fail(list[0], 'is missing');
    }
    const [name, v] = found;
    if (typeof v !== 'number' || !Number.isFinite(v)) this.fail(name, `must be a number, got ${JSON.stringify(v)}`);
    if (opts.positive && !(v > 0)) this.fail(name, `must be > 0, got ${v}`);
    return v;
  }

  bool(names: string | string[], def: boolean): boolean {
    const list = Array.isArray(names) ? names : [names];
    const found = this.pick(list);
    if (!found) return def;
    const [name, v] = found;
    if (typeof v !== 'boolean') this.fail(name, `must be true or false, got ${JSON.stringify(v)}`);
    return v;
  }

  str(name: string, def?: string): string {
    const v = this.obj[name];
    if (v === undefined || v === null) {
      if (def !== undefined) return def;
      this.fail(name, 'is missing');
    }
    if (typeof v !== 'string') this.fail(name, `must be a string, got ${JSON.stringify(v)}`);
    return v;
  }

  intList(name: string): number[] {
    const v = this.obj[name];
    if (!Array.isArray(v)) this.fail(name, `must be a list of integers, got ${JSON.stringify(v)}`);
    for (const x of v) if (typeof x !== 'number' || !Number.isSafeInteger(x)) this.fail(name, `must hold integers only, found ${JSON.stringify(x)}`);
    return v as number[];
  }

  object(name: string): Fields {
    const v = this.obj[name];
    if (typeof v !== 'object' || v === null || Array.isArray(v)) this.fail(name, 'must be an object');
    return new Fields(v as Json, this.file, `${this.prefix}${name}.`);
  }

  has(name: string): boolean {
    return this.obj[name] !== undefined && this.obj[name] !== null;
  }

  raw(name: string): unknown {
    return this.obj[name];
  }

  error(field: string, what: string): never {
    this.fail(field, what);
  }
}

/** Parses an already-decoded config.json. `file` is used in error messages. */
export function parseConfig(json: unknown, file = 'config.json'): KimiConfig {
  if (typeof json !== 'object' || json === null || Array.isArray(json)) {
    throw new UserError(`${file}: expected a JSON object. Point the model folder at a Kimi Linear checkpoint.`, file);
  }
  const f = new Fields(json as Json, file);
  const modelType = f.str('model_type');
  if (modelType !== 'kimi_linear') f.error('model_type', `must be "kimi_linear", got "${modelType}"; this engine only runs Kimi Linear checkpoints`);

  const vocabSize = f.int('vocab_size');
  const hiddenSize = f.int('hidden_size');
  const numLayers = f.int('num_hidden_layers');
  const rmsNormEps = f.num('rms_norm_eps', { positive: true });

  const act = f.str('hidden_act', 'silu');
  if (act !== 'silu') f.error('hidden_act', `must be "silu", got "${act}"`);

  // Kimi Linear's MLA has no rotary: transformers and vLLM both refuse mla_use_nope = false.
  if (!f.bool('mla_use_nope', true)) f.error('mla_use_nope', 'must be true (Kimi Linear MLA layers use no positional encoding)');
  if (f.has('q_lora_rank')) f.error('q_lora_rank', `must be null (Kimi Linear MLA has a direct q_proj), got ${JSON.stringify(f.raw('q_lora_rank'))}`);

  const mlaHeads = f.int('num_attention_heads');
  const kvHeads = f.int('num_key_value_heads', { default: mlaHeads });
  if (kvHeads !== mlaHeads) f.error('num_key_value_heads', `must equal num_attention_heads (${mlaHeads}), got ${kvHeads}`);

  const router = f.str('moe_router_activation_func', 'sigmoid');
  if (router !== 'sigmoid') f.error('moe_router_activation_func', `must be "sigmoid", got "${router}"`);
  const mtp = f.int('num_nextn_predict_layers', { min: 0, default: 0 });
  if (mtp !== 0) f.error('num_nextn_predict_layers', `must be 0 (multi-token prediction layers are not supported), got ${mtp}`);

  const lin = f.object('linear_attn_config');
  const kda: KdaConfig = {
    numHeads: lin.int('num_heads'),
    headDim: lin.int('head_dim'),
    convKernel: lin.int('short_conv_kernel_size', { min: 2 }),
  };

  const mla: MlaConfig = {
    numHeads: mlaHeads,
    qkNopeHeadDim: f.int('qk_nope_head_dim'),
    qkRopeHeadDim: f.int('qk_rope_head_dim', { min: 0 }),
    vHeadDim: f.int('v_head_dim'),
    kvLoraRank: f.int('kv_lora_rank'),
    kvNormEps: 1e-6,
  };

  const numExperts = f.int(['num_experts', 'num_local_experts']);
  const moe: MoeConfig = {
    numExperts,
    topK: f.int(['num_experts_per_token', 'num_experts_per_tok']),
    numSharedExperts: f.int(['num_shared_experts', 'n_shared_experts'], { min: 0, default: 0 }),
    intermediateSize: f.int('moe_intermediate_size'),
    renormalize: f.bool(['moe_renormalize', 'norm_topk_prob'], true),
    routedScalingFactor: f.num('routed_scaling_factor', { positive: true, default: 1 }),
    numExpertGroup: f.int(['num_expert_group', 'n_group'], { default: 1 }),
    topkGroup: f.int('topk_group', { default: 1 }),
  };
  if (moe.topK > numExperts) f.error('num_experts_per_token', `(${moe.topK}) exceeds num_experts (${numExperts})`);
  if (numExperts % moe.numExpertGroup !== 0) f.error('num_expert_group', `(${moe.numExpertGroup}) must divide num_experts (${numExperts})`);
  if (moe.topkGroup > moe.numExpertGroup) f.error('topk_group', `(${moe.topkGroup}) exceeds num_expert_group (${moe.numExpertGroup})`);
  if (moe.numExpertGroup > 1 && moe.topK > (numExperts / moe.numExpertGroup) * moe.topkGroup) {
    f.error('num_experts_per_token', `(${moe.topK}) exceeds the experts left by topk_group × group size`);
  }

  const firstDense = f.int('first_k_dense_replace', { min: 0, default: 0 });
  const moeFreq = f.int('moe_layer_freq', { default: 1 });

  const kdaLayers = lin.intList('kda_layers');
  const fullLayers = lin.intList('full_attn_layers');
  const kinds: (AttentionKind | undefined)[] = new Array(numLayers).fill(undefined);
  const place = (list: number[], field: string, kind: AttentionKind) => {
    for (const oneBased of list) {
      if (oneBased < 1 || oneBased > numLayers) {
        lin.error(field, `holds layer ${oneBased}, outside 1..num_hidden_layers (${numLayers}); the lists are 1-based`);
      }
      if (kinds[oneBased - 1] !== undefined) lin.error(field, `names layer ${oneBased} twice or in both kda_layers and full_attn_layers`);
      kinds[oneBased - 1] = kind;
    }
  };
  place(kdaLayers, 'kda_layers', 'kda');
  place(fullLayers, 'full_attn_layers', 'mla');
  const missing = kinds.flatMap((k, i) => (k === undefined ? [i + 1] : []));
  if (missing.length > 0) lin.error('kda_layers', `and full_attn_layers together must cover every layer 1..${numLayers}; missing ${missing.join(', ')}`);

  const layers: LayerSpec[] = kinds.map((attention, i) => ({
    attention: attention as AttentionKind,
    ffn: i >= firstDense && i % moeFreq === 0 ? 'moe' : 'dense',
  }));
  const needsDense = layers.some((l) => l.ffn === 'dense');
  const intermediateSize = needsDense ? f.int('intermediate_size') : f.int('intermediate_size', { default: 0, min: 0 });

  const eosRaw = f.raw('eos_token_id');
  let eosTokenIds: number[] = [];
  if (Array.isArray(eosRaw)) eosTokenIds = f.intList('eos_token_id');
  else if (eosRaw !== undefined && eosRaw !== null) eosTokenIds = [f.int('eos_token_id', { min: 0 })];
  for (const id of eosTokenIds) if (id < 0 || id >= vocabSize) f.error('eos_token_id', `(${id}) must be < vocab_size (${vocabSize})`);
  const bosTokenId = f.optionalInt('bos_token_id');
  const padTokenId = f.optionalInt('pad_token_id');
  if (padTokenId !== null && padTokenId >= vocabSize) f.error('pad_token_id', `(${padTokenId}) must be < vocab_size (${vocabSize})`);

  return {
    vocabSize,
    hiddenSize,
    numLayers,
    intermediateSize,
    rmsNormEps,
    tieWordEmbeddings: f.bool('tie_word_embeddings', false),
    bosTokenId,
    eosTokenIds,
    padTokenId,
    maxPositionEmbeddings: f.optionalInt(['model_max_length', 'max_position_embeddings'], 1),
    kda,
    mla,
    moe,
    layers,
  };
}

/** Reads and validates `<dir>/config.json`. */
export async function loadConfig(dir: string): Promise<KimiConfig> {
  return loadConfigFile(join(dir, 'config.json'));
}

/** Reads and validates a config.json given by its own path (a config without weights: dummy weights, `klc plan`). */
export async function loadConfigFile(file: string): Promise<KimiConfig> {
  let text: string;
  try {
    text = await fs.readFile(file, 'utf8');
  } catch (e) {
    throw new UserError(`cannot read ${file} (${(e as NodeJS.ErrnoException).code ?? String(e)}). Point --model at a folder with a Kimi Linear config.json.`, file);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new UserError(`${file} is not valid JSON (${(e as Error).message}).`, file);
  }
  return parseConfig(json, file);
}
