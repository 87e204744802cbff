/**
 * Uploads a checkpoint's weights to the GPU once, tensor by tensor (never the whole checkpoint in
 * host memory): matrices as stored (bf16 checkpoints stay bf16; fp32 ones stay fp32 so they compute
 * exactly as the reference), the MoE router, norms, conv taps and gate parameters as fp32. Tensors that run
 * as one GEMM are placed side by side: q/k/v projections, gate/up projections, every expert of a
 * layer ([E, 2I, d] and [E, d, I]). MLA's kv_b_proj is split per head into W_UKᵀ [H, L, n] and
 * W_UV [H, v, L] for the absorbed attention.
 *
 * INT4 and INT8 weights (a compressed-tensors pack-quantized checkpoint, or quantization at load)
 * stay packed as compressed-tensors stores them, with their scales and zero points; FP8 E4M3
 * weights (float-quantized, or quantized at load) stay one byte each, with one scale per row (a
 * per-tensor scale repeated). kv_b_proj, which is split and transposed above, and any weight whose
 * scheme the kernels do not take (tensor scales of integer codes, block scales, asymmetric FP8,
 * groups that do not fit their 16-byte loads) are uploaded dequantized.
 *
 * The routed experts of the layers the memory plan offloads go to pinned host memory instead, in
 * the same layout (the CPU computes them, or they are staged to the GPU: host-experts.ts); only
 * INT4/INT8/FP8 experts can be offloaded.
 */
import { UserError } from '../../../common/errors';
import type { KimiConfig } from '../../model/config';
import { fromBf16, toBf16 } from '../../model/bf16';
import { quantizeWeight } from '../../model/quant/at-load';
import type { QuantizedSource } from '../../model/quant/compressed';
import { dequantize, type QuantizedMatrix } from '../../model/quant/matrix';
import { pack } from '../../model/quant/pack';
import { scaleDtypeFor } from '../../model/quant/round';
import type { QuantScheme } from '../../model/quant/scheme';
import { ReadBuffer } from '../../model/safetensors';
import type { WeightSource } from '../../model/weight-source';
import type { WeightBytes } from '../../plan/weights';
import { moeDenseBytes } from '../../plan/workspace';
import { EMBED, FINAL_NORM, kdaNames, LM_HEAD, mlaNames, mlpNames, moeNames, normNames, type SwigluNames } from '../../model/weight-names';
import type { DevicePtr, HostPtr, NativeContext, NativeKlc, NativeWq } from './loader';

/** A dense weight matrix on the device, bf16 or fp32. */
export interface DenseMat {
  ptr: DevicePtr;
  f32: boolean;
}

/** A weight-only quantized matrix on the device (W4A16, W8A16, FP8): codes as compressed-tensors stores them. */
export interface QuantMat {
  quant: NativeWq;
}

/** A projection's weight: dense, or quantized where the checkpoint or the load quantized it. */
export type Mat = DenseMat | QuantMat;

export const isQuant = (m: Mat): m is QuantMat => 'quant' in m;

export interface KdaDeviceWeights {
  wqkv: Mat;
  conv: DevicePtr;
  aLog: DevicePtr;
  dtBias: DevicePtr;
  fA: Mat;
  fB: Mat;
  bProj: Mat;
  gA: Mat;
  gB: Mat;
  oNorm: DevicePtr;
  oProj: Mat;
}

export interface MlaDeviceWeights {
  qProj: Mat;
  kvA: Mat;
  kvNorm: DevicePtr;
  /** kv_b_proj split per head (and transposed for W_UK): dense even when kv_b_proj is quantized. */
  wUKt: DenseMat;
  wUV: DenseMat;
  oProj: Mat;
}

export interface SwigluDeviceWeights {
  /** [2I, d]: gate rows then up rows. */
  w13: Mat;
  /** [d, I] */
  down: Mat;
  inner: number;
}

export interface MoeDeviceWeights {
  router: DenseMat;
  bias: DevicePtr;
  /** [E, 2I, d] */
  w13: Mat;
  /** [E, d, I] */
  w2: Mat;
  /** Whether w13 and w2 are quantized matrices in pinned host memory (an offloaded layer). */
  onHost: boolean;
  shared: SwigluDeviceWeights | null;
}

export interface LayerDeviceWeights {
  inputNorm: DevicePtr;
  postNorm: DevicePtr;
  kda: KdaDeviceWeights | null;
  mla: MlaDeviceWeights | null;
  mlp: SwigluDeviceWeights | null;
  moe: MoeDeviceWeights | null;
}

export interface DeviceWeights {
  embed: DenseMat;
  finalNorm: DevicePtr;
  lmHead: DenseMat;
  layers: LayerDeviceWeights[];
}


/** How matrices placed side by side (one GEMM) are stored: dense in the checkpoint's precision, or quantized (fp8: E4M3 codes, bits 8). */
export type MatLayout = { kind: 'dense'; f32: boolean } | { kind: 'quant'; bits: 4 | 8; fp8: boolean; group: number; symmetric: boolean; scalesF32: boolean };

/** Quantization at load as this backend applies it: the preset scheme and the weights it quantizes (atLoadTargets). */
export interface AtLoad {
  scheme: QuantScheme;
  targets: Set<string>;
}

/**
 * The layout of the matrices `names` (same columns) side by side: quantized when every one is
 * quantized (at load, or stored so) with the same INT4 or INT8 group or channel scheme, or all with
 * symmetric FP8 channel or tensor scales (both become one scale per row), whose columns and group
 * fit the kernels' 16-byte loads; dense otherwise (a stored quantized weight is then dequantized at
 * upload), fp32 when any is stored wider than bf16.
 */
export function matLayout(src: WeightSource, names: string[], atLoad: AtLoad | null, forceDense = false): MatLayout {
  // A stored quantized weight reports its scales' dtype; dequantized it takes the precision of the
  // model's dense matrices (embed_tokens is never quantized).
  const wide = (n: string) => (src.quantized?.(n) ? src.info(EMBED).dtype : src.info(n).dtype) === 'F32';
  const dense: MatLayout = { kind: 'dense', f32: names.some(wide) };
  if (forceDense) return dense;
  const K = src.info(names[0]).shape[1];
  const parts = names.map((n) => {
    if (atLoad?.targets.has(n)) return { w: atLoad.scheme.weights, scaleDtype: scaleDtypeFor(src.info(n).dtype) };
    const stored = src.quantized?.(n);
    // Columns gathered into groups by g_idx (activation order) are not the kernels' runs of consecutive columns.
    return stored && !stored.scheme.activationOrder ? { w: stored.scheme.weights, scaleDtype: src.info(n).dtype } : null;
  });
  const known = parts.filter((p) => p !== null);
  if (known.length !== parts.length) return dense;
  const w = known[0].w;
  const scalesF32 = !known.every((p) => p.scaleDtype === 'BF16');
  if (w.type === 'float') {
    const perRow = known.every((p) => p.w.type === 'float' && p.w.numBits === 8 && p.w.symmetric && (p.w.strategy === 'channel' || p.w.strategy === 'tensor'));
    return perRow && K % 16 === 0 ? { kind: 'quant', bits: 8, fp8: true, group: K, symmetric: true, scalesF32 } : dense;
  }
  if ((w.numBits !== 4 && w.numBits !== 8) || (w.strategy !== 'group' && w.strategy !== 'channel')) return dense;
  const same = known.every((p) => p.w.numBits === w.numBits && p.w.type === w.type && p.w.strategy === w.strategy && p.w.groupSize === w.groupSize && p.w.symmetric === w.symmetric);
  if (!same) return dense;
  // A group of at least a row's width is one scale per row.
  const group = w.strategy === 'channel' ? K : Math.min(w.groupSize as number, K);
  const perLoad = 128 / w.numBits;
  if (K % perLoad !== 0 || group % perLoad !== 0 || K % group !== 0) return dense;
  return { kind: 'quant', bits: w.numBits, fp8: false, group, symmetric: w.symmetric, scalesF32 };
}

/** Device bytes of an [N, K] matrix in `layout`. */
export function layoutBytes(layout: MatLayout, N: number, K: number): number {
  if (layout.kind === 'dense') return N * K * (layout.f32 ? 4 : 2);
  const groups = K / layout.group;
  const zeros = layout.symmetric ? 0 : Math.ceil(N / (32 / layout.bits)) * groups * 4;
  return (N * K * layout.bits) / 8 + N * groups * (layout.scalesF32 ? 4 : 2) + zeros;
}

/** Where weights go: uploaded to the device (Uploader), or only counted (Sizer). */
interface Placer {
  /** fp32 tensors one after another (norms, conv taps, gate parameters, the router). */
  vectors(names: string[]): Promise<DevicePtr>;
  /** How `names` side by side would be stored (matLayout); `dense`: the dense layout in any case. */
  layout(names: string[], dense?: boolean): MatLayout;
  /** Matrices of the same columns side by side; `expertsOf`: the MoE layer whose routed experts they are. */
  mat(names: string[], expertsOf?: number, layout?: MatLayout): Promise<Mat>;
  /** Whether layer `i`'s routed experts go to host memory. */
  onHost(i: number): boolean;
  /** A matrix that is never quantized (embed_tokens, lm_head). */
  dense(name: string): Promise<DenseMat>;
  /** kv_b_proj as W_UKᵀ [H, L, n] and W_UV [H, v, L], dense. */
  splitKvB(name: string, cfg: KimiConfig): Promise<{ wUKt: DenseMat; wUV: DenseMat }>;
}

class Uploader implements Placer {
  readonly owned: DevicePtr[] = [];
  readonly ownedHost: HostPtr[] = [];
  /** Stored bytes read for an upload, which copies them before the next read (klc_upload synchronizes). */
  private readonly readBuffer = new ReadBuffer();
  constructor(
    private readonly native: NativeKlc,
    private readonly ctx: NativeContext,
    private readonly ckpt: WeightSource,
    private readonly atLoad: AtLoad | null,
    private readonly offloaded: ReadonlySet<number>,
  ) {}

  alloc(bytes: number): DevicePtr {
    const p = this.native.alloc(this.ctx, bytes);
    this.owned.push(p);
    return p;
  }

  /** Allocation and copy in device memory, or in pinned host memory. */
  private space(host: boolean): { alloc: (bytes: number) => bigint; write: (dst: bigint, src: ArrayBufferView) => void } {
    if (!host) return { alloc: (b) => this.alloc(b), write: (dst, src) => this.native.upload(this.ctx, dst, src) };
    return {
      alloc: (b) => {
        const p = this.native.hostAlloc(this.ctx, b);
        this.ownedHost.push(p);
        return p;
      },
      write: (dst, src) => this.native.hostWrite(dst, src),
    };
  }

  onHost(i: number): boolean {
    return this.offloaded.has(i);
  }

  /** Whether `name` can be read as the bf16 bytes it is stored in. */
  private storedBf16(name: string): boolean {
    return this.ckpt.readStored !== undefined && !this.ckpt.quantized?.(name) && this.ckpt.info(name).dtype === 'BF16';
  }

  /** Uploads the listed tensors one after another into one buffer, as bf16 or fp32. */
  async concat(names: string[], kind: 'bf16' | 'f32'): Promise<DevicePtr> {
    const el = kind === 'bf16' ? 2 : 4;
    const counts = names.map((n) => this.ckpt.info(n).shape.reduce((a, b) => a * b, 1));
    const p = this.alloc(counts.reduce((a, b) => a + b, 0) * el);
    let off = 0;
    for (const [i, name] of names.entries()) {
      const asStored = kind === 'bf16' && !this.atLoad?.targets.has(name);
      const fill = asStored ? this.ckpt.deviceFill?.(name) : null;
      if (fill) {
        // Dummy weights are made where they live: 98 GB would take minutes through the host.
        this.native.fillNormalBf16(this.ctx, p + BigInt(off), counts[i], fill.key, fill.key2, fill.scale);
      } else if (asStored && this.storedBf16(name)) {
        // Stored bf16 bytes are the device's bf16 values: no conversion to fp32 and back.
        this.native.upload(this.ctx, p + BigInt(off), await (this.ckpt.readStored as NonNullable<WeightSource['readStored']>)(name, this.readBuffer));
      } else {
        const t = await this.values(name);
        if (t.length !== counts[i]) throw new Error(`${name}: ${t.length} values, expected ${counts[i]}`);
        this.native.upload(this.ctx, p + BigInt(off), kind === 'bf16' ? toBf16(t) : t);
      }
      off += counts[i] * el;
    }
    return p;
  }

  vectors(names: string[]): Promise<DevicePtr> {
    return this.concat(names, 'f32');
  }

  async dense(name: string): Promise<DenseMat> {
    const f32 = this.ckpt.info(name).dtype === 'F32';
    return { ptr: await this.concat([name], f32 ? 'f32' : 'bf16'), f32 };
  }

  layout(names: string[], dense = false): MatLayout {
    return matLayout(this.ckpt, names, dense ? null : this.atLoad, dense);
  }

  async mat(names: string[], expertsOf?: number, layout = this.layout(names)): Promise<Mat> {
    const host = expertsOf !== undefined && this.offloaded.has(expertsOf);
    if (host && layout.kind === 'dense') {
      throw new UserError(`${this.ckpt.dir}: the memory plan puts the routed experts of layer ${expertsOf} in host memory, but the CPU computes only INT4/INT8/FP8 experts and these are ${layout.f32 ? 'fp32' : 'bf16'}. Use --quantization int4 (kimiLinear.quantization), or a GPU (or --gpu-memory limit) that holds every expert.`, this.ckpt.dir);
    }
    if (layout.kind === 'dense') return { ptr: await this.concat(names, layout.f32 ? 'f32' : 'bf16'), f32: layout.f32 };
    return { quant: await this.quantized(names, layout, host) };
  }

  /**
   * Codes, scales and zero points of the matrices stacked by rows, in the checkpoint's packed
   * layout (E4M3 bytes as they are): codes and scales uploaded part by part, zero points (packed
   * down the columns, across part boundaries) packed once all parts are read.
   */
  private async quantized(names: string[], layout: Extract<MatLayout, { kind: 'quant' }>, host: boolean): Promise<NativeWq> {
    const { bits, fp8, group, symmetric, scalesF32 } = layout;
    const mem = this.space(host);
    const rows = names.map((n) => this.ckpt.info(n).shape[0]);
    const K = this.ckpt.info(names[0]).shape[1];
    const N = rows.reduce((a, b) => a + b, 0);
    const groups = K / group;
    const wordsPerRow = (K * bits) / 32;
    const packed = mem.alloc(N * wordsPerRow * 4);
    const scales = mem.alloc(N * groups * (scalesF32 ? 4 : 2));
    const zeroCodes = symmetric ? null : new Int8Array(N * groups);
    let row = 0;
    // Weights quantized at load whose bf16 values can be put on the device (made there, or stored
    // as bf16) are quantized there too: through the host quantizer a 48B model would take half an hour
    // (~85 ms a 1024 × 2304 matrix). The codes are the host quantizer's (klc_wq_quantize_bf16).
    // Offloaded experts' pinned host memory is mapped at the same address on the device (unified
    // addressing), so the kernel writes their codes there directly.
    const onDevice = names.map((n) => (this.atLoad?.targets.has(n) && symmetric ? (this.ckpt.deviceFill?.(n) ?? (this.storedBf16(n) ? 'stored' : null)) : null));
    const staging = onDevice.some((f) => f !== null) ? this.native.alloc(this.ctx, Math.max(...rows) * K * 2) : null;
    try {
      for (const [i, name] of names.entries()) {
        const fill = onDevice[i];
        if (fill && staging !== null) {
          if (fill === 'stored') this.native.upload(this.ctx, staging, await (this.ckpt.readStored as NonNullable<WeightSource['readStored']>)(name, this.readBuffer));
          else this.native.fillNormalBf16(this.ctx, staging, rows[i] * K, fill.key, fill.key2, fill.scale);
          this.native.wqQuantizeBf16(this.ctx, staging, rows[i], K, bits, group, fp8 ? 1 : 0, packed + BigInt(row * wordsPerRow * 4), scales + BigInt(row * groups * (scalesF32 ? 4 : 2)), scalesF32 ? 1 : 0);
          row += rows[i];
          continue;
        }
        // Stored words already packed along the rows are klc_wq's words: copied, not unpacked and packed again.
        const stored = fp8 || this.atLoad?.targets.has(name) ? null : this.ckpt.quantized?.(name);
        const m = stored?.readRowPacked ? await stored.readRowPacked(this.readBuffer) : await this.read(name);
        if (m.gIdx) {
          throw new UserError(`${this.ckpt.dir}: "${name}" stores a g_idx in activation order, which its quantization config does not declare (GPTQ desc_act, compressed-tensors actorder "group"); the CUDA backend runs such weights dequantized only when the config says so. Correct the config, or use the onnx or reference backend.`, this.ckpt.dir);
        }
        // E4M3 bytes row by row are already the int32 words klc_wq reads (little-endian, lowest column in the lowest byte).
        mem.write(packed + BigInt(row * wordsPerRow * 4), 'words' in m ? m.words : fp8 ? m.codes : pack(m.codes as Int8Array, rows[i], K, bits, 1));
        mem.write(scales + BigInt(row * groups * (scalesF32 ? 4 : 2)), deviceScales(m, rows[i] * groups, scalesF32));
        if (zeroCodes) zeroCodes.set(m.zeroPoint as Int8Array, row * groups);
        row += rows[i];
      }
    } finally {
      if (staging !== null) this.native.free(this.ctx, staging);
    }
    let zeros: DevicePtr | null = null;
    if (zeroCodes) {
      const words = pack(zeroCodes, N, groups, bits, 0);
      zeros = mem.alloc(words.byteLength);
      mem.write(zeros, words);
    }
    return { packed, scales, zeros, bits, N, K, group, scalesF32, fp8 };
  }

  /** One weight as fp32 values: a weight quantized at load but stored dense here has its dequantized values, as on every backend. */
  private async values(name: string): Promise<Float32Array> {
    const t = await this.ckpt.tensor(name);
    return this.atLoad?.targets.has(name) ? dequantize(quantizeWeight(t, this.ckpt.info(name), this.atLoad.scheme)) : t;
  }

  /** One weight's codes: quantized here (at load), or as the checkpoint stores them. */
  private async read(name: string): Promise<QuantizedMatrix> {
    if (this.atLoad?.targets.has(name)) return quantizeWeight(await this.ckpt.tensor(name), this.ckpt.info(name), this.atLoad.scheme);
    return (this.ckpt.quantized?.(name) as QuantizedSource).readQuantized();
  }

  async splitKvB(name: string, cfg: KimiConfig): Promise<{ wUKt: DenseMat; wUV: DenseMat }> {
    const { numHeads: H, qkNopeHeadDim: nope, vHeadDim: dv, kvLoraRank: L } = cfg.mla;
    const kvB = await this.values(name);
    const wUKt = new Float32Array(H * L * nope);
    const wUV = new Float32Array(H * dv * L);
    for (let h = 0; h < H; h++) {
      for (let r = 0; r < nope; r++) for (let c = 0; c < L; c++) wUKt[(h * L + c) * nope + r] = kvB[(h * (nope + dv) + r) * L + c];
      wUV.set(kvB.subarray((h * (nope + dv) + nope) * L, (h + 1) * (nope + dv) * L), h * dv * L);
    }
    const f32 = this.ckpt.info(name).dtype === 'F32';
    return { wUKt: this.raw(wUKt, f32), wUV: this.raw(wUV, f32) };
  }

  private raw(data: Float32Array, f32: boolean): DenseMat {
    const p = this.alloc(data.length * (f32 ? 4 : 2));
    this.native.upload(this.ctx, p, f32 ? data : toBf16(data));
    return { ptr: p, f32 };
  }
}

/** `count` scales (one per row and group; a per-tensor scale repeated) in fp32 or bf16, as klc_wq reads them. */
function deviceScales(m: { scale: Float32Array | Uint16Array; args: QuantizedMatrix['args'] }, count: number, f32: boolean): Float32Array | Uint16Array {
  if (m.scale instanceof Uint16Array && !f32 && m.scale.length === count) return m.scale;
  const values = m.scale instanceof Uint16Array ? fromBf16(m.scale) : m.scale;
  let perRow: Float32Array;
  if (values.length === count) perRow = values;
  else if (m.args.strategy === 'tensor') perRow = new Float32Array(count).fill(values[0]);
  else throw new Error(`${values.length} scales where the layout reads ${count} (layout bug)`);
  return f32 ? perRow : toBf16(perRow);
}

/** Counts what the Uploader would allocate, reading no weight. */
class Sizer implements Placer {
  resident = 0;
  readonly experts: number[];
  /** The most weights of one quantized matrix outside the routed experts. */
  largestQuant = 0;
  /** Whether any layer's routed experts are quantized. */
  quantExperts = false;
  constructor(
    private readonly ckpt: WeightSource,
    private readonly atLoad: AtLoad | null,
    layers: number,
  ) {
    this.experts = new Array<number>(layers).fill(0);
  }

  private count(names: string[]): number {
    return names.reduce((n, name) => n + this.ckpt.info(name).shape.reduce((a, b) => a * b, 1), 0);
  }

  vectors(names: string[]): Promise<DevicePtr> {
    this.resident += this.count(names) * 4;
    return Promise.resolve(0n);
  }

  onHost(): boolean {
    return false;
  }

  layout(names: string[], dense = false): MatLayout {
    return matLayout(this.ckpt, names, dense ? null : this.atLoad, dense);
  }

  mat(names: string[], expertsOf?: number, layout = this.layout(names)): Promise<Mat> {
    const N = names.reduce((n, name) => n + this.ckpt.info(name).shape[0], 0);
    const K = this.ckpt.info(names[0]).shape[1];
    const bytes = layoutBytes(layout, N, K);
    if (expertsOf === undefined) this.resident += bytes;
    else this.experts[expertsOf] += bytes;
    if (layout.kind === 'quant' && expertsOf === undefined) this.largestQuant = Math.max(this.largestQuant, N * K);
    if (layout.kind === 'quant' && expertsOf !== undefined) this.quantExperts = true;
    return Promise.resolve({ ptr: 0n, f32: false });
  }

  dense(name: string): Promise<DenseMat> {
    this.resident += this.count([name]) * (this.ckpt.info(name).dtype === 'F32' ? 4 : 2);
    return Promise.resolve({ ptr: 0n, f32: false });
  }

  splitKvB(name: string): Promise<{ wUKt: DenseMat; wUV: DenseMat }> {
    this.resident += this.count([name]) * (this.ckpt.info(name).dtype === 'F32' ? 4 : 2);
    return Promise.resolve({ wUKt: { ptr: 0n, f32: false }, wUV: { ptr: 0n, f32: false } });
  }
}

/** Every weight through `p`, in upload order. */
async function place(p: Placer, cfg: KimiConfig): Promise<DeviceWeights> {
  const layers: LayerDeviceWeights[] = [];
  for (let i = 0; i < cfg.numLayers; i++) {
    const spec = cfg.layers[i];
    const norms = normNames(i);
    const layer: LayerDeviceWeights = { inputNorm: await p.vectors([norms.input]), postNorm: await p.vectors([norms.post]), kda: null, mla: null, mlp: null, moe: null };
    if (spec.attention === 'kda') {
      const n = kdaNames(i);
      layer.kda = {
        wqkv: await p.mat([n.qProj, n.kProj, n.vProj]),
        conv: await p.vectors([n.qConv, n.kConv, n.vConv]),
        aLog: await p.vectors([n.aLog]),
        dtBias: await p.vectors([n.dtBias]),
        fA: await p.mat([n.fA]),
        fB: await p.mat([n.fB]),
        bProj: await p.mat([n.bProj]),
        gA: await p.mat([n.gA]),
        gB: await p.mat([n.gB]),
        oNorm: await p.vectors([n.oNorm]),
        oProj: await p.mat([n.oProj]),
      };
    } else {
      const n = mlaNames(i);
      layer.mla = {
        qProj: await p.mat([n.qProj]),
        kvA: await p.mat([n.kvA]),
        kvNorm: await p.vectors([n.kvNorm]),
        ...(await p.splitKvB(n.kvB, cfg)),
        oProj: await p.mat([n.oProj]),
      };
    }
    if (spec.ffn === 'dense') {
      layer.mlp = await swiglu(p, mlpNames(cfg, i));
    } else {
      const n = moeNames(cfg, i);
      // Every expert of a layer in one buffer ([E, 2I, d] and [E, d, I]): the grouped kernels take
      // one, and both halves quantized alike or both dense.
      const gateUp = n.experts.flatMap((e) => [e.gate, e.up]);
      const down = n.experts.map((e) => e.down);
      let [l13, l2] = [p.layout(gateUp), p.layout(down)];
      if (l13.kind !== l2.kind || (l13.kind === 'quant' && l2.kind === 'quant' && (l13.bits !== l2.bits || l13.fp8 !== l2.fp8))) {
        [l13, l2] = [p.layout(gateUp, true), p.layout(down, true)];
      }
      layer.moe = {
        router: { ptr: await p.vectors([n.router]), f32: true },
        bias: await p.vectors([n.bias]),
        w13: await p.mat(gateUp, i, l13),
        w2: await p.mat(down, i, l2),
        onHost: p.onHost(i),
        shared: n.shared ? await swiglu(p, n.shared) : null,
      };
    }
    layers.push(layer);
  }
  const embed = await p.dense(EMBED);
  return { embed, finalNorm: await p.vectors([FINAL_NORM]), lmHead: cfg.tieWordEmbeddings ? embed : await p.dense(LM_HEAD), layers };
}

async function swiglu(p: Placer, n: SwigluNames): Promise<SwigluDeviceWeights> {
  return { w13: await p.mat([n.gate, n.up]), down: await p.mat([n.down]), inner: n.inner };
}

/**
 * Uploads every weight, the routed experts of the `offloaded` layers to pinned host memory; on
 * failure frees what was placed and rethrows. Returns the weights and the buffers owned.
 */
export async function uploadWeights(
  native: NativeKlc,
  ctx: NativeContext,
  cfg: KimiConfig,
  ckpt: WeightSource,
  atLoad: AtLoad | null = null,
  offloaded: readonly number[] = [],
): Promise<{ weights: DeviceWeights; owned: DevicePtr[]; ownedHost: HostPtr[] }> {
  const up = new Uploader(native, ctx, ckpt, atLoad, new Set(offloaded));
  try {
    return { weights: await place(up, cfg), owned: up.owned, ownedHost: up.ownedHost };
  } catch (e) {
    for (const p of up.owned) native.free(ctx, p);
    for (const p of up.ownedHost) native.hostFree(ctx, p);
    throw e;
  }
}

export interface DeviceWeightBytes {
  /** What uploadWeights allocates, split as the memory plan counts it. */
  weights: WeightBytes;
  /**
   * The dense buffer quantized weights are dequantized into for prefill (CudaBackend.dense): the
   * largest quantized matrix, or the routed experts of one layer when they are quantized
   * (klc_moe_dense_bytes: MOE_DENSE_GROUP of them in bf16, all in fp32); bf16, or fp32 when
   * `denseF32`. 0 without quantized weights.
   */
  dense: number;
  /** Whether the routed experts are quantized (INT4/INT8/FP8), so that they may be offloaded. */
  quantExperts: boolean;
}

/** The device bytes of these weights as uploadWeights would place them, without reading any. */
export async function deviceWeightBytes(cfg: KimiConfig, ckpt: WeightSource, atLoad: AtLoad | null, denseF32: boolean): Promise<DeviceWeightBytes> {
  const sizer = new Sizer(ckpt, atLoad, cfg.numLayers);
  await place(sizer, cfg);
  const el = denseF32 ? 4 : 2;
  const experts = sizer.quantExperts ? moeDenseBytes(cfg, denseF32) : 0;
  return { weights: { resident: sizer.resident, experts: sizer.experts }, dense: Math.max(sizer.largestQuant * el, experts), quantExperts: sizer.quantExperts };
}

