/**
 * Uploads a checkpoint's weights to the GPU once, tensor by tensor (never the whole checkpoint in
 * host memory): matrices as stored (bf16 checkpoints stay bf16; fp32 ones stay fp32 so they compute
 * exactly as the reference), the MoE router, norms, conv taps and gate parameters as fp32. Tensors that run
 * as one GEMM are placed side by side: q/k/v projections, gate/up projections, every expert of a
 * layer ([E, 2I, d] and [E, d, I]). MLA's kv_b_proj is split per head into W_UKᵀ [H, L, n] and
 * W_UV [H, v, L] for the absorbed attention.
 */
import type { KimiConfig } from '../../model/config';
import type { WeightSource } from '../../model/weight-source';
import { EMBED, FINAL_NORM, kdaNames, LM_HEAD, mlaNames, mlpNames, moeNames, normNames, type SwigluNames } from '../../model/weight-names';
import type { DevicePtr, NativeContext, NativeKlc } from './loader';

/** A weight matrix on the device, bf16 or fp32. */
export interface Mat {
  ptr: DevicePtr;
  f32: boolean;
}

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
  wUKt: Mat;
  wUV: Mat;
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
  router: Mat;
  bias: DevicePtr;
  /** [E, 2I, d] */
  w13: Mat;
  /** [E, d, I] */
  w2: Mat;
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
  embed: Mat;
  finalNorm: DevicePtr;
  lmHead: Mat;
  layers: LayerDeviceWeights[];
}

/** bf16 bits of fp32 values, rounded to nearest even (exact for weights stored as bf16). */
export function toBf16(x: Float32Array): Uint16Array {
  const u = new Uint32Array(x.buffer, x.byteOffset, x.length);
  const out = new Uint16Array(x.length);
  for (let i = 0; i < u.length; i++) {
    const v = u[i];
    out[i] = (v & 0x7f800000) === 0x7f800000 ? v >>> 16 : ((v + 0x7fff + ((v >>> 16) & 1)) >>> 16) & 0xffff;
  }
  return out;
}

class Uploader {
  readonly owned: DevicePtr[] = [];
  constructor(
    private readonly native: NativeKlc,
    private readonly ctx: NativeContext,
    private readonly ckpt: WeightSource,
  ) {}

  alloc(bytes: number): DevicePtr {
    const p = this.native.alloc(this.ctx, bytes);
    this.owned.push(p);
    return p;
  }

  /** Uploads the listed tensors one after another into one buffer, as bf16 or fp32. */
  async concat(names: string[], kind: 'bf16' | 'f32'): Promise<DevicePtr> {
    const el = kind === 'bf16' ? 2 : 4;
    const counts = names.map((n) => this.ckpt.info(n).shape.reduce((a, b) => a * b, 1));
    const p = this.alloc(counts.reduce((a, b) => a + b, 0) * el);
    let off = 0;
    for (const [i, name] of names.entries()) {
      const fill = kind === 'bf16' ? this.ckpt.deviceFill?.(name) : null;
      if (fill) {
        // Dummy weights are made where they live: 98 GB would take minutes through the host.
        this.native.fillNormalBf16(this.ctx, p + BigInt(off), counts[i], fill.key, fill.key2, fill.scale);
      } else {
        const t = await this.ckpt.tensor(name);
        if (t.length !== counts[i]) throw new Error(`${name}: ${t.length} values, expected ${counts[i]}`);
        this.native.upload(this.ctx, p + BigInt(off), kind === 'bf16' ? toBf16(t) : t);
      }
      off += counts[i] * el;
    }
    return p;
  }

  one(name: string, kind: 'bf16' | 'f32'): Promise<DevicePtr> {
    return this.concat([name], kind);
  }

  /** Whether matrices of these tensors stay fp32: any of them is stored wider than bf16. */
  wide(names: string[]): boolean {
    return names.some((n) => this.ckpt.info(n).dtype === 'F32');
  }

  /** Matrices side by side, in the checkpoint's precision. */
  async mat(...names: string[]): Promise<Mat> {
    const f32 = this.wide(names);
    return { ptr: await this.concat(names, f32 ? 'f32' : 'bf16'), f32 };
  }

  raw(data: Float32Array, f32: boolean): Mat {
    const p = this.alloc(data.length * (f32 ? 4 : 2));
    this.native.upload(this.ctx, p, f32 ? data : toBf16(data));
    return { ptr: p, f32 };
  }
}

/** Uploads every weight; on failure frees what was uploaded and rethrows. Returns the weights and the buffers owned. */
export async function uploadWeights(native: NativeKlc, ctx: NativeContext, cfg: KimiConfig, ckpt: WeightSource): Promise<{ weights: DeviceWeights; owned: DevicePtr[] }> {
  const up = new Uploader(native, ctx, ckpt);
  try {
    const layers: LayerDeviceWeights[] = [];
    for (let i = 0; i < cfg.numLayers; i++) {
      const spec = cfg.layers[i];
      const norms = normNames(i);
      const layer: LayerDeviceWeights = {
        inputNorm: await up.one(norms.input, 'f32'),
        postNorm: await up.one(norms.post, 'f32'),
        kda: null,
        mla: null,
        mlp: null,
        moe: null,
      };
      if (spec.attention === 'kda') {
        const n = kdaNames(i);
        layer.kda = {
          wqkv: await up.mat(n.qProj, n.kProj, n.vProj),
          conv: await up.concat([n.qConv, n.kConv, n.vConv], 'f32'),
          aLog: await up.one(n.aLog, 'f32'),
          dtBias: await up.one(n.dtBias, 'f32'),
          fA: await up.mat(n.fA),
          fB: await up.mat(n.fB),
          bProj: await up.mat(n.bProj),
          gA: await up.mat(n.gA),
          gB: await up.mat(n.gB),
          oNorm: await up.one(n.oNorm, 'f32'),
          oProj: await up.mat(n.oProj),
        };
      } else {
        const n = mlaNames(i);
        const { numHeads: H, qkNopeHeadDim: nope, vHeadDim: dv, kvLoraRank: L } = cfg.mla;
        const kvB = await ckpt.tensor(n.kvB);
        const wUKt = new Float32Array(H * L * nope);
        const wUV = new Float32Array(H * dv * L);
        for (let h = 0; h < H; h++) {
          for (let r = 0; r < nope; r++) for (let c = 0; c < L; c++) wUKt[(h * L + c) * nope + r] = kvB[(h * (nope + dv) + r) * L + c];
          wUV.set(kvB.subarray((h * (nope + dv) + nope) * L, (h + 1) * (nope + dv) * L), h * dv * L);
        }
        layer.mla = {
          qProj: await up.mat(n.qProj),
          kvA: await up.mat(n.kvA),
          kvNorm: await up.one(n.kvNorm, 'f32'),
          wUKt: up.raw(wUKt, up.wide([n.kvB])),
          wUV: up.raw(wUV, up.wide([n.kvB])),
          oProj: await up.mat(n.oProj),
        };
      }
      if (spec.ffn === 'dense') {
        layer.mlp = await swiglu(up, mlpNames(cfg, i));
      } else {
        const n = moeNames(cfg, i);
        layer.moe = {
          router: { ptr: await up.one(n.router, 'f32'), f32: true },
          bias: await up.one(n.bias, 'f32'),
          ...(await expertMats(up, n.experts)),
          shared: n.shared ? await swiglu(up, n.shared) : null,
        };
      }
      layers.push(layer);
    }
    const embed = await up.mat(EMBED);
    const weights: DeviceWeights = {
      embed,
      finalNorm: await up.one(FINAL_NORM, 'f32'),
      lmHead: cfg.tieWordEmbeddings ? embed : await up.mat(LM_HEAD),
      layers,
    };
    return { weights, owned: up.owned };
  } catch (e) {
    for (const p of up.owned) native.free(ctx, p);
    throw e;
  }
}

async function swiglu(up: Uploader, n: SwigluNames): Promise<SwigluDeviceWeights> {
  return { w13: await up.mat(n.gate, n.up), down: await up.mat(n.down), inner: n.inner };
}

/** All experts of a layer, gate/up and down in one precision (the grouped kernels take one). */
async function expertMats(up: Uploader, experts: SwigluNames[]): Promise<{ w13: Mat; w2: Mat }> {
  const gateUp = experts.flatMap((e) => [e.gate, e.up]);
  const down = experts.map((e) => e.down);
  const f32 = up.wide([...gateUp, ...down]);
  const kind = f32 ? 'f32' : 'bf16';
  return { w13: { ptr: await up.concat(gateUp, kind), f32 }, w2: { ptr: await up.concat(down, kind), f32 } };
}
