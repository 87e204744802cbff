/**
 * Uploads a checkpoint's weights to the GPU once, tensor by tensor (never the whole checkpoint in
 * host memory): matrices as bf16, norms, conv taps and gate parameters as fp32. Tensors that run
 * as one GEMM are placed side by side: q/k/v projections, gate/up projections, every expert of a
 * layer ([E, 2I, d] and [E, d, I]). MLA's kv_b_proj is split per head into W_UKᵀ [H, L, n] and
 * W_UV [H, v, L] for the absorbed attention.
 */
import type { KimiConfig } from '../../model/config';
import type { Checkpoint } from '../../model/checkpoint';
import type { DevicePtr, NativeContext, NativeKlc } from './loader';

export interface KdaDeviceWeights {
  wqkv: DevicePtr;
  conv: DevicePtr;
  aLog: DevicePtr;
  dtBias: DevicePtr;
  fA: DevicePtr;
  fB: DevicePtr;
  bProj: DevicePtr;
  gA: DevicePtr;
  gB: DevicePtr;
  oNorm: DevicePtr;
  oProj: DevicePtr;
}

export interface MlaDeviceWeights {
  qProj: DevicePtr;
  kvA: DevicePtr;
  kvNorm: DevicePtr;
  wUKt: DevicePtr;
  wUV: DevicePtr;
  oProj: DevicePtr;
}

export interface SwigluDeviceWeights {
  /** [2I, d]: gate rows then up rows. */
  w13: DevicePtr;
  /** [d, I] */
  down: DevicePtr;
  inner: number;
}

export interface MoeDeviceWeights {
  router: DevicePtr;
  bias: DevicePtr;
  /** [E, 2I, d] */
  w13: DevicePtr;
  /** [E, d, I] */
  w2: DevicePtr;
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
  embed: DevicePtr;
  finalNorm: DevicePtr;
  lmHead: DevicePtr;
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
  async concat(names: string[], kind: 'bf16' | 'f32', sizes?: number[]): Promise<DevicePtr> {
    const el = kind === 'bf16' ? 2 : 4;
    const counts = sizes ?? names.map((n) => this.ckpt.info(n).shape.reduce((a, b) => a * b, 1));
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

  raw(data: Float32Array, kind: 'bf16' | 'f32'): DevicePtr {
    const p = this.alloc(data.length * (kind === 'bf16' ? 2 : 4));
    this.native.upload(this.ctx, p, kind === 'bf16' ? toBf16(data) : data);
    return p;
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
          wqkv: await up.concat([`${a}q_proj.weight`, `${a}k_proj.weight`, `${a}v_proj.weight`], 'bf16'),
          conv: await up.concat([`${a}q_conv1d.weight`, `${a}k_conv1d.weight`, `${a}v_conv1d.weight`], 'f32'),
          aLog: await up.one(`${a}A_log`, 'f32'),
          dtBias: await up.one(`${a}dt_bias`, 'f32'),
          fA: await up.one(`${a}f_a_proj.weight`, 'bf16'),
          fB: await up.one(`${a}f_b_proj.weight`, 'bf16'),
          bProj: await up.one(`${a}b_proj.weight`, 'bf16'),
          gA: await up.one(`${a}g_a_proj.weight`, 'bf16'),
          gB: await up.one(`${a}g_b_proj.weight`, 'bf16'),
          oNorm: await up.one(`${a}o_norm.weight`, 'f32'),
          oProj: await up.one(`${a}o_proj.weight`, 'bf16'),
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
          qProj: await up.one(`${a}q_proj.weight`, 'bf16'),
          kvA: await up.one(`${a}kv_a_proj_with_mqa.weight`, 'bf16'),
          kvNorm: await up.one(`${a}kv_a_layernorm.weight`, 'f32'),
          wUKt: up.raw(wUKt, 'bf16'),
          wUV: up.raw(wUV, 'bf16'),
          oProj: await up.one(`${a}o_proj.weight`, 'bf16'),
        };
      }
      if (spec.ffn === 'dense') {
        layer.mlp = await swiglu(up, `${p}mlp.`, 'gate_proj', 'up_proj', 'down_proj', cfg.intermediateSize);
      } else {
        const b = `${p}block_sparse_moe.`;
        const E = cfg.moe.numExperts;
        const experts = Array.from({ length: E }, (_, e) => `${b}experts.${e}.`);
        layer.moe = {
          router: await up.one(`${b}gate.weight`, 'bf16'),
          bias: await up.one(`${b}gate.e_score_correction_bias`, 'f32'),
          w13: await up.concat(experts.flatMap((e) => [`${e}w1.weight`, `${e}w3.weight`]), 'bf16'),
          w2: await up.concat(experts.map((e) => `${e}w2.weight`), 'bf16'),
          shared:
            cfg.moe.numSharedExperts > 0
              ? await swiglu(up, `${b}shared_experts.`, 'gate_proj', 'up_proj', 'down_proj', cfg.moe.intermediateSize * cfg.moe.numSharedExperts)
              : null,
        };
      }
      layers.push(layer);
    }
    const embed = await up.one('model.embed_tokens.weight', 'bf16');
    const weights: DeviceWeights = {
      embed,
      finalNorm: await up.one('model.norm.weight', 'f32'),
      lmHead: cfg.tieWordEmbeddings ? embed : await up.one('lm_head.weight', 'bf16'),
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
    w13: await up.concat([`${prefix}${gate}.weight`, `${prefix}${upName}.weight`], 'bf16'),
    down: await up.one(`${prefix}${down}.weight`, 'bf16'),
    inner,
  };
}
