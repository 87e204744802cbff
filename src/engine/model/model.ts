/**
 * The Kimi Linear decoder on top of a Backend: embeddings, pre-norm blocks (KDA or MLA attention,
 * dense MLP or MoE), final norm, lm_head. Prefill and decode are separate paths: prefill runs the
 * chunkwise KDA form and up-projected MLA; decode runs the KDA recurrence and absorbed MLA.
 * Both advance a SequenceState, so a long input can be fed in slices and resumed from any state.
 */
import { UserError } from '../../common/errors';
import type { BackendName } from '../api';
import type { Backend, Capture, NormSite } from '../backends/backend';
import { CudaBackend } from '../backends/cuda/backend';
import { loadCudaBackend } from '../backends/cuda/loader';
import { loadOnnxBackend } from '../backends/onnx/load';
import type { MemoryBudget, QuantizationChoice } from '../plan/memory-plan';
import { ReferenceBackend } from '../reference/backend';
import { LatentCache } from '../state/latent-cache';
import { pickToken, type TokenPick } from '../sampler';
import type { KdaLayerState, LayerState, MlaLayerState, SequenceState } from '../state/types';
import type { LatentDtype, LatentReader } from '../state/state-file';
import { latentF32, type LatentRows } from '../state/latent-rows';
import { Checkpoint } from './checkpoint';
import { loadConfig, loadConfigFile, type KimiConfig } from './config';
import { DummyWeights } from './dummy-weights';
import type { WeightSource } from './weight-source';
import { quantizeAtLoad, weightQuantization } from './quant/at-load';

export interface PrefillOptions {
  /** Which logits to return: every position [T, vocab], the last [vocab], or none (empty). Default 'last'. */
  logits?: 'all' | 'last' | 'none';
  /** KDA chunk length of the chunkwise-parallel form. Default 64, as fla and transformers use. */
  chunk?: number;
  /**
   * Tokens pushed through all layers at once. Longer inputs are processed in slices of this
   * size, so activation memory does not grow with the input. Default 1024.
   */
  slice?: number;
  /**
   * Receives intermediate tensors: `embed`, `attn_out.<i>`, `mlp_out.<i>`, `hidden.<i>`,
   * `final_norm`, and for MoE layers `router_logits.<i>`, `router_idx.<i>`, `router_w.<i>`.
   * Called once per slice.
   */
  capture?: Capture;
}

/** Weights generated from a config and a seed instead of read from a checkpoint (dummy-weights.ts). */
export interface DummySpec {
  /** A config.json, e.g. assets/configs/kimi-linear-48b-a3b-instruct.json. */
  configFile: string;
  seed: number;
}

export interface LoadOptions {
  backend?: BackendName;
  /** Load dummy weights for this config instead of the checkpoint in the model folder. */
  dummy?: DummySpec;
  /** Where the backend choice of 'auto' is reported. Default: stderr. */
  log?: (line: string) => void;
  /** Context budget, forks, GPU memory cap and quantization the CUDA backend plans memory for. */
  memory?: MemoryBudget;
  /**
   * Quantize full-precision Linear weights at load. The CUDA backend keeps them packed and resolves
   * 'auto' by its memory plan; the reference and onnx backends quantize, then dequantize, and take
   * 'auto' as 'none' (their memory is not planned). Default 'none'.
   */
  quantization?: QuantizationChoice;
}

export const KDA_CHUNK = 64;
const DEFAULT_SLICE = 1024;
const INGEST_SLICE = 512;

export class Model {
  constructor(
    readonly config: KimiConfig,
    readonly backend: Backend,
    /** Folder the model was loaded from. */
    readonly dir: string,
    /** How the loaded weights are quantized (weightQuantization): part of every state key. */
    readonly weights = 'none',
  ) {}

  /** The state of an empty sequence. */
  newState(): SequenceState {
    const state = this.blankState(0);
    this.backend.importState(state);
    return state;
  }

  /**
   * An independent continuation of `s`. Where the backend keeps its own copies (cuda) it forks them
   * in place, sharing the MLA rows; otherwise the KDA state is copied and the host MLA cache shares
   * its full pages. Neither copies the repository's MLA cache.
   */
  forkState(s: SequenceState): SequenceState {
    const b = this.backend;
    if (b.forkState) {
      const fork = this.blankState(s.length);
      b.forkState(s, fork);
      return fork;
    }
    b.exportState(s);
    const fork: SequenceState = {
      length: s.length,
      layers: s.layers.map((l) => (l.kind === 'kda' ? { kind: 'kda', conv: l.conv.slice(), S: l.S.slice() } : { kind: 'mla', cache: l.cache.fork() })),
    };
    b.importState(fork);
    return fork;
  }

  /**
   * A state of `length` tokens made of `kda`'s KDA parts (a checkpoint's, read from disk) and the
   * first `length` MLA rows of `s`, shared rather than copied: how an ingest resumes after an edit
   * from the repository state it still holds, without reading the cache back from disk.
   */
  forkPrefix(s: SequenceState, length: number, kda: SequenceState): SequenceState {
    if (length > s.length) throw new Error(`forkPrefix: ${length} tokens wanted from a state of ${s.length}`);
    const b = this.backend;
    const out = this.blankState(length);
    out.layers = out.layers.map((l, i) => {
      const k = kda.layers[i];
      if (l.kind !== k.kind) throw new Error(`forkPrefix: layer ${i} kinds differ`);
      return l.kind === 'kda' ? k : l;
    });
    if (b.forkState) b.forkState(s, out, 'latent');
    else {
      b.exportState(s);
      out.layers = out.layers.map((l, i) => {
        const from = s.layers[i];
        return l.kind === 'mla' && from.kind === 'mla' ? { kind: 'mla', cache: from.cache.prefix(length) } : l;
      });
    }
    b.importState(out);
    return out;
  }

  /** Frees a state's device copy now (where the backend has one); the state must not be used again. */
  releaseState(s: SequenceState): void {
    this.backend.releaseState?.(s);
  }

  /** Rows [from, from + count) of MLA layer `ls` of a state, wherever the backend keeps them. */
  latentRows(s: SequenceState, ls: MlaLayerState, from: number, count: number): Float32Array {
    const b = this.backend;
    if (b.latentRows) return b.latentRows(ls, from, count);
    b.exportState(s);
    return ls.cache.rows(from, count);
  }

  /** Appends restored MLA rows (fp32, or bf16 bits) to layer `ls` of a fresh state, on the device where the backend keeps one. */
  appendLatentRows(ls: MlaLayerState, rows: LatentRows, count: number): void {
    if (this.backend.appendLatentRows) this.backend.appendLatentRows(ls, rows, count);
    else ls.cache.append(latentF32(rows), count);
  }

  /** Neutral arrays of the right shapes for a state of `length` tokens, not known to the backend. */
  private blankState(length: number): SequenceState {
    const { kda, mla } = this.config;
    const layers: LayerState[] = this.config.layers.map((l) =>
      l.attention === 'kda'
        ? {
            kind: 'kda',
            conv: new Float32Array(3 * kda.numHeads * kda.headDim * (kda.convKernel - 1)),
            S: new Float32Array(kda.numHeads * kda.headDim * kda.headDim),
          }
        : { kind: 'mla', cache: new LatentCache(mla.kvLoraRank + mla.qkRopeHeadDim) },
    );
    return { length, layers };
  }

  /**
   * Makes the KDA arrays of `s` current before persisting it; MLA rows are then read with
   * latentRows (a device backend keeps them where they are).
   */
  syncState(s: SequenceState): void {
    this.backend.exportState(s, 'recurrent');
  }

  /**
   * How `s`'s MLA rows are best saved: bf16 where the backend keeps them so (the CUDA backend in
   * tensor-core mode), so the file holds exactly those values in half the bytes; else fp32.
   */
  latentDtype(s: SequenceState): LatentDtype {
    const b = this.backend;
    const mla = s.layers.find((l): l is MlaLayerState => l.kind === 'mla');
    return mla && b.latentDtype ? b.latentDtype(mla) : 'f32';
  }

  /** Reads MLA rows of `s` for writeStateFile, block by block: bf16 bits where the backend keeps them so. */
  latentReader(s: SequenceState): LatentReader {
    return (layer, from, count) => {
      const ls = s.layers[layer];
      if (ls.kind !== 'mla') throw new Error(`layer ${layer} has no MLA cache`);
      return this.backend.latentBits?.(ls, from, count) ?? this.latentRows(s, ls, from, count);
    };
  }

  /** Runs `ids` after whatever `state` already holds; advances `state`. */
  async prefill(state: SequenceState, ids: Int32Array, opts: PrefillOptions = {}): Promise<Float32Array> {
    const want = opts.logits ?? 'last';
    const chunk = opts.chunk ?? KDA_CHUNK;
    const slice = opts.slice ?? DEFAULT_SLICE;
    if (!Number.isInteger(slice) || slice < 1) throw new Error(`prefill: slice must be a positive integer, got ${slice}`);
    const T = ids.length;
    if (T === 0) {
      if (want === 'last') throw new Error('prefill: no tokens, so there are no last logits');
      return new Float32Array(0);
    }
    const V = this.config.vocabSize;
    const all = want === 'all' ? new Float32Array(T * V) : null;
    let last: Float32Array = new Float32Array(0);
    for (let t0 = 0; t0 < T; t0 += slice) {
      const part = ids.subarray(t0, Math.min(T, t0 + slice));
      const isLast = t0 + part.length === T;
      const rows = want === 'all' ? 'all' : want === 'last' && isLast ? 'last' : null;
      const logits = await this.forward([state], part, 'prefill', chunk, rows, opts.capture);
      if (all && logits) all.set(logits, t0 * V);
      else if (logits) last = logits;
    }
    return all ?? last;
  }

  /** Tokens per prefill call while ingesting (see Backend.prefillTokens). */
  get prefillTokens(): number {
    return this.backend.prefillTokens ?? INGEST_SLICE;
  }

  /**
   * One token with the recurrent KDA form and absorbed MLA; returns its logits [vocab]. Captured
   * tensors need every call made, so such a step never takes the backend's recorded form.
   */
  async decode(state: SequenceState, id: number, capture?: Capture): Promise<Float32Array> {
    if (!capture) return this.backend.lmHead(await this.decodeHidden([state], Int32Array.of(id)), 'last');
    const logits = await this.forward([state], Int32Array.of(id), 'decode', KDA_CHUNK, 'last', capture);
    if (!logits) throw new Error('decode produced no logits');
    return logits;
  }

  /**
   * One decode step of several sequences together: ids[i] is the next token of states[i]. Returns
   * the logits [B, vocab], row i for sequence i; advances every state by one token.
   */
  async decodeBatch(states: readonly SequenceState[], ids: Int32Array): Promise<Float32Array> {
    const normed = await this.decodeHidden(states, ids);
    return this.backend.lmHead(normed, 'all');
  }

  /**
   * decodeBatch followed by one pick per row (picks[i] for sequence i): on the device when the
   * backend can sample there, so only the token ids come back; else from the host's logits.
   */
  async decodeAndPick(states: readonly SequenceState[], ids: Int32Array, picks: readonly TokenPick[]): Promise<Int32Array> {
    if (picks.length !== states.length) throw new Error(`decodeAndPick: ${states.length} sequences but ${picks.length} picks`);
    const normed = await this.decodeHidden(states, ids);
    const b = this.backend;
    if (b.sampleRows) return b.sampleRows(normed, picks);
    const logits = await b.lmHead(normed, 'all');
    const V = this.config.vocabSize;
    return Int32Array.from(picks, (pick, i) => pickToken(logits.subarray(i * V, (i + 1) * V), pick));
  }

  async dispose(): Promise<void> {
    await this.backend.dispose();
  }

  /** The final-normed hidden rows of one decode step of `states`. */
  private async decodeHidden(states: readonly SequenceState[], ids: Int32Array): Promise<unknown> {
    if (states.length === 0) throw new Error('decode: no sequences');
    if (ids.length !== states.length) throw new Error(`decode: ${states.length} sequences but ${ids.length} token ids`);
    if (new Set(states).size !== states.length) throw new Error('decode: the same sequence state appears twice in one batch');
    const b = this.backend;
    const pass = () => this.layers(states, ids, 'decode', KDA_CHUNK);
    const normed = await (b.decodeLayers ? b.decodeLayers(states, ids, pass) : pass());
    this.advance(states, ids, 'decode');
    return normed;
  }

  private async forward(
    states: readonly SequenceState[],
    ids: Int32Array,
    mode: 'prefill' | 'decode',
    chunk: number,
    rows: 'all' | 'last' | null,
    capture?: Capture,
  ): Promise<Float32Array | null> {
    const b = this.backend;
    const normed = await this.layers(states, ids, mode, chunk, capture);
    this.advance(states, ids, mode);
    capture?.('final_norm', b.toHost(normed));
    return rows === null ? null : b.lmHead(normed, rows);
  }

  /** h ← h + x, then the norm at `site` of the new h: in one step where the backend has one. */
  private async addNorm(h: unknown, x: unknown, site: NormSite): Promise<unknown> {
    const b = this.backend;
    if (b.addRmsnorm) return b.addRmsnorm(h, x, site);
    await b.addInPlace(h, x);
    return b.rmsnorm(site, h);
  }

  /**
   * Every layer over `ids`, returning the final-normed hidden rows. Prefill: all ids belong to
   * states[0]. Decode: ids[i] is one token of states[i]. The caller advances the lengths (advance).
   */
  private async layers(states: readonly SequenceState[], ids: Int32Array, mode: 'prefill' | 'decode', chunk: number, capture?: Capture): Promise<unknown> {
    const b = this.backend;
    for (const s of states) {
      if (s.layers.length !== this.config.numLayers) throw new Error(`state has ${s.layers.length} layers, the model ${this.config.numLayers}`);
    }
    const h = await b.embed(ids);
    capture?.('embed', b.toHost(h));
    const L = this.config.layers.length;
    let x = await b.rmsnorm({ which: 'input', layer: 0 }, h);
    for (const [i, spec] of this.config.layers.entries()) {
      let attn;
      if (spec.attention === 'kda') {
        const ls = states.map((s) => s.layers[i]).filter((l): l is KdaLayerState => l.kind === 'kda');
        if (ls.length !== states.length) throw new Error(`state layer ${i} is mla, the model's is kda`);
        attn = await (mode === 'decode' ? b.kdaDecode(i, x, ls) : b.kdaPrefill(i, x, ls[0], chunk));
      } else {
        const ls = states.map((s) => s.layers[i]).filter((l): l is MlaLayerState => l.kind === 'mla');
        if (ls.length !== states.length) throw new Error(`state layer ${i} is kda, the model's is mla`);
        attn = await (mode === 'decode' ? b.mlaDecode(i, x, ls) : b.mlaPrefill(i, x, ls[0]));
      }
      capture?.(`attn_out.${i}`, b.toHost(attn));
      let ffn;
      if (spec.ffn === 'moe' && b.addNormMoe) {
        ffn = await b.addNormMoe(i, h, attn, capture);
      } else {
        const y = await this.addNorm(h, attn, { which: 'post_attention', layer: i });
        ffn = await (spec.ffn === 'moe' ? b.moe(i, y, capture) : b.mlp(i, y));
      }
      capture?.(`mlp_out.${i}`, b.toHost(ffn));
      x = await this.addNorm(h, ffn, i + 1 < L ? { which: 'input', layer: i + 1 } : { which: 'final' });
      capture?.(`hidden.${i}`, b.toHost(h));
    }
    return x;
  }

  /** What a pass of `layers` adds to the states' lengths. */
  private advance(states: readonly SequenceState[], ids: Int32Array, mode: 'prefill' | 'decode'): void {
    if (mode === 'decode') for (const s of states) s.length += 1;
    else states[0].length += ids.length;
  }
}

/**
 * Reads config.json and the checkpoint in `dir` (or generates dummy weights for opts.dummy's config;
 * `dir` then only names the model) and puts the weights on a backend.
 */
export async function loadModel(dir: string, opts: LoadOptions = {}): Promise<Model> {
  const dummy = opts.dummy;
  const config = dummy ? await loadConfigFile(dummy.configFile) : await loadConfig(dir);
  const requested = opts.backend ?? 'auto';
  const log = opts.log ?? ((line: string) => void process.stderr.write(`${line}\n`));
  const quantization = opts.quantization ?? 'none';
  const raw = async (): Promise<WeightSource> => (dummy ? new DummyWeights(config, dummy.seed, dummy.configFile) : await Checkpoint.open(dir, config));
  if (requested === 'auto' || requested === 'cuda') {
    const cuda = loadCudaBackend();
    if (cuda.ok) {
      const source = await raw();
      try {
        const backend = await CudaBackend.load(config, source, cuda.native, cuda.devices, { ...opts.memory, quantization, log });
        if (requested === 'auto') log(`backend auto: using cuda on ${backend.device}`);
        return new Model(config, backend, dir, backend.weights);
      } catch (e) {
        if (requested === 'cuda') throw e;
        log(`backend auto: the cuda backend failed to load (${e instanceof Error ? e.message : String(e)}); trying onnx`);
      } finally {
        await source.close();
      }
    } else if (requested === 'cuda') {
      throw new UserError(cuda.reason);
    } else {
      log(`backend auto: ${cuda.reason}; trying onnx`);
    }
  }
  const atLoad = quantization === 'auto' ? 'none' : quantization;
  const open = async (): Promise<WeightSource> => await quantizeAtLoad(await raw(), config, atLoad);
  const checkpoint = await open();
  const weights = weightQuantization(checkpoint);
  try {
    if (requested === 'auto' || requested === 'onnx') {
      try {
        const backend = await loadOnnxBackend(config, checkpoint, log, open);
        if (requested === 'auto') log(`backend auto: using onnx on ${backend.device}`);
        return new Model(config, backend, dir, weights);
      } catch (e) {
        if (requested === 'onnx') throw e;
        log(`backend auto: the onnx backend failed to load (${e instanceof Error ? e.message : String(e)}); using the reference backend`);
      }
    }
    return new Model(config, await ReferenceBackend.load(config, checkpoint), dir, weights);
  } finally {
    await checkpoint.close();
  }
}
