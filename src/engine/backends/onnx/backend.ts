/**
 * The ONNX Runtime backend: every layer of the model as onnxruntime-node sessions built from the
 * graphs in this folder. Sessions are created once at load, layer by layer (only one layer's
 * weights are in the JS heap at a time; the session holds them as initializers from then on), and
 * reused for every call. Activations are CPU ort.Tensors; the KDA state and the MLA latent cache
 * stay the neutral host arrays, fed to each run and updated from its outputs. The MLA sessions
 * read the latent rows from contiguous arrays kept beside the host cache (MlaRows), which forks
 * share instead of copying.
 */
import { totalmem } from 'node:os';
import * as ort from 'onnxruntime-node';
import { UserError } from '../../../common/errors';
import type { KimiConfig } from '../../model/config';
import type { WeightSource } from '../../model/weight-source';
import type { LatentCache } from '../../state/latent-cache';
import type { KdaLayerState, MlaLayerState, SequenceState } from '../../state/types';
import type { Backend, Capture, NormSite } from '../backend';
import { embedGraph, lmHeadGraph, mlpGraph, moeGraph, rmsnormGraph } from './ffn-graph';
import { kdaDecodeGraph, kdaPrefillGraph } from './kda-graph';
import { EMBED, kdaNames, LM_HEAD, mlaNames, mlpNames, moeNames } from '../../model/weight-names';
import { attachNBits } from './nbits';
import { readKda, readMla, readMlp, readMoe } from '../../reference/weights';
import { mlaDecodeGraph, mlaPrefillGraph } from './mla-graph';
import { chooseProvider, createSession, threads, type Provider } from './runtime';

type Session = ort.InferenceSession;

/**
 * The latent rows of one MLA cache as the sessions read them: `shared`, a read-only view of rows
 * of the state this one was forked from (never copied, never written: that state only appends
 * past the fork point or into a new buffer), then `own`, the rows this state appended itself, in
 * a buffer with room to grow. A state that is not a fork has no shared rows.
 */
interface MlaRows {
  shared: Float32Array;
  own: Float32Array;
  ownLength: number;
}

/** Rows of room a fork's own buffer starts with (a question's prompt and answer; it doubles past that). */
const FORK_ROOM = 256;

interface LayerSessions {
  inputNorm: Session;
  postNorm: Session;
  /** KDA: one prefill session per chunk length, built on first use; MLA: key 0. */
  prefill: Map<number, Session>;
  decode: Session;
  ffn: Session;
}

/** The chunk length whose KDA prefill sessions are built at load. */
const DEFAULT_CHUNK = 64;

export class OnnxBackend implements Backend<ort.Tensor> {
  readonly name = 'onnx';
  readonly device: string;
  /** The sessions' rows of each MLA latent cache; a forked or restored state brings a new cache object. */
  private readonly latents = new WeakMap<LatentCache, MlaRows>();

  private constructor(
    readonly config: KimiConfig,
    /** Opens the weights again, for sessions built after loading (other KDA chunk lengths). */
    private readonly reopen: () => Promise<WeightSource>,
    private readonly provider: Provider,
    private readonly embedSession: Session,
    private readonly finalNorm: Session,
    private readonly head: Session,
    private readonly layers: LayerSessions[],
  ) {
    this.device = `${provider === 'cuda' ? 'CUDA' : 'CPU'} via ONNX Runtime ${ort.env.versions.common} (${threads()} threads)`;
  }

  static async load(config: KimiConfig, checkpoint: WeightSource, log: (line: string) => void, reopen: () => Promise<WeightSource>): Promise<OnnxBackend> {
    if (config.moe.numExpertGroup > 1) {
      throw new UserError(`the onnx backend does not implement group-limited MoE routing (num_expert_group = ${config.moe.numExpertGroup} in ${checkpoint.dir}/config.json); use --backend reference or cuda.`, checkpoint.dir);
    }
    const need = checkpoint.parameters * 4;
    if (need > totalmem() * 0.8) {
      const gb = (b: number) => (b / 1e9).toFixed(1);
      throw new UserError(
        `the onnx backend keeps every weight of ${checkpoint.dir} in fp32 memory: ${gb(need)} GB, but this machine has ${gb(totalmem())} GB. Use --backend cuda (or auto) for a checkpoint this large.`,
        checkpoint.dir,
      );
    }
    const { provider, reason } = await chooseProvider();
    log(`backend onnx: ${reason}`);
    const session = (bytes: Uint8Array) => createSession(bytes, provider);
    const d = config.hiddenSize;
    const eps = config.rmsNormEps;
    const sessions: Session[] = [];
    const track = async (s: Promise<Session>) => {
      const made = await s;
      sessions.push(made);
      return made;
    };
    let nbits = 0;
    try {
      const layers: LayerSessions[] = [];
      for (const [i, spec] of config.layers.entries()) {
        const p = `model.layers.${i}.`;
        const inputNorm = await track(session(rmsnormGraph(d, await checkpoint.tensor(`${p}input_layernorm.weight`), eps)));
        const postNorm = await track(session(rmsnormGraph(d, await checkpoint.tensor(`${p}post_attention_layernorm.weight`), eps)));
        const prefill = new Map<number, Session>();
        let decode: Session;
        if (spec.attention === 'kda') {
          const w = await readKda(checkpoint, i);
          nbits += await attachNBits(checkpoint, kdaNames(i), w);
          prefill.set(DEFAULT_CHUNK, await track(session(kdaPrefillGraph(config, w, DEFAULT_CHUNK))));
          decode = await track(session(kdaDecodeGraph(config, w)));
        } else {
          const w = await readMla(checkpoint, i);
          nbits += await attachNBits(checkpoint, mlaNames(i), w);
          prefill.set(0, await track(session(mlaPrefillGraph(config, w))));
          decode = await track(session(mlaDecodeGraph(config, w)));
        }
        let ffn: Session;
        if (spec.ffn === 'moe') {
          const w = await readMoe(config, checkpoint, i);
          nbits += await attachNBits(checkpoint, moeNames(config, i), w);
          ffn = await track(session(moeGraph(config, w)));
        } else {
          const w = await readMlp(config, checkpoint, i);
          nbits += await attachNBits(checkpoint, mlpNames(config, i), w);
          ffn = await track(session(mlpGraph(config, w)));
        }
        layers.push({ inputNorm, postNorm, prefill, decode, ffn });
      }
      const V = config.vocabSize;
      const embed = await track(session(embedGraph(await checkpoint.tensor(EMBED), V, d)));
      const finalNorm = await track(session(rmsnormGraph(d, await checkpoint.tensor('model.norm.weight'), eps)));
      const headName = config.tieWordEmbeddings ? EMBED : LM_HEAD;
      const headWeight = await checkpoint.tensor(headName);
      nbits += await attachNBits(checkpoint, headName, headWeight);
      const head = await track(session(lmHeadGraph(headWeight, V, d)));
      if (nbits > 0) log(`backend onnx: ${nbits} INT4 weights run through MatMulNBits`);
      return new OnnxBackend(config, reopen, provider, embed, finalNorm, head, layers);
    } catch (e) {
      await Promise.all(sessions.map((s) => s.release()));
      throw e;
    }
  }

  async embed(ids: Int32Array): Promise<ort.Tensor> {
    const V = this.config.vocabSize;
    const feed = new BigInt64Array(ids.length);
    ids.forEach((id, t) => {
      if (!Number.isInteger(id) || id < 0 || id >= V) {
        throw new UserError(`token id ${id} at position ${t} is outside the model's vocabulary [0, ${V}); the input ids do not belong to this model.`);
      }
      feed[t] = BigInt(id);
    });
    return (await this.embedSession.run({ ids: new ort.Tensor('int64', feed, [ids.length]) })).y;
  }

  rows(x: ort.Tensor): number {
    return x.dims[0];
  }

  toHost(x: ort.Tensor): Float32Array {
    return (x.data as Float32Array).slice();
  }

  addInPlace(h: ort.Tensor, x: ort.Tensor): void {
    const a = h.data as Float32Array;
    const b = x.data as Float32Array;
    if (a.length !== b.length) throw new Error(`addInPlace: ${a.length} vs ${b.length} values`);
    for (let i = 0; i < a.length; i++) a[i] += b[i];
  }

  async rmsnorm(site: NormSite, x: ort.Tensor): Promise<ort.Tensor> {
    const s = site.which === 'final' ? this.finalNorm : site.which === 'input' ? this.layer(site.layer).inputNorm : this.layer(site.layer).postNorm;
    return (await s.run({ x })).y;
  }

  async kdaPrefill(layer: number, x: ort.Tensor, state: KdaLayerState, chunk: number): Promise<ort.Tensor> {
    return this.kda(await this.kdaPrefillSession(layer, chunk), x, state);
  }

  kdaDecode(layer: number, x: ort.Tensor, states: readonly KdaLayerState[]): Promise<ort.Tensor> {
    const session = this.layer(layer).decode;
    return this.perSequence(x, states, (row, state) => this.kda(session, row, state));
  }

  mlaPrefill(layer: number, x: ort.Tensor, state: MlaLayerState): Promise<ort.Tensor> {
    const s = this.layer(layer).prefill.get(0);
    if (!s) throw new Error(`layer ${layer} is not an MLA layer`);
    return this.mla(s, x, state);
  }

  mlaDecode(layer: number, x: ort.Tensor, states: readonly MlaLayerState[]): Promise<ort.Tensor> {
    const session = this.layer(layer).decode;
    return this.perSequence(x, states, (row, state) => this.mla(session, row, state));
  }

  async moe(layer: number, x: ort.Tensor, capture?: Capture): Promise<ort.Tensor> {
    if (this.config.layers[layer]?.ffn !== 'moe') throw new Error(`layer ${layer} has no MoE block`);
    const out = await this.layer(layer).ffn.run({ x });
    if (capture) {
      capture(`router_logits.${layer}`, out.logits.data as Float32Array);
      capture(`router_idx.${layer}`, Float32Array.from(out.idx.data as BigInt64Array, (v) => Number(v)));
      capture(`router_w.${layer}`, out.weight.data as Float32Array);
    }
    return out.y;
  }

  async mlp(layer: number, x: ort.Tensor): Promise<ort.Tensor> {
    if (this.config.layers[layer]?.ffn !== 'dense') throw new Error(`layer ${layer} has no dense MLP`);
    return (await this.layer(layer).ffn.run({ x })).y;
  }

  async lmHead(x: ort.Tensor, rows: 'all' | 'last'): Promise<Float32Array> {
    const d = this.config.hiddenSize;
    const T = x.dims[0];
    const input = rows === 'last' && T > 1 ? new ort.Tensor('float32', (x.data as Float32Array).slice((T - 1) * d, T * d), [1, d]) : x;
    return (await this.head.run({ x: input })).y.data as Float32Array;
  }

  // KDA runs on the neutral arrays directly and every MLA row is appended to the host cache as it
  // is made: there is nothing to sync. A restored cache's rows are copied for the sessions on first use.
  importState(): void {}
  exportState(): void {}

  /**
   * `dst` (fresh neutral arrays) continues the first dst.length tokens of `src`: KDA states copied
   * (unless only the 'latent' parts are asked for), each MLA layer's host cache forked (full pages
   * shared) and its session rows shared read-only. A fork of a state that is itself a fork shares
   * the same prefix and copies only the rows its source appended after its own fork. Time and
   * memory do not grow with the shared context.
   */
  forkState(src: SequenceState, dst: SequenceState, parts: 'all' | 'latent' = 'all'): void {
    const n = dst.length;
    if (n > src.length) throw new Error(`forkState: ${n} rows wanted from a state of ${src.length}`);
    src.layers.forEach((ls, i) => {
      const to = dst.layers[i];
      if (ls.kind === 'kda' && to.kind === 'kda') {
        if (parts === 'latent') return;
        to.conv.set(ls.conv);
        to.S.set(ls.S);
      } else if (ls.kind === 'mla' && to.kind === 'mla') {
        const from = this.mlaRows(ls.cache);
        to.cache = ls.cache.prefix(n);
        this.latents.set(to.cache, forkRows(from, n, ls.cache.width));
      } else {
        throw new Error(`forkState: layer ${i} kinds differ`);
      }
    });
  }

  /** Drops the session rows of `state` now; rows a fork of it shares stay while that fork lives. */
  releaseState(state: SequenceState): void {
    for (const ls of state.layers) if (ls.kind === 'mla') this.latents.delete(ls.cache);
  }

  /**
   * Bytes of the arrays this backend computes on for `state`: `shared` are read from the state it
   * was forked from, `private` belong to this state alone (own rows with their room, KDA states).
   */
  stateBytes(state: SequenceState): { shared: number; private: number } {
    let shared = 0;
    let own = 0;
    for (const ls of state.layers) {
      if (ls.kind === 'kda') {
        own += ls.conv.byteLength + ls.S.byteLength;
      } else {
        const rows = this.mlaRows(ls.cache);
        shared += rows.shared.byteLength;
        own += rows.own.byteLength;
      }
    }
    return { shared, private: own };
  }

  async dispose(): Promise<void> {
    const all = [this.embedSession, this.finalNorm, this.head, ...this.layers.flatMap((l) => [l.inputNorm, l.postNorm, l.decode, l.ffn, ...l.prefill.values()])];
    await Promise.all(all.map((s) => s.release()));
  }

  private layer(i: number): LayerSessions {
    const l = this.layers[i];
    if (!l) throw new Error(`no layer ${i}`);
    return l;
  }

  private async kda(session: Session, x: ort.Tensor, state: KdaLayerState): Promise<ort.Tensor> {
    const { numHeads: H, headDim: K, convKernel: W } = this.config.kda;
    const out = await session.run({
      x,
      conv: new ort.Tensor('float32', state.conv, [3 * H * K, W - 1]),
      S: new ort.Tensor('float32', state.S, [H, K, K]),
    });
    state.conv.set(out.conv_out.data as Float32Array);
    state.S.set(out.S_out.data as Float32Array);
    return out.y;
  }

  private async mla(session: Session, x: ort.Tensor, state: MlaLayerState): Promise<ort.Tensor> {
    const w = state.cache.width;
    const c = this.mlaRows(state.cache);
    const out = await session.run({
      x,
      shared: new ort.Tensor('float32', c.shared, [c.shared.length / w, w]),
      own: new ort.Tensor('float32', c.own.subarray(0, c.ownLength * w), [c.ownLength, w]),
    });
    const rows = out.rows.data as Float32Array;
    state.cache.append(rows, x.dims[0]);
    appendOwn(c, rows, x.dims[0], w);
    return out.y;
  }

  /**
   * A decode step of a batch, one sequence after another (the decode graphs take one token and
   * one state): row i of x belongs to states[i].
   */
  private async perSequence<S>(x: ort.Tensor, states: readonly S[], step: (row: ort.Tensor, state: S) => Promise<ort.Tensor>): Promise<ort.Tensor> {
    const B = x.dims[0];
    if (states.length !== B) throw new Error(`decode: ${B} rows but ${states.length} sequence states`);
    if (B === 1) return step(x, states[0]);
    const d = this.config.hiddenSize;
    const data = x.data as Float32Array;
    const out = new Float32Array(B * d);
    for (const [i, state] of states.entries()) {
      const y = await step(new ort.Tensor('float32', data.slice(i * d, (i + 1) * d), [1, d]), state);
      out.set(y.data as Float32Array, i * d);
    }
    return new ort.Tensor('float32', out, [B, d]);
  }

  /**
   * The session rows of a latent cache, brought up to the host cache's length: a cache the
   * backend has not seen (a new or restored state) or that no longer matches gets its own copy,
   * and rows appended to the host cache since are copied once, so a decode step copies one row.
   */
  private mlaRows(cache: LatentCache): MlaRows {
    const w = cache.width;
    let c = this.latents.get(cache);
    if (!c || c.shared.length / w + c.ownLength > cache.length) {
      c = { shared: new Float32Array(0), own: new Float32Array(Math.max(cache.length, 256) * w), ownLength: 0 };
      this.latents.set(cache, c);
    }
    const have = c.shared.length / w + c.ownLength;
    if (have < cache.length) appendOwn(c, cache.rows(have, cache.length - have), cache.length - have, w);
    return c;
  }

  /** Sessions for a chunk length other than the default are built on first use from the checkpoint. */
  private async kdaPrefillSession(layer: number, chunk: number): Promise<Session> {
    if (!Number.isInteger(chunk) || chunk < 1) throw new Error(`kdaPrefill: chunk must be a positive integer, got ${chunk}`);
    if (this.config.layers[layer]?.attention !== 'kda') throw new Error(`layer ${layer} is not a KDA layer`);
    const sessions = this.layer(layer).prefill;
    const have = sessions.get(chunk);
    if (have) return have;
    const checkpoint = await this.reopen();
    try {
      const w = await readKda(checkpoint, layer);
      await attachNBits(checkpoint, kdaNames(layer), w);
      const made = await createSession(kdaPrefillGraph(this.config, w, chunk), this.provider);
      sessions.set(chunk, made);
      return made;
    } finally {
      await checkpoint.close();
    }
  }
}

/** Appends n rows of width w to a state's own rows, doubling their buffer when it is full. */
function appendOwn(c: MlaRows, rows: Float32Array, n: number, w: number): void {
  const need = (c.ownLength + n) * w;
  if (c.own.length < need) {
    const grown = new Float32Array(Math.max(need, c.own.length * 2));
    grown.set(c.own.subarray(0, c.ownLength * w));
    c.own = grown;
  }
  c.own.set(rows.subarray(0, n * w), c.ownLength * w);
  c.ownLength += n;
}

/** Session rows for a fork of the first n rows of `from`: the longest prefix that lies in one array is shared, the rest copied. */
function forkRows(from: MlaRows, n: number, w: number): MlaRows {
  const sharedRows = from.shared.length / w;
  if (sharedRows === 0 || n <= sharedRows) {
    const source = sharedRows === 0 ? from.own : from.shared;
    return { shared: source.subarray(0, n * w), own: new Float32Array(FORK_ROOM * w), ownLength: 0 };
  }
  const ownLength = n - sharedRows;
  const own = new Float32Array(Math.max(ownLength, FORK_ROOM) * w);
  own.set(from.own.subarray(0, ownLength * w));
  return { shared: from.shared, own, ownLength };
}
