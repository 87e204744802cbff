/**
 * Uploads a checkpoint's weights to the GPU once, tensor by tensor (never the whole checkpoint in
 * host memory): matrices as stored (bf16 checkpoints stay bf16; fp32 ones stay fp32 so they compute
 * exactly as the reference), the MoE router, norms, conv taps and gate parameters as fp32. Tensors that run
 * as one GEMM are placed side by side: q/k/v projections, gate/up projections, every expert of a
 * layer ([E, 2I, d] and [E, d, I]). MLA's kv_b_proj is split per head into W_UKᵀ [H, L, n] and
 * W_UV [H, v, L] for the absorbed attention.
 */
import type { KimiConfig } from '../../model/config';
import type { Checkpoint } from '../../model/checkpoint';
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
    private readonly ckpt: Checkpoint,
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
      const t = await this.ckpt.tensor(name);
      if (t.length !== counts[i]) throw new Error(`${name}: ${t.length} values, expected ${counts[i]}`);
      this.native.upload(this.ctx, p + BigInt(off), kind === 'bf16' ? toBf16(t) : t);
      off += t.length * el;
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
export async function uploadWeights(native: NativeKlc, ctx: NativeContext, cfg: KimiConfig, ckpt: Checkpoint): Promise<{ weights: DeviceWeights; owned: DevicePtr[] }> {
  const up = new Uploader(native, ctx, ckpt);
  try {
    const layers: LayerDeviceWeights[] = [];
    for (let i = 0; i < cfg.numLayers; i++) {
      const spec = cfg.layers[i];
      const p = `model.layers.${i}.`;
      const a = `${p}self_attn.`;
      const layer: LayerDeviceWeights = {
        inputNorm: await up.one(`${p}input_layernorm.weight`, 'f32'),
        postNorm: await up.one(`${p}post_attention_layernorm.weight`, 'f32'),
        kda: null,
        mla: null,
        mlp: null,
        moe: null,
      };
      if (spec.attention === 'kda') {
        layer.kda = {
          wqkv: await up.mat(`${a}q_proj.weight`, `${a}k_proj.weight`, `${a}v_proj.weight`),
          conv: await up.concat([`${a}q_conv1d.weight`, `${a}k_conv1d.weight`, `${a}v_conv1d.weight`], 'f32'),
          aLog: await up.one(`${a}A_log`, 'f32'),
          dtBias: await up.one(`${a}dt_bias`, 'f32'),
          fA: await up.mat(`${a}f_a_proj.weight`),
          fB: await up.mat(`${a}f_b_proj.weight`),
          bProj: await up.mat(`${a}b_proj.weight`),
          gA: await up.mat(`${a}g_a_proj.weight`),
          gB: await up.mat(`${a}g_b_proj.weight`),
          oNorm: await up.one(`${a}o_norm.weight`, 'f32'),
          oProj: await up.mat(`${a}o_proj.weight`),
        };
      } else {
        const { numHeads: H, qkNopeHeadDim: n, vHeadDim: dv, kvLoraRank: L } = cfg.mla;
        const kvB = await ckpt.tensor(`${a}kv_b_proj.weight`);
        const wUKt = new Float32Array(H * L * n);
        const wUV = new Float32Array(H * dv * L);
        for (let h = 0; h < H; h++) {
          for (let r = 0; r < n; r++) for (let c = 0; c < L; c++) wUKt[(h * L + c) * n + r] = kvB[(h * (n + dv) + r) * L + c];
          wUV.set(kvB.subarray((h * (n + dv) + n) * L, (h + 1) * (n + dv) * L), h * dv * L);
        }
        layer.mla = {
          qProj: await up.mat(`${a}q_proj.weight`),
          kvA: await up.mat(`${a}kv_a_proj_with_mqa.weight`),
          kvNorm: await up.one(`${a}kv_a_layernorm.weight`, 'f32'),
          wUKt: up.raw(wUKt, up.wide([`${a}kv_b_proj.weight`])),
          wUV: up.raw(wUV, up.wide([`${a}kv_b_proj.weight`])),
          oProj: await up.mat(`${a}o_proj.weight`),
        };
      }
      if (spec.ffn === 'dense') {
        layer.mlp = await swiglu(up, `${p}mlp.`, 'gate_proj', 'up_proj', 'down_proj', cfg.intermediateSize);
      } else {
        const b = `${p}block_sparse_moe.`;
        const E = cfg.moe.numExperts;
        const experts = Array.from({ length: E }, (_, e) => `${b}experts.${e}.`);
        layer.moe = {
          router: { ptr: await up.one(`${b}gate.weight`, 'f32'), f32: true },
          bias: await up.one(`${b}gate.e_score_correction_bias`, 'f32'),
          ...(await expertMats(up, experts)),
          shared:
            cfg.moe.numSharedExperts > 0
              ? await swiglu(up, `${b}shared_experts.`, 'gate_proj', 'up_proj', 'down_proj', cfg.moe.intermediateSize * cfg.moe.numSharedExperts)
              : null,
        };
      }
      layers.push(layer);
    }
    const embed = await up.mat('model.embed_tokens.weight');
    const weights: DeviceWeights = {
      embed,
      finalNorm: await up.one('model.norm.weight', 'f32'),
      lmHead: cfg.tieWordEmbeddings ? embed : await up.mat('lm_head.weight'),
      layers,
    };
    return { weights, owned: up.owned };
  } catch (e) {
    for (const p of up.owned) native.free(ctx, p);
    throw e;
  }
}

async function swiglu(up: Uploader, prefix: string, gate: string, upName: string, down: string, inner: number): Promise<SwigluDeviceWeights> {
  return {
    w13: await up.mat(`${prefix}${gate}.weight`, `${prefix}${upName}.weight`),
    down: await up.mat(`${prefix}${down}.weight`),
    inner,
  };
}

/** All experts of a layer, gate/up and down in one precision (the grouped kernels take one). */
async function expertMats(up: Uploader, experts: string[]): Promise<{ w13: Mat; w2: Mat }> {
  const gateUp = experts.flatMap((e) => [`${e}w1.weight`, `${e}w3.weight`]);
  const down = experts.map((e) => `${e}w2.weight`);
  const f32 = up.wide([...gateUp, ...down]);
  const kind = f32 ? 'f32' : 'bf16';
  return { w13: { ptr: await up.concat(gateUp, kind), f32 }, w2: { ptr: await up.concat(down, kind), f32 } };
}
