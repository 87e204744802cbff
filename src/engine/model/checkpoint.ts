/**
 * A Kimi Linear checkpoint folder in the published Hugging Face layout: `model.safetensors`, or
 * shards listed by `model.safetensors.index.json`. Opening checks every header and that the
 * tensor names and shapes are exactly those the config implies; tensors are then read one at a
 * time, converted to fp32, so the whole checkpoint is never in memory at once. A compressed-tensors
 * checkpoint (compressed-tensors, GPTQ or AWQ) has its quantized modules dequantized on read.
 */
import { promises as fs } from 'node:fs';
import { join, basename } from 'node:path';
import { UserError } from '../../common/errors';
import type { KimiConfig } from './config';
import { loadCheckpointQuantization } from './quant/checkpoint-quantization';
import { isQuantizedSource, type QuantizedSource } from './quant/compressed';
import { linearModules } from './quant/linear-modules';
import { SafetensorsFile, numel, type ReadBuffer } from './safetensors';
import type { WeightInfo } from './weight-source';
import { storedSource, type TensorSource } from './tensor-source';
import { EMBED, FINAL_NORM, kdaNames, LM_HEAD, mlaNames, mlpNames, moeNames, normNames, type SwigluNames } from './weight-names';
import { pathExists } from '../../common/path-exists';

/** Accepted shapes of one tensor; the first is canonical. */
export type ShapeOptions = number[][];

/** Every tensor the config implies, with its accepted shapes. */
export function expectedTensors(c: KimiConfig): Map<string, ShapeOptions> {
  const m = new Map<string, ShapeOptions>();
  const d = c.hiddenSize;
  const swiglu = (n: SwigluNames) => {
    m.set(n.gate, [[n.inner, d]]);
    m.set(n.up, [[n.inner, d]]);
    m.set(n.down, [[d, n.inner]]);
  };
  m.set(EMBED, [[c.vocabSize, d]]);
  m.set(FINAL_NORM, [[d]]);
  if (!c.tieWordEmbeddings) m.set(LM_HEAD, [[c.vocabSize, d]]);
  c.layers.forEach((layer, i) => {
    const norms = normNames(i);
    m.set(norms.input, [[d]]);
    m.set(norms.post, [[d]]);
    if (layer.attention === 'kda') {
      const { numHeads: H, headDim: K, convKernel: W } = c.kda;
      const P = H * K;
      const n = kdaNames(i);
      for (const proj of [n.qProj, n.kProj, n.vProj]) m.set(proj, [[P, d]]);
      for (const conv of [n.qConv, n.kConv, n.vConv]) m.set(conv, [[P, 1, W], [P, W]]);
      m.set(n.aLog, [[1, 1, H, 1], [H]]);
      m.set(n.dtBias, [[P]]);
      m.set(n.fA, [[K, d]]);
      m.set(n.fB, [[P, K]]);
      m.set(n.bProj, [[H, d]]);
      m.set(n.gA, [[K, d]]);
      m.set(n.gB, [[P, K]]);
      m.set(n.oNorm, [[K]]);
      m.set(n.oProj, [[d, P]]);
    } else {
      const { numHeads: H, qkNopeHeadDim: nope, qkRopeHeadDim: r, vHeadDim: v, kvLoraRank: L } = c.mla;
      const n = mlaNames(i);
      m.set(n.qProj, [[H * (nope + r), d]]);
      m.set(n.kvA, [[L + r, d]]);
      m.set(n.kvNorm, [[L]]);
      m.set(n.kvB, [[H * (nope + v), L]]);
      m.set(n.oProj, [[d, H * v]]);
    }
    if (layer.ffn === 'dense') {
      swiglu(mlpNames(c, i));
    } else {
      const n = moeNames(c, i);
      m.set(n.router, [[c.moe.numExperts, d]]);
      m.set(n.bias, [[c.moe.numExperts]]);
      n.experts.forEach(swiglu);
      if (n.shared) swiglu(n.shared);
    }
  });
  return m;
}

/**
 * transformers 5.17's save_pretrained writes a dense layer's MLP under `block_sparse_moe.`
 * (a reverse-rename quirk) and loads either spelling; accept it (and its quantization parameters,
 * compressed-tensors' or GPTQ's and AWQ's) under the published name.
 */
export function canonicalName(name: string): string {
  const m = /^(model\.layers\.\d+\.)block_sparse_moe\.((?:gate|up|down)_proj\.(?:weight\w*|input_scale|qweight|qzeros|scales|g_idx))$/.exec(name);
  return m ? `${m[1]}mlp.${m[2]}` : name;
}

const sameShape = (a: readonly number[], b: readonly number[]) => a.length === b.length && a.every((x, i) => x === b[i]);

export class Checkpoint {
  private constructor(
    readonly dir: string,
    private readonly files: SafetensorsFile[],
    /** canonical name → how to read it */
    private readonly where: Map<string, TensorSource>,
  ) {}

  /** Opens and validates `dir` against `config`. */
  static async open(dir: string, config: KimiConfig): Promise<Checkpoint> {
    const indexPath = join(dir, 'model.safetensors.index.json');
    const single = join(dir, 'model.safetensors');
    let shardNames: string[];
    let weightMap: Record<string, string> | null = null;
    if (await pathExists(indexPath)) {
      weightMap = await readIndex(indexPath);
      shardNames = [...new Set(Object.values(weightMap))].sort();
    } else if (await pathExists(single)) {
      shardNames = ['model.safetensors'];
    } else {
      throw new UserError(`${dir} has neither model.safetensors nor model.safetensors.index.json. Point the model folder at a Kimi Linear checkpoint.`, dir);
    }

    const files: SafetensorsFile[] = [];
    try {
      for (const s of shardNames) files.push(await SafetensorsFile.open(join(dir, s)));
      const where = new Map<string, TensorSource>();
      const expected = expectedTensors(config);
      const linear = linearModules(config, expected);
      const layout = (await loadCheckpointQuantization(dir))?.layout(linear) ?? null;
      const seen = new Map<string, SafetensorsFile>();
      for (const f of files) {
        for (const t of f.header.tensors.values()) {
          const name = canonicalName(t.name);
          const prior = seen.get(name);
          if (prior) throw new UserError(`${f.path}: tensor "${t.name}" is also stored in ${prior.path}; a checkpoint must hold each tensor once.`, f.path);
          seen.set(name, f);
          if (weightMap && weightMap[t.name] !== basename(f.path)) {
            throw new UserError(`${f.path}: holds "${t.name}", but model.safetensors.index.json maps it to ${weightMap[t.name] ?? 'no file'}.`, f.path);
          }
          if (layout?.claims(name)) {
            layout.add(name, f, t.name);
            continue;
          }
          const shapes = expected.get(name);
          if (!shapes) throw new UserError(`${f.path}: tensor "${t.name}" is not part of this model per config.json (wrong config, or a checkpoint of another model).`, f.path);
          if (!shapes.some((s) => sameShape(s, t.shape))) {
            throw new UserError(`${f.path}: tensor "${t.name}" has shape ${JSON.stringify(t.shape)}, expected ${JSON.stringify(shapes[0])} from config.json.`, f.path);
          }
          where.set(name, storedSource(f, t.name));
        }
      }
      if (weightMap) {
        for (const [name, shard] of Object.entries(weightMap)) {
          if (!seen.has(canonicalName(name))) throw new UserError(`${indexPath}: maps "${name}" to ${shard}, but that file has no such tensor.`, indexPath);
        }
      }
      if (layout) {
        for (const [name, source] of await layout.sources()) {
          if (where.has(name)) throw new UserError(`${source.file}: "${name}" is stored both quantized and unquantized; a checkpoint must hold each weight once.`, source.file);
          where.set(name, source);
        }
      }
      const missing = [...expected.keys()].filter((n) => !where.has(n));
      if (missing.length > 0) {
        const shown = missing.slice(0, 5).join(', ') + (missing.length > 5 ? ` and ${missing.length - 5} more` : '');
        throw new UserError(`${dir}: checkpoint lacks ${missing.length} tensor(s) that config.json requires: ${shown}. The download may be incomplete.`, dir);
      }
      return new Checkpoint(dir, files, where);
    } catch (e) {
      await Promise.all(files.map((f) => f.close()));
      throw e;
    }
  }

  has(name: string): boolean {
    return this.where.has(name);
  }

  /** Published names of every tensor. */
  get names(): string[] {
    return [...this.where.keys()];
  }

  /** Total number of weights. */
  get parameters(): number {
    let n = 0;
    for (const name of this.where.keys()) n += numel(this.info(name).shape);
    return n;
  }

  /** Shape and dtype of one tensor as a plain reader would get it (a quantized weight: its dequantized shape, the scales' dtype). */
  info(name: string): WeightInfo {
    const s = this.locate(name);
    return { name, dtype: s.dtype, shape: s.shape };
  }

  async readStored(name: string, into?: ReadBuffer): Promise<Buffer> {
    const s = this.locate(name);
    if (!s.readStored) throw new Error(`${name} is not stored as it is (quantized); read it with tensor()`);
    return s.readStored(into);
  }

  quantized(name: string): QuantizedSource | null {
    const s = this.locate(name);
    return isQuantizedSource(s) ? s : null;
  }

  /** Reads one tensor (published name) as fp32, flat, in its stored row-major order. */
  async tensor(name: string): Promise<Float32Array> {
    const s = this.locate(name);
    const t = await s.read();
    if (t.length !== numel(s.shape)) throw new Error(`tensor ${name}: size mismatch after conversion`);
    return t;
  }

  async close(): Promise<void> {
    await Promise.all(this.files.map((f) => f.close()));
  }

  private locate(name: string): TensorSource {
    const w = this.where.get(name);
    if (!w) throw new UserError(`${this.dir}: checkpoint has no tensor "${name}".`, this.dir);
    return w;
  }
}


async function readIndex(path: string): Promise<Record<string, string>> {
  let json: unknown;
  try {
    json = JSON.parse(await fs.readFile(path, 'utf8'));
  } catch (e) {
    throw new UserError(`${path}: not readable JSON (${(e as Error).message}). Re-download the checkpoint's index file.`, path);
  }
  const map = (json as { weight_map?: unknown } | null)?.weight_map;
  if (typeof map !== 'object' || map === null || Array.isArray(map)) throw new UserError(`${path}: field "weight_map" is missing or not an object.`, path);
  for (const [name, shard] of Object.entries(map)) {
    if (typeof shard !== 'string' || shard.length === 0 || shard !== basename(shard)) {
      throw new UserError(`${path}: weight_map["${name}"] must be a shard file name in the same folder, got ${JSON.stringify(shard)}.`, path);
    }
  }
  return map as Record<string, string>;
}
