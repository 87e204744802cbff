/**
 * The CUDA backend: every layer of the model runs on the GPU through native/ (klc_native.node).
 * Weights are uploaded once; activations stay on the GPU as fp32 rows and only logits and
 * captured tensors come back. Each sequence state has a resident device copy (KDA S and conv
 * tails, MLA latent cache) kept beside the neutral arrays and synced by importState/exportState.
 */
import { UserError } from '../../../common/errors';
import type { KimiConfig } from '../../model/config';
import type { WeightSource } from '../../model/weight-source';
import { EMBED } from '../../model/weight-names';
import { fromBf16 } from '../../model/bf16';
import type { KdaLayerState, MlaLayerState, SequenceState } from '../../state/types';
import { latentBf16, latentF32, type LatentRows } from '../../state/latent-rows';
import type { Backend, Capture, NormSite } from '../backend';
import type { TokenPick } from '../../sampler';
import { Arena } from './arena';
import { DecodeGraphs } from './decode-graphs';
import { decodeFusions } from './decode-fusions';
import { deviceWeightBytes, isQuant, uploadWeights, type AtLoad, type DeviceWeightBytes, type DeviceWeights, type KdaDeviceWeights, type LayerDeviceWeights, type Mat, type MlaDeviceWeights, type MoeDeviceWeights } from './device-weights';
import { HostExperts } from './host-experts';
import type { DevicePtr, HostPtr, NativeContext, NativeDeviceInfo, NativeKlc, NativeWq, NativeWqJob, VbufHandle } from './loader';
import { gb, gib } from '../../../common/sizes';
import { LM_HEAD_ROWS, layerWorkspaceBytes } from '../../plan/workspace';
import { offloadStagingBytes, type MemoryBudget, type MemoryPlan } from '../../plan/memory-plan';
import { SAMPLE_ROWS } from '../../plan/workspace';
import { CUDA_SCHEMES, planLoad } from './load-plan';
import { atLoadDescription, atLoadTargets, storedQuantized, weightQuantization } from '../../model/quant/at-load';
import { presetScheme, SCHEME_OF } from '../../model/quant/presets';
import type { Quantization } from '../../../common/quantization';

/** Activation rows on the device: fp32 [T, cols]. */
export interface DeviceRows {
  readonly ptr: DevicePtr;
  readonly T: number;
  readonly cols: number;
  /** Arena generation it belongs to; -1 for the hidden-state buffer. */
  readonly generation: number;
}

interface KdaDeviceState {
  kind: 'kda';
  S: DevicePtr;
  conv: DevicePtr;
}

/**
 * An MLA cache on the device: rows of (kv_lora_rank + rope) in a klc_vbuf (forks share its rows),
 * bf16 when it was made in tensor-core mode, fp32 in exact mode (see CudaBackend.cacheBf16).
 */
interface MlaDeviceState {
  kind: 'mla';
  buf: VbufHandle;
  bf16: boolean;
  /** The buffer's base address now (it may move when the buffer grows). */
  cache: DevicePtr;
  /** Rows the buffer holds room for. */
  capacity: number;
  length: number;
}

type DeviceLayerState = KdaDeviceState | MlaDeviceState;

/**
 * The memory budget (see MemoryBudget): the context the plan reserves MLA latents for (default the
 * config's maximum, up to 1,048,576 tokens, capped by what fits), concurrent forks (default 8),
 * the GPU memory the plan may use (never more than is free) and the quantization: none, fp8, int8
 * or int4 at load, auto the least of them that fits; a checkpoint stored quantized runs as stored.
 */
export interface CudaLoadOptions extends MemoryBudget {
  device?: number;
  /**
   * bf16 activations into cuBLAS tensor-core GEMMs. Default: on for bf16 checkpoints unless
   * KLC_CUDA_EXACT=1 (exact fp32 activations, as the reference backend computes); fp32
   * checkpoints always run exactly.
   */
  tensorCores?: boolean;
  /** Where the planned context is reported. Default: stderr. */
  log?: (line: string) => void;
}

const F32 = 4;
/** KLC_CACHE_F32 and KLC_CACHE_BF16 of klc_native.h. */
const CACHE_F32 = 0;
const CACHE_BF16 = 1;
/** The chunk length the native chunked KDA kernel is built for. */
const NATIVE_KDA_CHUNK = 64;
/** Rows klc_wq_gemv takes: more go through dequantization and a GEMM. */
const WQ_GEMV_ROWS = 8;
/** The most rows of a MoE block with its shared expert, or of the router in one launch, in one call (KLC_MOE_BLOCK_MAX_ROWS). */
const MOE_BLOCK_ROWS = 8;
/** The most experts klc_moe_router routes. */
const ROUTER_MAX_EXPERTS = 256;
/** The most matrices of one klc_wq_gemv_many launch (KLC_WQ_JOBS_MAX). */
const WQ_JOBS_MAX = 4;
/** KLC_MAX_DECODE_BATCH of klc_native.h: sequences per batched decode launch. */
const MAX_DECODE_BATCH = 64;
/**
 * A recorded decode step plans its MLA key splits for the lengths up to the next multiple of this,
 * and is recorded again past it (one plain step, one recorded, per this many tokens).
 */
const GRAPH_KEYS = 256;

/** What a decode step takes from device memory: its token ids and each sequence's MLA position. */
interface DecodeStep {
  readonly B: number;
  readonly ids: DevicePtr;
  readonly positions: DevicePtr;
  /** The positions as uploaded: each MLA layer checks that its caches agree. */
  readonly hostPositions: Int32Array;
  /** Keys the MLA decode's split plan is made for (see GRAPH_KEYS). */
  readonly capacity: number;
}

export class CudaBackend implements Backend<DeviceRows> {
  readonly name = 'cuda';
  readonly device: string;
  private engineText: string;
  private readonly arena: Arena;
  private hidden: DevicePtr = 0n;
  /** The normed rows a layer starts from, when addRmsnorm makes them (outside the arena: see there). */
  private normed: DevicePtr = 0n;
  private hiddenBytes = 0;
  private ids: DevicePtr = 0n;
  private idsBytes = 0;
  private sampleWs: DevicePtr = 0n;
  private sampleBytes = 0;
  /** Token ids [MAX_DECODE_BATCH] then MLA positions [MAX_DECODE_BATCH], int32: see DecodeStep. */
  private stepBuf: DevicePtr = 0n;
  /** The decode step in progress (decodeLayers), if any. */
  private step: DecodeStep | null = null;
  private readonly graphs: DecodeGraphs<DeviceRows>;
  private readonly fused = decodeFusions(process.env.KLC_FUSED_DECODE);
  private readonly states = new WeakMap<object, DeviceLayerState>();
  private readonly live = new Set<DevicePtr>();
  private readonly liveBufs = new Set<VbufHandle>();
  private readonly finalizer = new FinalizationRegistry<DevicePtr[]>((ptrs) => this.release(ptrs));
  private readonly cacheFinalizer = new FinalizationRegistry<MlaDeviceState>((dev) => this.freeBuf(dev.buf));
  private disposed = false;
  /**
   * The type of MLA caches made from now on: bf16 in tensor-core mode (half the memory and decode
   * reads; the attention rounds latents to bf16 there anyway), fp32 in exact mode so that it still
   * equals the reference backend. A cache keeps its type for life (forks inherit it).
   */
  private cacheBf16: boolean;

  private constructor(
    readonly config: KimiConfig,
    private readonly native: NativeKlc,
    private readonly ctx: NativeContext,
    private readonly w: DeviceWeights,
    private readonly weightBuffers: DevicePtr[],
    info: NativeDeviceInfo,
    private readonly deviceIndex: number,
    engine: string,
    readonly prefillTokens: number,
    /** How the uploaded weights are quantized (weightQuantization): part of every state key. */
    readonly weights: string,
    /** Where quantized weights are dequantized for prefill GEMMs (deviceWeightBytes' dense bytes); 0n without any. */
    private readonly dense: DevicePtr,
    private readonly denseF32: boolean,
    tensorCores: boolean,
    /** The offloaded experts' pinned host buffers and their runner; none without offload. */
    private readonly hostBuffers: HostPtr[],
    private readonly host: HostExperts | null,
    /** The memory plan this load made: what it placed where. */
    readonly plan: MemoryPlan,
  ) {
    this.cacheBf16 = tensorCores;
    this.device = `GPU ${deviceIndex}: ${info.name} (compute ${info.major}.${info.minor}, ${gib(info.totalBytes)})`;
    this.engineText = engine;
    this.arena = new Arena(native, ctx);
    // Offloaded experts run on the CPU between launches, which a graph cannot hold.
    this.graphs = new DecodeGraphs(native, ctx, graphsByDefault() && !host, (line) => void process.stderr.write(`${line}\n`));
  }

  /**
   * Plans memory, creates a context on the device and uploads the weights. Throws a UserError
   * saying what does not fit, or why the device could not be used.
   */
  static async load(config: KimiConfig, checkpoint: WeightSource, native: NativeKlc, devices: NativeDeviceInfo[], opts: CudaLoadOptions = {}): Promise<CudaBackend> {
    const index = opts.device ?? 0;
    const info = devices[index];
    if (!info) throw new UserError(`CUDA device ${index} does not exist (${devices.length} found).`);
    if (config.moe.numExpertGroup > 1) {
      throw new UserError(`${checkpoint.dir}: group-limited MoE routing (num_expert_group ${config.moe.numExpertGroup}) is not supported by the CUDA backend (the published Kimi Linear config does not use it); use --backend reference.`, checkpoint.dir);
    }
    if (config.kda.headDim > 128 || config.mla.kvLoraRank > 512 || config.moe.topK > 16 || config.moe.numExperts > 1024 || config.kda.convKernel > 8) {
      throw new UserError(`${checkpoint.dir}: the CUDA kernels support KDA head_dim ≤ 128, kv_lora_rank ≤ 512, up to 1024 experts with top-k ≤ 16 and conv kernels ≤ 8; this config is larger. Use --backend reference.`, checkpoint.dir);
    }
    let ctx: NativeContext;
    try {
      ctx = native.create(index);
    } catch (e) {
      throw new UserError(`CUDA backend: ${e instanceof Error ? e.message : String(e)}`);
    }
    let owned: DevicePtr[] = [];
    let ownedHost: HostPtr[] = [];
    let host: HostExperts | null = null;
    try {
      const matrix = checkpoint.info(EMBED).dtype === 'F32' ? 4 : 2;
      const engine = chooseEngine(native, ctx, matrix === 2 && (opts.tensorCores ?? process.env.KLC_CUDA_EXACT !== '1'));
      // Quantized weights are dequantized for prefill GEMMs into bf16 for tensor cores, else into fp32 (exact).
      const denseF32 = !engine.tensorCores;
      const stored = storedQuantized(checkpoint);
      const schemes: readonly Quantization[] = stored ? ['none'] : CUDA_SCHEMES;
      const planned = new Map<Quantization, DeviceWeightBytes>();
      for (const q of schemes) planned.set(q, await deviceWeightBytes(config, checkpoint, atLoadOf(config, q), denseF32));
      const plan = planLoad(config, opts, {
        free: native.deviceInfo(index).freeBytes,
        matrixBytes: matrix,
        tensorCores: engine.tensorCores,
        sampleScratch: native.sampleWorkspaceBytes(ctx, SAMPLE_ROWS, config.vocabSize) + SAMPLE_ROWS * 4,
        gpuName: info.name,
        dir: checkpoint.dir,
        schemes,
        weights: (q) => {
          const w = planned.get(q);
          if (!w) throw new Error(`no weight bytes for ${q} (planning bug)`);
          return { bytes: w.weights, dense: w.dense };
        },
        quantizedExperts: (q) => planned.get(q)?.quantExperts ?? false,
      });
      const atLoad = atLoadOf(config, plan.quantization);
      if (atLoad) (opts.log ?? ((line: string) => void process.stderr.write(`${line}\n`)))(`cuda: quantizing the weights to ${plan.quantization} at load (${atLoadDescription(plan.quantization)})`);
      const uploaded = await uploadWeights(native, ctx, config, checkpoint, atLoad, plan.offloadedLayers);
      owned = uploaded.owned;
      ownedHost = uploaded.ownedHost;
      const bytes = planned.get(plan.quantization) as DeviceWeightBytes;
      const dense = bytes.dense > 0 ? native.alloc(ctx, bytes.dense) : 0n;
      if (bytes.dense > 0) owned.push(dense);
      if (plan.offloadedLayers.length > 0) {
        host = HostExperts.create(native, ctx, config.hiddenSize, config.moe.topK, offloadStagingBytes(bytes.weights, plan.offloadedLayers));
        (opts.log ?? ((line: string) => void process.stderr.write(`${line}\n`)))(
          `cuda: the routed experts of layers ${plan.offloadedLayers.join(', ')} (${gb(plan.host.experts)}) are in pinned host memory: up to ${host.cpuTokens} tokens run on the CPU (${host.threads} threads), longer slices copy each layer's experts to the GPU`,
        );
      }
      const weights = atLoad ? atLoadDescription(plan.quantization) : weightQuantization(checkpoint);
      return new CudaBackend(config, native, ctx, uploaded.weights, owned, info, index, engine.text, plan.sliceTokens, weights, dense, denseF32, engine.tensorCores, ownedHost, host, plan);
    } catch (e) {
      host?.dispose();
      for (const p of owned) native.free(ctx, p);
      for (const p of ownedHost) native.hostFree(ctx, p);
      native.destroy(ctx);
      if (e instanceof UserError) throw e;
      const code = (e as { code?: string }).code;
      if (code === 'OOM') throw new UserError(`CUDA backend: out of GPU memory while loading ${checkpoint.dir} (${(e as Error).message}).`, checkpoint.dir);
      throw e;
    }
  }

  /** Free and total memory of the backend's GPU now, in bytes. */
  memoryInfo(): { free: number; total: number } {
    const info = this.native.deviceInfo(this.deviceIndex);
    return { free: info.freeBytes, total: info.totalBytes };
  }

  /**
   * Measured device-to-device copy bandwidth (bytes read + written per second) over `mib` MiB: the
   * yardstick of every memory-bound figure (a decode step's floor is the bytes it must read ÷ this).
   */
  measureCopyBandwidth(mib = 1024, reps = 10): number {
    const bytes = mib * 2 ** 20;
    const a = this.native.alloc(this.ctx, bytes);
    const b = this.native.alloc(this.ctx, bytes);
    try {
      this.native.copyDevice(this.ctx, b, a, bytes);
      this.synchronize();
      const t0 = performance.now();
      for (let i = 0; i < reps; i++) this.native.copyDevice(this.ctx, i % 2 ? a : b, i % 2 ? b : a, bytes);
      this.synchronize();
      return (2 * bytes * reps) / ((performance.now() - t0) / 1000);
    } finally {
      this.native.free(this.ctx, a);
      this.native.free(this.ctx, b);
    }
  }

  /**
   * Measured dense GEMM rate (FLOP/s) of klc_linear with bf16 weights in the current mode, at
   * M = N = K = n: the yardstick of compute-bound figures (a prefill's floor is its FLOPs ÷ this).
   */
  measureGemmRate(n = 8192, reps = 5): number {
    const x = this.native.alloc(this.ctx, n * n * F32);
    const w = this.native.alloc(this.ctx, n * n * 2);
    const y = this.native.alloc(this.ctx, n * n * F32);
    try {
      this.native.zero(this.ctx, x, n * n * F32);
      this.native.zero(this.ctx, w, n * n * 2);
      this.native.linear(this.ctx, x, n, w, y, n, n, n, n, 1, 0, 0, 0, 0, 0);
      this.synchronize();
      const t0 = performance.now();
      for (let i = 0; i < reps; i++) this.native.linear(this.ctx, x, n, w, y, n, n, n, n, 1, 0, 0, 0, 0, 0);
      this.synchronize();
      return (2 * n * n * n * reps) / ((performance.now() - t0) / 1000);
    } finally {
      for (const p of [x, w, y]) this.native.free(this.ctx, p);
    }
  }

  /** Waits for the queued GPU work (for timing; results never need it). */
  synchronize(): void {
    this.native.synchronize(this.ctx);
  }

  /**
   * Switches tensor-core mode (see CudaLoadOptions.tensorCores) and returns the engine in words.
   * Its staging memory was planned at load time only if the backend loaded with tensor cores on;
   * MLA caches made after the switch take the new mode's type (fp32 ones twice the planned bytes).
   */
  setTensorCores(on: boolean): string {
    this.engineText = this.native.setTensorCores(this.ctx, on ? 1 : 0);
    this.cacheBf16 = on;
    return this.engineText;
  }

  /** Whether the MLA caches made now are bf16 (tensor-core mode) rather than fp32. */
  get bf16Caches(): boolean {
    return this.cacheBf16;
  }

  /** What runs the matrix products, in words. */
  get engine(): string {
    return this.engineText;
  }

  // --- activations ------------------------------------------------------------------------------

  embed(ids: Int32Array): DeviceRows {
    const d = this.config.hiddenSize;
    const T = ids.length;
    let at: DevicePtr;
    if (this.step) {
      // decodeLayers uploaded and checked them.
      if (T !== this.step.B) throw new Error(`embed: ${T} ids in a decode step of ${this.step.B} sequences`);
      at = this.step.ids;
    } else {
      this.checkIds(ids);
      // Taken after ensureHidden, which may reallocate the id buffer.
      this.ensureHidden(T * d * F32, T * 4);
      at = this.ids;
      this.native.upload(this.ctx, at, ids);
    }
    this.native.embed(this.ctx, this.w.embed.ptr, at, this.hidden, T, d, this.w.embed.f32 ? 1 : 0);
    return { ptr: this.hidden, T, cols: d, generation: -1 };
  }

  private checkIds(ids: Int32Array): void {
    const V = this.config.vocabSize;
    ids.forEach((id, t) => {
      if (!Number.isInteger(id) || id < 0 || id >= V) {
        throw new UserError(`token id ${id} at position ${t} is outside the model's vocabulary [0, ${V}); the input ids do not belong to this model.`);
      }
    });
  }

  /**
   * One decode step of `states` (ids[b] the next token of states[b]): `layers` is the model's pass
   * over this backend's calls; from the second step of a batch on, the pass is recorded once as a
   * CUDA graph and replayed instead of called (see DecodeGraphs). Returns the final-normed rows.
   */
  async decodeLayers(states: readonly SequenceState[], ids: Int32Array, layers: () => Promise<DeviceRows>): Promise<DeviceRows> {
    if (this.step) throw new Error('decodeLayers: a decode step is already in progress');
    if (!this.graphs.enabled) return layers();
    const B = states.length;
    if (B < 1 || B > MAX_DECODE_BATCH || ids.length !== B) throw new Error(`decode: ${B} sequences and ${ids.length} ids (1 to ${MAX_DECODE_BATCH} of each)`);
    this.checkIds(ids);
    // Every device copy exists before anything is recorded (importing one uploads and waits).
    const kda: KdaDeviceState[] = [];
    const mla: MlaDeviceState[] = [];
    const hostPositions = new Int32Array(B);
    for (const [i, spec] of this.config.layers.entries()) {
      states.forEach((s, b) => {
        const ls = s.layers[i];
        if (ls?.kind !== spec.attention) throw new Error(`state layer ${i} is ${ls?.kind ?? 'missing'}, the model's is ${spec.attention}`);
        if (ls.kind === 'kda') kda.push(this.kdaState(ls));
        else {
          const dev = this.mlaState(ls);
          hostPositions[b] = dev.length;
          mla.push(dev);
        }
      });
    }
    const capacity = Math.ceil((Math.max(...hostPositions) + 1) / GRAPH_KEYS) * GRAPH_KEYS;
    for (const dev of mla) this.reserveCache(dev, capacity);
    this.ensureHidden(B * this.config.hiddenSize * F32, B * 4);
    const buf = this.ensureStepBuffer();
    const upload = new Int32Array(2 * MAX_DECODE_BATCH);
    upload.set(ids);
    upload.set(hostPositions, MAX_DECODE_BATCH);
    this.native.upload(this.ctx, buf, upload);
    this.step = { B, ids: buf, positions: buf + BigInt(MAX_DECODE_BATCH * 4), hostPositions, capacity };
    const before = mla.map((dev) => dev.length);
    const key = [
      B, capacity, this.engineText, this.arena.base, this.hidden, this.normed, buf,
      ...kda.map((dev) => `${dev.S}:${dev.conv}`), ...mla.map((dev) => `${dev.cache}${dev.bf16 ? 'b' : 'f'}`),
    ].join(',');
    // A replay does what the pass does on the host: one row more in each MLA cache, and the final
    // norm's arena reset (lm_head and sampling allocate after it).
    const advance = () => {
      for (const dev of mla) dev.length += 1;
      this.arena.reset(this.workspaceFor(B));
    };
    try {
      return await this.graphs.step(B, key, layers, advance, () => mla.forEach((dev, i) => (dev.length = before[i])));
    } finally {
      this.step = null;
    }
  }

  /** Decode steps replayed from a recorded CUDA graph since the backend loaded. */
  get decodeGraphReplays(): number {
    return this.graphs.replays;
  }

  /** Whether decode steps are recorded and replayed as CUDA graphs (never with offloaded experts); returns whether they were. */
  setDecodeGraphs(on: boolean): boolean {
    const was = this.graphs.enabled;
    this.graphs.enabled = on && !this.host;
    return was;
  }

  rows(x: DeviceRows): number {
    return x.T;
  }

  toHost(x: DeviceRows): Float32Array {
    this.check(x);
    const out = new Float32Array(x.T * x.cols);
    this.native.download(this.ctx, x.ptr, out);
    return out;
  }

  addInPlace(h: DeviceRows, x: DeviceRows): void {
    this.check(h);
    this.check(x);
    if (h.T * h.cols !== x.T * x.cols) throw new Error(`addInPlace: ${h.T}×${h.cols} vs ${x.T}×${x.cols}`);
    this.native.add(this.ctx, h.ptr, x.ptr, h.T * h.cols);
  }

  rmsnorm(site: NormSite, x: DeviceRows): DeviceRows {
    this.check(x);
    // A layer's input norm and the final norm begin a new set of activations: see Arena.
    if (site.which !== 'post_attention') this.arena.reset(this.workspaceFor(x.T));
    const d = this.config.hiddenSize;
    const y = this.rowsOf(x.T, d);
    this.native.rmsnorm(this.ctx, x.ptr, d, this.normWeight(site), y.ptr, d, x.T, d, this.config.rmsNormEps);
    return y;
  }

  /**
   * h += x and the norm at `site` of the new h, in one kernel. Where a new set of activations begins
   * (input and final norms), x still lives in the arena generation that ends: the output goes to the
   * normed buffer instead, and the arena is reset once the kernel is queued.
   */
  addRmsnorm(h: DeviceRows, x: DeviceRows, site: NormSite): DeviceRows {
    this.check(h);
    this.check(x);
    if (h.T !== x.T || h.cols !== x.cols) throw new Error(`addRmsnorm: ${h.T}×${h.cols} vs ${x.T}×${x.cols}`);
    const d = this.config.hiddenSize;
    const fresh = site.which !== 'post_attention';
    const y = fresh ? { ptr: this.normed, T: h.T, cols: d, generation: -1 } : this.rowsOf(h.T, d);
    this.native.addRmsnorm(this.ctx, h.ptr, x.ptr, this.normWeight(site), y.ptr, h.T, d, this.config.rmsNormEps);
    if (fresh) this.arena.reset(this.workspaceFor(h.T));
    return y;
  }

  private normWeight(site: NormSite): DevicePtr {
    return site.which === 'final' ? this.w.finalNorm : site.which === 'input' ? this.layer(site.layer).inputNorm : this.layer(site.layer).postNorm;
  }

  // --- KDA ----------------------------------------------------------------------------------------

  kdaPrefill(layer: number, x: DeviceRows, state: KdaLayerState, chunk: number): DeviceRows {
    const { headDim: K } = this.config.kda;
    // The chunkwise kernel takes bf16 q/k/v: tensor-core mode only. Exact mode keeps the fp32
    // recurrence, or it is not exact at head size 128 (3.4e-2 from transformers' float64 on the
    // hf-bf16 check's wide checkpoint, against 4e-7 for a single token).
    return this.kda(layer, x, state, this.cacheBf16 && K === 128 && chunk === NATIVE_KDA_CHUNK && x.T > 1);
  }

  /**
   * One KDA step of each sequence in one launch (klc_kda_decode_batch): the projections take all
   * rows at once, then each row's short conv, gates and recurrence run on its own state.
   */
  kdaDecode(layer: number, x: DeviceRows, states: readonly KdaLayerState[]): DeviceRows {
    this.checkBatch(x, states.length);
    const w = this.layer(layer).kda;
    if (!w) throw new Error(`layer ${layer} is not a KDA layer`);
    const devs = states.map((s) => this.kdaState(s));
    const { numHeads: H, headDim: K, convKernel: W } = this.config.kda;
    const P = H * K;
    const B = x.T;
    const n = this.native;
    const c = this.ctx;
    // With the kda fusion (decode-fusions.ts) the decode launch also applies a dense b_proj (its 32 rows are never
    // quantized at load) and the gated output norm.
    const bProj = w.bProj;
    const { proj, f, gate } = this.kdaProjections(w, x);
    const beta =
      isQuant(bProj) || !this.fused.kda ? { beta: this.linear(x, bProj, H).ptr } : { beta: null, x: x.ptr, bW: bProj.ptr, d: x.cols, bWF32: bProj.f32 ? 1 : 0 };
    const o = this.rowsOf(B, P);
    n.kdaDecodeBatch(c, {
      H, K, V: K, W, scale: 1 / Math.sqrt(K), proj, convW: w.conv, g: f.ptr, aLog: w.aLog, dtBias: w.dtBias, o: o.ptr,
      states: BigUint64Array.from(devs, (s) => s.S), tails: BigUint64Array.from(devs, (s) => s.conv), ...beta,
      ...(this.fused.kda ? { oNormW: w.oNorm, gate: gate.ptr, eps: this.config.rmsNormEps } : {}),
    });
    return this.fused.kda ? this.linear(o, w.oProj, this.config.hiddenSize) : this.kdaOutput(w, x, o.ptr, false, gate);
  }

  /**
   * The KDA projections of x's rows but b_proj: q/k/v side by side [T, 3P], the forget gate f [T, P]
   * and the output gate's logits [T, P]. At decode the same-input matrices (q/k/v, f_a, g_a) take one
   * launch and f_b and g_b another (linears).
   */
  private kdaProjections(w: KdaDeviceWeights, x: DeviceRows): { proj: DevicePtr; f: DeviceRows; gate: DeviceRows } {
    const { numHeads: H, headDim: K } = this.config.kda;
    const P = H * K;
    const [proj, fa, ga] = this.linears([{ x, w: w.wqkv, out: 3 * P }, { x, w: w.fA, out: K }, { x, w: w.gA, out: K }]);
    const [f, gate] = this.linears([{ x: fa, w: w.fB, out: P }, { x: ga, w: w.gB, out: P }]);
    return { proj: proj.ptr, f, gate };
  }

  /** The KDA output of the recurrence's o (bf16 or fp32 [T, P]): gated RMSNorm with the g_a/g_b gate logits, then o_proj. */
  private kdaOutput(w: KdaDeviceWeights, x: DeviceRows, o: DevicePtr, oBf16: boolean, gate: DeviceRows): DeviceRows {
    const { numHeads: H, headDim: K } = this.config.kda;
    const P = H * K;
    const normed = this.rowsOf(x.T, P);
    this.native.gatedRmsnorm(this.ctx, o, oBf16 ? 1 : 0, gate.ptr, w.oNorm, normed.ptr, x.T * H, K, this.config.rmsNormEps);
    return this.linear(normed, w.oProj, this.config.hiddenSize);
  }

  /** A decode batch has one row per sequence and at most MAX_DECODE_BATCH of them. */
  private checkBatch(x: DeviceRows, sequences: number): void {
    this.check(x);
    if (sequences !== x.T) throw new Error(`decode: ${x.T} rows but ${sequences} sequence states`);
    if (x.T > MAX_DECODE_BATCH) throw new Error(`decode: the CUDA backend steps at most ${MAX_DECODE_BATCH} sequences at once, got ${x.T}`);
  }

  /**
   * The KDA block. `chunked` runs the chunkwise kernel (bf16 q/k/v, K = V = 128 only); otherwise
   * the fp32 token recurrence, which is exact for any head size and used for decode.
   */
  private kda(layer: number, x: DeviceRows, state: KdaLayerState, chunked: boolean): DeviceRows {
    this.check(x);
    const w = this.layer(layer).kda;
    if (!w) throw new Error(`layer ${layer} is not a KDA layer`);
    const dev = this.kdaState(state);
    const { numHeads: H, headDim: K, convKernel: W } = this.config.kda;
    const P = H * K;
    const T = x.T;
    const n = this.native;
    const c = this.ctx;
    const { proj, f, gate } = this.kdaProjections(w, x);
    const b = this.linear(x, w.bProj, H);
    const el = chunked ? 2 : F32;
    const qkv = this.arena.alloc(3 * T * P * el);
    n.shortConv(c, proj, w.conv, dev.conv, chunked ? null : qkv, chunked ? qkv : null, T, 3 * P, W, P);
    const o = this.arena.alloc(T * P * el);
    const args = {
      B: 1, T, H, K, V: K, l2normQk: true, rawGates: true, scale: 1 / Math.sqrt(K),
      q: qkv, k: qkv + BigInt(T * P * el), v: qkv + BigInt(2 * T * P * el),
      g: f.ptr, beta: b.ptr, aLog: w.aLog, dtBias: w.dtBias, state: dev.S, o,
    };
    if (chunked) n.kdaPrefill(c, args);
    else n.kdaRecurrent(c, args);
    return this.kdaOutput(w, x, o, chunked, gate);
  }

  // --- MLA ----------------------------------------------------------------------------------------

  mlaPrefill(layer: number, x: DeviceRows, state: MlaLayerState): DeviceRows {
    return this.mla(layer, x, state);
  }

  /**
   * One MLA step of each sequence: each row's latent is appended to its own cache, then all rows
   * attend in the absorbed form in one launch (klc_mla_decode), each over its own cache and length.
   */
  mlaDecode(layer: number, x: DeviceRows, states: readonly MlaLayerState[]): DeviceRows {
    this.checkBatch(x, states.length);
    const w = this.layer(layer).mla;
    if (!w) throw new Error(`layer ${layer} is not an MLA layer`);
    const { numHeads: H, qkNopeHeadDim: nope, qkRopeHeadDim: r, kvLoraRank: L } = this.config.mla;
    const qw = nope + r;
    const D = L + r;
    const B = x.T;
    const n = this.native;
    const c = this.ctx;
    const devs = states.map((s) => this.mlaState(s));
    const bf16 = devs[0].bf16;
    if (devs.some((dev) => dev.bf16 !== bf16)) throw new Error('mlaDecode: the batch mixes bf16 and fp32 MLA caches (states made before and after setTensorCores); decode them separately');
    const type = bf16 ? CACHE_BF16 : CACHE_F32;
    const [q, ckv] = this.linears([{ x, w: w.qProj, out: H * qw }, { x, w: w.kvA, out: D }]);
    // In a decode step that may be recorded (decodeLayers), the rows' positions and the split plan's
    // capacity come from the step, in device memory; otherwise each row is appended where its cache ends now.
    const step = this.step;
    if (step) {
      devs.forEach((dev, b) => {
        if (dev.length !== step.hostPositions[b]) throw new Error(`mlaDecode: sequence ${b}'s MLA caches disagree on its length (${dev.length} vs ${step.hostPositions[b]})`);
      });
      n.mlaAppendAt(c, ckv.ptr, w.kvNorm, BigUint64Array.from(devs, (dev) => dev.cache), type, step.positions, D, L, this.config.mla.kvNormEps);
      for (const dev of devs) dev.length += 1;
    } else {
      devs.forEach((dev, i) => this.appendLatents(w, dev, ckv.ptr + BigInt(i * D * F32), 1));
    }
    const positions = step?.positions ?? 0n;
    const capacity = step?.capacity ?? 0;
    const qfull = this.absorbedQuery(w, q, B);
    const lengths = Int32Array.from(devs, (dev) => dev.length);
    const wsBytes = n.mlaDecodeWorkspaceBytes(c, B, H, D, L, Math.max(capacity, ...lengths));
    const ws = this.arena.alloc(wsBytes);
    const ctxLat = this.arena.alloc(B * H * L * F32);
    // appendLatents may have moved a cache (it grows them): the addresses are read after it.
    n.mlaDecode(c, qfull, BigUint64Array.from(devs, (dev) => dev.cache), type, lengths, positions, capacity, ctxLat, ws, wsBytes, H, D, L, 1 / Math.sqrt(qw));
    return this.latentOutput(w, ctxLat, B);
  }

  /** Appends `rows` latent rows of ckv (kv_a_proj output, L + rope wide) to the cache: the L part normed, the rope part as is. */
  private appendLatents(w: MlaDeviceWeights, dev: MlaDeviceState, ckv: DevicePtr, rows: number): void {
    const { qkRopeHeadDim: r, kvLoraRank: L, kvNormEps } = this.config.mla;
    const D = L + r;
    this.reserveCache(dev, dev.length + rows);
    const at = dev.cache + BigInt(dev.length * this.rowBytes(dev));
    this.native.mlaAppendLatents(this.ctx, ckv, w.kvNorm, at, cacheTypeOf(dev), rows, D, L, kvNormEps);
    dev.length += rows;
  }

  /** The absorbed query rows [T * H, L + rope]: W_UK[h]ᵀ q_nope[h] next to q_pe, from the q projection [T, H * (nope + rope)]. */
  private absorbedQuery(w: MlaDeviceWeights, q: DeviceRows, T: number): DevicePtr {
    const { numHeads: H, qkNopeHeadDim: nope, qkRopeHeadDim: r, kvLoraRank: L } = this.config.mla;
    const qw = nope + r;
    const D = L + r;
    const qfull = this.arena.alloc(T * H * D * F32);
    this.native.linear(this.ctx, q.ptr, H * qw, w.wUKt.ptr, qfull, H * D, T, L, nope, H, qw, L * nope, D, 0, w.wUKt.f32 ? 1 : 0);
    this.native.copy2d(this.ctx, q.ptr + BigInt(nope * F32), qw, qfull + BigInt(L * F32), D, T * H, r);
    return qfull;
  }

  /** The MLA output from the latent contexts [T * H, L]: W_UV[h] per head, then o_proj. */
  private latentOutput(w: MlaDeviceWeights, ctxLat: DevicePtr, T: number): DeviceRows {
    const { numHeads: H, vHeadDim: dv, kvLoraRank: L } = this.config.mla;
    const ctxV = this.rowsOf(T, H * dv);
    this.native.linear(this.ctx, ctxLat, H * L, w.wUV.ptr, ctxV.ptr, H * dv, T, dv, L, H, L, dv * L, dv, 0, w.wUV.f32 ? 1 : 0);
    return this.linear(ctxV, w.oProj, this.config.hiddenSize);
  }

  /**
   * Appends x's latents, then attends in the absorbed form for prefill and decode alike:
   * q_lat[h] = W_UK[h]ᵀ q_nope[h] next to q_pe, scored against the cached latent rows, a latent
   * context per head, then W_UV[h] and o_proj. Equal to the up-projected form of the reference.
   */
  private mla(layer: number, x: DeviceRows, state: MlaLayerState): DeviceRows {
    this.check(x);
    const w = this.layer(layer).mla;
    if (!w) throw new Error(`layer ${layer} is not an MLA layer`);
    const { numHeads: H, qkNopeHeadDim: nope, qkRopeHeadDim: r, vHeadDim: dv, kvLoraRank: L } = this.config.mla;
    const qw = nope + r;
    const D = L + r;
    const T = x.T;
    const n = this.native;
    const c = this.ctx;
    const dev = this.mlaState(state);
    const start = dev.length;
    const [q, ckv] = this.linears([{ x, w: w.qProj, out: H * qw }, { x, w: w.kvA, out: D }]);
    this.appendLatents(w, dev, ckv.ptr, T);

    if (this.headsPrefill(T, start, w.wUKt.f32 || w.wUV.f32)) {
      // Long prefills: flash attention over up-projected per-head keys and values (3.4x fewer FLOPs).
      const ctxHeads = this.rowsOf(T, H * dv);
      n.mlaPrefillHeads(c, q.ptr, dev.cache, cacheTypeOf(dev), w.wUKt.ptr, w.wUV.ptr, ctxHeads.ptr, T, H, start, nope, r, dv, L, 1 / Math.sqrt(qw));
      return this.linear(ctxHeads, w.oProj, this.config.hiddenSize);
    }
    const qfull = this.absorbedQuery(w, q, T);
    const rows = T * H;
    const splits = n.mlaSplits(c, rows, start + T);
    const wsBytes = n.mlaWorkspaceBytes(c, rows, L, splits);
    const ws = this.arena.alloc(wsBytes);
    const ctxLat = this.arena.alloc(rows * L * F32);
    n.mlaAttention(c, qfull, dev.cache, cacheTypeOf(dev), ctxLat, ws, wsBytes, T, H, start, D, L, 1 / Math.sqrt(qw), splits);
    return this.latentOutput(w, ctxLat, T);
  }

  /**
   * Whether an MLA prefill takes the up-projected flash kernel: the library says when it serves the
   * shape and saves FLOPs; KLC_MLA_PREFILL=absorbed keeps the absorbed form (for comparisons).
   */
  private headsPrefill(T: number, start: number, f32Weights: boolean): boolean {
    if (f32Weights || process.env.KLC_MLA_PREFILL === 'absorbed') return false;
    const m = this.config.mla;
    return this.native.mlaHeadsWanted(this.ctx, T, start, m.qkNopeHeadDim, m.qkRopeHeadDim, m.vHeadDim, m.kvLoraRank);
  }

  // --- feed-forward -------------------------------------------------------------------------------

  moe(layer: number, x: DeviceRows, capture?: Capture): DeviceRows {
    this.check(x);
    const w = this.moeWeights(layer);
    const { numExperts: E, topK: k, renormalize, routedScalingFactor } = this.config.moe;
    const T = x.T;
    const [idx, weight] = this.routeRooms(T);
    let logits: DeviceRows;
    if (this.routerFused(T)) {
      logits = this.rowsOf(T, E);
      this.native.moeRouter(this.ctx, x.ptr, w.router.ptr, w.router.f32 ? 1 : 0, w.bias, logits.ptr, idx, weight, T, x.cols, E, k, renormalize ? 1 : 0,
                            routedScalingFactor);
    } else {
      logits = this.linear(x, w.router, E);
      this.native.moeRoute(this.ctx, logits.ptr, w.bias, idx, weight, T, E, k, renormalize ? 1 : 0, routedScalingFactor);
    }
    return this.experts(layer, x, { logits, idx, weight }, capture);
  }

  /**
   * addRmsnorm(h, x, post_attention) then moe, with the norm inside the router's launch where that launch computes
   * the logits itself (the router fusion, decode-fusions.ts, at a decode step's rows): one launch fewer a MoE layer.
   */
  addNormMoe(layer: number, h: DeviceRows, x: DeviceRows, capture?: Capture): DeviceRows {
    this.check(h);
    this.check(x);
    if (h.T !== x.T || h.cols !== x.cols) throw new Error(`addNormMoe: ${h.T}×${h.cols} vs ${x.T}×${x.cols}`);
    const d = this.config.hiddenSize;
    const site: NormSite = { which: 'post_attention', layer };
    if (!this.routerFused(h.T)) return this.moe(layer, this.addRmsnorm(h, x, site), capture);
    const w = this.moeWeights(layer);
    const { numExperts: E, topK: k, renormalize, routedScalingFactor } = this.config.moe;
    const T = h.T;
    const y = this.rowsOf(T, d);
    const [idx, weight] = this.routeRooms(T);
    const logits = this.rowsOf(T, E);
    this.native.moeRouterNorm(this.ctx, h.ptr, x.ptr, this.normWeight(site), this.config.rmsNormEps, y.ptr, w.router.ptr, w.router.f32 ? 1 : 0,
                              w.bias, logits.ptr, idx, weight, T, d, E, k, renormalize ? 1 : 0, routedScalingFactor);
    return this.experts(layer, y, { logits, idx, weight }, capture);
  }

  private moeWeights(layer: number): MoeDeviceWeights {
    const w = this.layer(layer).moe;
    if (!w) throw new Error(`layer ${layer} has no MoE block`);
    return w;
  }

  /** Whether the router's logits and top-k take one launch (klc_moe_router): a decode step's rows, read in runs of 8 values. */
  private routerFused(T: number): boolean {
    return this.fused.router && T <= MOE_BLOCK_ROWS && this.config.moe.numExperts <= ROUTER_MAX_EXPERTS && this.config.hiddenSize % 8 === 0;
  }

  /** Where the router writes the chosen experts and their weights, [T, k] each. */
  private routeRooms(T: number): [DevicePtr, DevicePtr] {
    const k = this.config.moe.topK;
    return [this.arena.alloc(T * k * 4), this.arena.alloc(T * k * F32)];
  }

  /** The routed experts (and the shared one) of x's rows, as the router chose them. */
  private experts(layer: number, x: DeviceRows, route: { logits: DeviceRows; idx: DevicePtr; weight: DevicePtr }, capture?: Capture): DeviceRows {
    const w = this.moeWeights(layer);
    const { numExperts: E, topK: k, intermediateSize: I } = this.config.moe;
    const d = this.config.hiddenSize;
    const T = x.T;
    const n = this.native;
    const c = this.ctx;
    const { logits, idx, weight } = route;
    if (capture) {
      capture(`router_logits.${layer}`, this.toHost(logits));
      const ids = new Int32Array(T * k);
      n.download(c, idx, ids);
      capture(`router_idx.${layer}`, Float32Array.from(ids));
      const ws = new Float32Array(T * k);
      n.download(c, weight, ws);
      capture(`router_w.${layer}`, ws);
    }
    let w13 = w.w13;
    let w2 = w.w2;
    if (w.onHost) {
      if (!isQuant(w13) || !isQuant(w2) || !this.host) throw new Error(`layer ${layer}: offloaded experts not quantized, or no host runner (placement bug)`);
      const host = this.host;
      if (host.onCpu(T)) {
        // The rows go to the host first, so the CPU works while the GPU runs the shared expert.
        host.begin(x.ptr, idx, weight, T);
        const shared = w.shared ? this.swiglu(x, w.shared.w13, w.shared.down, w.shared.inner) : this.zeroRows(T, d);
        host.finish(w13.quant, w2.quant, shared.ptr, this.arena.alloc(T * d * F32), T, d, I, E, k);
        return shared;
      }
      const [s13, s2] = host.stage(w13.quant, w2.quant);
      [w13, w2] = [{ quant: s13 }, { quant: s2 }];
    }
    const wsBytes = n.moeWorkspaceBytes(c, T, d, I, E, k);
    const shared = w.shared;
    // At decode a shared expert of the routed experts' width and kind joins their kernels (klc_moe_block, klc_moe_block_wq).
    if (this.fused.shared && shared && shared.inner === I && T <= MOE_BLOCK_ROWS && x.cols % 4 === 0) {
      const [s13, s2] = [shared.w13, shared.down];
      if (isQuant(w13) && isQuant(w2) && isQuant(s13) && isQuant(s2) && codesOf(s13.quant) === codesOf(w13.quant) && codesOf(s2.quant) === codesOf(w13.quant)) {
        const out = this.rowsOf(T, d);
        const ws = this.arena.alloc(wsBytes);
        n.moeBlockWq(c, x.ptr, idx, weight, w13.quant, w2.quant, s13.quant, s2.quant, out.ptr, ws, wsBytes, this.dense, this.denseF32 ? 1 : 0, T, d, I, E, k);
        return out;
      }
      if (!isQuant(w13) && !isQuant(w2) && !isQuant(s13) && !isQuant(s2) && !w13.f32 && !w2.f32 && !s13.f32 && !s2.f32) {
        const out = this.rowsOf(T, d);
        const ws = this.arena.alloc(wsBytes);
        n.moeBlock(c, x.ptr, idx, weight, w13.ptr, w2.ptr, s13.ptr, s2.ptr, out.ptr, ws, wsBytes, T, d, I, E, k);
        return out;
      }
    }
    const out = shared ? this.swiglu(x, shared.w13, shared.down, shared.inner) : this.zeroRows(T, d);
    const ws = this.arena.alloc(wsBytes);
    if (isQuant(w13) && isQuant(w2)) {
      n.moeExpertsWq(c, x.ptr, idx, weight, w13.quant, w2.quant, out.ptr, ws, wsBytes, this.dense, this.denseF32 ? 1 : 0, T, d, I, E, k);
    } else if (!isQuant(w13) && !isQuant(w2)) {
      n.moeExperts(c, x.ptr, idx, weight, w13.ptr, w2.ptr, out.ptr, ws, wsBytes, T, d, I, E, k, w13.f32 ? 1 : 0);
    } else {
      throw new Error(`layer ${layer}: routed experts half quantized (placement bug)`);
    }
    return out;
  }

  mlp(layer: number, x: DeviceRows): DeviceRows {
    this.check(x);
    const w = this.layer(layer).mlp;
    if (!w) throw new Error(`layer ${layer} has no dense MLP`);
    return this.swiglu(x, w.w13, w.down, w.inner);
  }

  lmHead(x: DeviceRows, rows: 'all' | 'last'): Float32Array {
    this.check(x);
    const d = this.config.hiddenSize;
    const V = this.config.vocabSize;
    const first = rows === 'last' ? x.T - 1 : 0;
    const count = x.T - first;
    const out = new Float32Array(count * V);
    const step = Math.min(count, LM_HEAD_ROWS);
    const buf = this.arena.alloc(step * V * F32);
    for (let r0 = 0; r0 < count; r0 += step) {
      const m = Math.min(step, count - r0);
      this.native.linear(this.ctx, x.ptr + BigInt((first + r0) * d * F32), d, this.w.lmHead.ptr, buf, V, m, V, d, 1, 0, 0, 0, 0, this.w.lmHead.f32 ? 1 : 0);
      this.native.download(this.ctx, buf, out.subarray(r0 * V, (r0 + m) * V));
    }
    return out;
  }

  /**
   * lm_head over the rows and one token per row picked on the GPU (klc_sample, pickToken's rule);
   * only the ids come back.
   */
  sampleRows(x: DeviceRows, picks: readonly TokenPick[]): Int32Array {
    this.checkBatch(x, picks.length);
    const d = this.config.hiddenSize;
    const V = this.config.vocabSize;
    const B = x.T;
    const n = this.native;
    const c = this.ctx;
    const logits = this.arena.alloc(B * V * F32);
    n.linear(c, x.ptr, d, this.w.lmHead.ptr, logits, V, B, V, d, 1, 0, 0, 0, 0, this.w.lmHead.f32 ? 1 : 0);
    const wsBytes = n.sampleWorkspaceBytes(c, B, V);
    this.ensureSampleBuffers(wsBytes + B * 4);
    const ids = this.sampleWs + BigInt(wsBytes);
    n.sample(c, logits, V, picks.map((p) => ({ ...p, vocab: Math.min(p.vocab, V) })), ids, this.sampleWs, wsBytes);
    const out = new Int32Array(B);
    n.download(c, ids, out);
    return out;
  }

  // --- state --------------------------------------------------------------------------------------

  importState(state: SequenceState): void {
    for (const ls of state.layers) {
      if (ls.kind === 'kda') this.uploadKda(ls, this.kdaSlot(ls));
      // Rows already on the device (streamed in by appendLatentRows) stay; a new cache comes from its host mirror.
      else this.mlaState(ls);
    }
  }

  /**
   * Writes the KDA parts back into the neutral arrays, and the MLA rows the host mirror lacks. A
   * state the device holds whole (a fork, a streamed restore) is better read with latentRows.
   */
  exportState(state: SequenceState, parts: 'all' | 'recurrent' = 'all'): void {
    for (const ls of state.layers) {
      const dev = this.states.get(ls);
      if (!dev) continue;
      if (ls.kind === 'kda' && dev.kind === 'kda') {
        this.native.download(this.ctx, dev.S, ls.S);
        this.native.download(this.ctx, dev.conv, ls.conv);
      } else if (ls.kind === 'mla' && dev.kind === 'mla' && parts === 'all') {
        const have = ls.cache.length;
        if (dev.length < have) throw new Error(`MLA cache: the device holds ${dev.length} rows, the host ${have}; import the state before running it`);
        if (dev.length > have) ls.cache.append(this.latentRows(ls, have, dev.length - have), dev.length - have);
      }
    }
  }

  /**
   * A continuation of `src` in `dst` (fresh neutral arrays, not yet known here) on the device:
   * KDA states copied there, MLA caches sharing src's rows (klc_vbuf_fork copies at most one
   * granule per layer), so the fork's time and memory do not grow with the context.
   */
  forkState(src: SequenceState, dst: SequenceState, parts: 'all' | 'latent' = 'all'): void {
    if (dst.length > src.length) throw new Error(`forkState: ${dst.length} rows wanted from a state of ${src.length}`);
    src.layers.forEach((ls, i) => {
      const to = dst.layers[i];
      if (ls.kind === 'kda' && to.kind === 'kda') {
        if (parts === 'latent') return;
        const from = this.kdaState(ls);
        const dev = this.kdaSlot(to);
        this.native.copyDevice(this.ctx, dev.S, from.S, ls.S.length * F32);
        this.native.copyDevice(this.ctx, dev.conv, from.conv, ls.conv.length * F32);
      } else if (ls.kind === 'mla' && to.kind === 'mla') {
        const from = this.mlaState(ls);
        const rowBytes = this.rowBytes(from);
        const { buf, base } = this.native.vbufFork(this.ctx, from.buf, dst.length * rowBytes);
        this.liveBufs.add(buf);
        const dev: MlaDeviceState = { kind: 'mla', buf, bf16: from.bf16, cache: base, capacity: Math.floor(this.native.vbufBytes(buf) / rowBytes), length: dst.length };
        this.states.set(to, dev);
        this.cacheFinalizer.register(to, dev, to);
      } else {
        throw new Error(`forkState: layer ${i} kinds differ`);
      }
    });
  }

  /** Frees the device copies of `state` now (a finished answer, a replaced repository state) instead of at garbage collection. */
  releaseState(state: SequenceState): void {
    for (const ls of state.layers) {
      const dev = this.states.get(ls);
      if (!dev) continue;
      this.states.delete(ls);
      if (dev.kind === 'kda') {
        this.finalizer.unregister(ls);
        this.freeOne(dev.S);
        this.freeOne(dev.conv);
      } else {
        this.cacheFinalizer.unregister(ls);
        this.freeBuf(dev.buf);
      }
    }
  }

  /** Rows [from, from + count) of an MLA layer's device cache, as a host copy in fp32 (bf16 rows widened exactly). */
  latentRows(ls: MlaLayerState, from: number, count: number): Float32Array {
    const bits = this.latentBits(ls, from, count);
    if (bits) return fromBf16(bits);
    const out = new Float32Array(count * this.latentWidth);
    if (count) this.native.download(this.ctx, this.rowAddress(ls, from, count), out);
    return out;
  }

  /** The same rows' bf16 bits where the cache is bf16 (what a state file keeps), undefined where it is fp32. */
  latentBits(ls: MlaLayerState, from: number, count: number): Uint16Array | undefined {
    if (!this.mlaState(ls).bf16) return undefined;
    const bits = new Uint16Array(count * this.latentWidth);
    if (count) this.native.download(this.ctx, this.rowAddress(ls, from, count), bits);
    return bits;
  }

  private rowAddress(ls: MlaLayerState, from: number, count: number): DevicePtr {
    const dev = this.mlaState(ls);
    if (from < 0 || from + count > dev.length) throw new RangeError(`latentRows(${from}, ${count}) outside the ${dev.length} cached rows`);
    return dev.cache + BigInt(from * this.rowBytes(dev));
  }

  /** The element type of an MLA layer's device cache: how its rows are best saved. */
  latentDtype(ls: MlaLayerState): 'f32' | 'bf16' {
    return this.mlaState(ls).bf16 ? 'bf16' : 'f32';
  }

  /**
   * Appends restored rows straight to an MLA layer's device cache (the host mirror stays as it is),
   * rounded to nearest even where the cache is bf16.
   */
  appendLatentRows(ls: MlaLayerState, rows: LatentRows, count: number): void {
    const dev = this.mlaSlot(ls);
    if (!count) return;
    this.reserveCache(dev, dev.length + count);
    const part = rows.subarray(0, count * this.latentWidth);
    this.native.upload(this.ctx, dev.cache + BigInt(dev.length * this.rowBytes(dev)), dev.bf16 ? latentBf16(part) : latentF32(part));
    dev.length += count;
  }

  /** Device bytes the sequence's copies take now, shared MLA rows included (for reports). */
  stateDeviceBytes(state: SequenceState): number {
    let n = 0;
    for (const ls of state.layers) {
      const dev = this.states.get(ls);
      if (dev?.kind === 'kda' && ls.kind === 'kda') n += (ls.S.length + ls.conv.length) * F32;
      else if (dev?.kind === 'mla') n += this.native.vbufBytes(dev.buf);
    }
    return n;
  }

  private get latentWidth(): number {
    return this.config.mla.kvLoraRank + this.config.mla.qkRopeHeadDim;
  }

  private rowBytes(dev: MlaDeviceState): number {
    return this.latentWidth * (dev.bf16 ? 2 : F32);
  }

  async dispose(): Promise<void> {
    if (this.disposed) return;
    this.graphs.dispose();
    for (const p of [...this.weightBuffers, ...this.live]) this.native.free(this.ctx, p);
    for (const b of this.liveBufs) this.native.vbufFree(this.ctx, b);
    this.host?.dispose();
    for (const p of this.hostBuffers) this.native.hostFree(this.ctx, p);
    this.live.clear();
    this.liveBufs.clear();
    this.arena.free();
    if (this.hiddenBytes) {
      this.native.free(this.ctx, this.hidden);
      this.native.free(this.ctx, this.normed);
    }
    if (this.idsBytes) this.native.free(this.ctx, this.ids);
    if (this.sampleBytes) this.native.free(this.ctx, this.sampleWs);
    if (this.stepBuf) this.native.free(this.ctx, this.stepBuf);
    this.disposed = true;
    this.native.destroy(this.ctx);
  }

  // --- helpers ------------------------------------------------------------------------------------

  private check(x: DeviceRows): void {
    if (this.disposed) throw new Error('the CUDA backend was disposed');
    if (x.generation !== -1 && x.generation !== this.arena.generation) throw new Error('a CUDA activation was used after its layer ended');
  }

  private layer(i: number): LayerDeviceWeights {
    const l = this.w.layers[i];
    if (!l) throw new Error(`no layer ${i}`);
    return l;
  }

  private rowsOf(T: number, cols: number): DeviceRows {
    return { ptr: this.arena.alloc(T * cols * F32), T, cols, generation: this.arena.generation };
  }

  private zeroRows(T: number, cols: number): DeviceRows {
    const r = this.rowsOf(T, cols);
    this.native.zero(this.ctx, r.ptr, T * cols * F32);
    return r;
  }

  private linear(x: DeviceRows, w: Mat, out: number): DeviceRows {
    const y = this.rowsOf(x.T, out);
    this.linearInto(x, w, y.ptr, out, out);
    return y;
  }

  /**
   * y [x.T, out] (row stride ldy) = x Wᵀ. A quantized W is read code by code for a few rows
   * (decode); for more rows it is dequantized into the dense buffer and multiplied by the GEMM a
   * dense weight gets (cuBLAS on tensor cores in tensor-core mode), since a prefill slice reuses
   * each weight for hundreds of rows and one extra pass over the matrix is small beside the GEMM.
   */
  private linearInto(x: DeviceRows, w: Mat, y: DevicePtr, ldy: number, out: number): void {
    if (!isQuant(w)) {
      this.native.linear(this.ctx, x.ptr, x.cols, w.ptr, y, ldy, x.T, out, x.cols, 1, 0, 0, 0, 0, w.f32 ? 1 : 0);
      return;
    }
    if (this.gemvRows(x)) {
      this.native.wqGemv(this.ctx, x.ptr, x.cols, w.quant, y, ldy, x.T, 0);
      return;
    }
    this.native.wqDequant(this.ctx, w.quant, 0, w.quant.N, this.dense, this.denseF32 ? 1 : 0);
    this.native.linear(this.ctx, x.ptr, x.cols, this.dense, y, ldy, x.T, out, x.cols, 1, 0, 0, 0, 0, this.denseF32 ? 1 : 0);
  }

  /** Whether a quantized weight is read code by code for these rows (klc_wq_gemv) rather than dequantized for a GEMM. */
  private gemvRows(x: DeviceRows): boolean {
    return x.T <= WQ_GEMV_ROWS && x.cols % 4 === 0;
  }

  /**
   * Several projections y_i = x_i W_iᵀ (each x_i of the same rows). At decode the quantized ones
   * with the same codes take one launch (klc_wq_gemv_many, up to WQ_JOBS_MAX a launch): most of a
   * step's projections are a few microseconds of loads, about what a launch and its drain cost.
   * The others, and every prefill, go one by one as `linear`.
   */
  private linears(jobs: readonly { x: DeviceRows; w: Mat; out: number }[]): DeviceRows[] {
    const ys = jobs.map((j) => this.rowsOf(j.x.T, j.out));
    const byCodes = new Map<string, NativeWqJob[]>();
    jobs.forEach((j, i) => {
      const w = j.w;
      if (!isQuant(w) || !this.gemvRows(j.x) || j.x.T !== jobs[0].x.T) {
        this.linearInto(j.x, w, ys[i].ptr, j.out, j.out);
        return;
      }
      const codes = codesOf(w.quant);
      const group = byCodes.get(codes) ?? [];
      group.push({ x: j.x.ptr, ldx: j.x.cols, w: w.quant, y: ys[i].ptr, ldy: j.out, accumulate: 0 });
      byCodes.set(codes, group);
    });
    for (const group of byCodes.values()) {
      for (let i = 0; i < group.length; i += WQ_JOBS_MAX) this.native.wqGemvMany(this.ctx, group.slice(i, i + WQ_JOBS_MAX), jobs[0].x.T);
    }
    return ys;
  }

  private swiglu(x: DeviceRows, w13: Mat, down: Mat, inner: number): DeviceRows {
    const gu = this.linear(x, w13, 2 * inner);
    const h = this.rowsOf(x.T, inner);
    this.native.siluMul(this.ctx, gu.ptr, h.ptr, x.T, inner);
    return this.linear(h, down, this.config.hiddenSize);
  }

  private workspaceFor(T: number): number {
    return layerWorkspaceBytes(this.config, T, moeScratch(this.native, this.ctx, this.config, T), mlaScratch(this.native, this.ctx, this.config, T));
  }

  private ensureHidden(bytes: number, idBytes: number): void {
    if (bytes > this.hiddenBytes) {
      if (this.hiddenBytes) {
        this.native.free(this.ctx, this.hidden);
        this.native.free(this.ctx, this.normed);
      }
      this.hiddenBytes = 0;
      this.hidden = this.native.alloc(this.ctx, bytes);
      this.normed = this.native.alloc(this.ctx, bytes);
      this.hiddenBytes = bytes;
    }
    if (idBytes > this.idsBytes) {
      if (this.idsBytes) this.native.free(this.ctx, this.ids);
      this.idsBytes = 0;
      this.ids = this.native.alloc(this.ctx, idBytes);
      this.idsBytes = idBytes;
    }
  }

  private ensureStepBuffer(): DevicePtr {
    if (!this.stepBuf) this.stepBuf = this.native.alloc(this.ctx, 2 * MAX_DECODE_BATCH * 4);
    return this.stepBuf;
  }

  /** The sampling sort's buffers live beside the arena: only decode steps need them, and they stay. */
  private ensureSampleBuffers(bytes: number): void {
    if (bytes <= this.sampleBytes) return;
    if (this.sampleBytes) this.native.free(this.ctx, this.sampleWs);
    this.sampleBytes = 0;
    this.sampleWs = this.native.alloc(this.ctx, bytes);
    this.sampleBytes = bytes;
  }

  private kdaSlot(ls: KdaLayerState): KdaDeviceState {
    const have = this.states.get(ls);
    if (have?.kind === 'kda') return have;
    const dev: KdaDeviceState = { kind: 'kda', S: this.native.alloc(this.ctx, ls.S.length * F32), conv: this.native.alloc(this.ctx, ls.conv.length * F32) };
    this.track(ls, [dev.S, dev.conv]);
    this.states.set(ls, dev);
    return dev;
  }

  private uploadKda(ls: KdaLayerState, dev: KdaDeviceState): void {
    this.native.upload(this.ctx, dev.S, ls.S);
    this.native.upload(this.ctx, dev.conv, ls.conv);
  }

  /** The device copy of a KDA layer state, imported from its neutral arrays on first use. */
  private kdaState(ls: KdaLayerState): KdaDeviceState {
    const known = this.states.get(ls);
    if (known?.kind === 'kda') return known;
    const dev = this.kdaSlot(ls);
    this.uploadKda(ls, dev);
    return dev;
  }

  private mlaSlot(ls: MlaLayerState): MlaDeviceState {
    const have = this.states.get(ls);
    if (have?.kind === 'mla') return have;
    const buf = this.native.vbufCreate(this.ctx);
    this.liveBufs.add(buf);
    const dev: MlaDeviceState = { kind: 'mla', buf, bf16: this.cacheBf16, cache: 0n, capacity: 0, length: 0 };
    this.states.set(ls, dev);
    this.cacheFinalizer.register(ls, dev, ls);
    return dev;
  }

  /** The device copy of an MLA layer state, imported from its host mirror on first use. */
  private mlaState(ls: MlaLayerState): MlaDeviceState {
    const known = this.states.get(ls);
    if (known?.kind === 'mla') return known;
    const dev = this.mlaSlot(ls);
    this.appendLatentRows(ls, ls.cache.toArray(), ls.cache.length);
    return dev;
  }

  /** Grows an MLA cache to hold `rows` rows; the rows it holds stay (klc_vbuf maps more memory behind them). */
  private reserveCache(dev: MlaDeviceState, rows: number): void {
    if (rows <= dev.capacity) return;
    const rowBytes = this.rowBytes(dev);
    dev.cache = this.native.vbufReserve(this.ctx, dev.buf, rows * rowBytes, dev.length * rowBytes);
    dev.capacity = Math.floor(this.native.vbufBytes(dev.buf) / rowBytes);
  }

  private track(owner: object, ptrs: DevicePtr[]): void {
    for (const p of ptrs) this.live.add(p);
    this.finalizer.register(owner, ptrs, owner);
  }

  private freeOne(p: DevicePtr): void {
    if (!this.live.delete(p) || this.disposed) return;
    this.native.free(this.ctx, p);
  }

  private release(ptrs: DevicePtr[]): void {
    for (const p of ptrs) this.freeOne(p);
  }

  private freeBuf(b: VbufHandle): void {
    if (!this.liveBufs.delete(b) || this.disposed) return;
    this.native.vbufFree(this.ctx, b);
  }
}

/**
 * Turns tensor-core mode on when wanted. When cuBLAS cannot be used the exact fp32 kernels run
 * instead and the reason goes to stderr once: slower, never wrong.
 */
function chooseEngine(native: NativeKlc, ctx: NativeContext, want: boolean): { tensorCores: boolean; text: string } {
  if (!want) return { tensorCores: false, text: native.setTensorCores(ctx, 0) };
  try {
    return { tensorCores: true, text: native.setTensorCores(ctx, 1) };
  } catch (e) {
    const text = native.setTensorCores(ctx, 0);
    process.stderr.write(`cuda backend: tensor cores unavailable (${e instanceof Error ? e.message : String(e)}); using ${text}, which is several times slower.\n`);
    return { tensorCores: false, text };
  }
}

/** Decode steps replay CUDA graphs unless KLC_CUDA_GRAPHS=0 (kept to compare against the per-call path). */
function graphsByDefault(): boolean {
  return process.env.KLC_CUDA_GRAPHS !== '0';
}

function moeScratch(native: NativeKlc, ctx: NativeContext, c: KimiConfig, T: number): number {
  return native.moeWorkspaceBytes(ctx, T, c.hiddenSize, c.moe.intermediateSize, c.moe.numExperts, c.moe.topK);
}

/** The kind of a quantized matrix's codes: matrices of one kind share the few-row kernels' launches. */
function codesOf(q: NativeWq): string {
  return q.fp8 ? 'fp8' : `int${q.bits}`;
}

function cacheTypeOf(dev: MlaDeviceState): number {
  return dev.bf16 ? CACHE_BF16 : CACHE_F32;
}

/** MLA partial sums: splits · rows ≤ 2 · rows + 32 · (a generous 256 multiprocessors) rows. */
function mlaScratch(native: NativeKlc, ctx: NativeContext, c: KimiConfig, T: number): number {
  const rows = T * c.mla.numHeads;
  return native.mlaWorkspaceBytes(ctx, 2 * rows + 32 * 256, c.mla.kvLoraRank, 1);
}

/** Quantization at load to `q` as the uploader applies it; null for none. */
function atLoadOf(config: KimiConfig, q: Quantization): AtLoad | null {
  if (q === 'none') return null;
  return { scheme: presetScheme(SCHEME_OF[q]), targets: atLoadTargets(config) };
}
