/**
 * MLA full-attention layer, NoPE (spec §3). The cache holds only the compressed latent per token:
 * kv_a_layernorm(c_kv) followed by k_rot. Prefill up-projects keys and values from it (the naive
 * form, as transformers computes); decode absorbs kv_b_proj into the query and attends over the
 * latents directly. Both walk the cache in blocks with an online softmax, so memory stays
 * proportional to the block, not to the context length.
 */
import type { KimiConfig } from '../model/config';
import type { LatentCache } from '../state/latent-cache';
import { linear } from './linalg';
import { rmsnormRows } from './norms';

export interface MlaWeights {
  /** [H·(n+r), d] */
  qProj: Float32Array;
  /** [L+r, d] */
  kvA: Float32Array;
  /** [L] */
  kvNorm: Float32Array;
  /** [H·(n+v), L]: per head n key rows, then v value rows */
  kvB: Float32Array;
  /** [d, H·v] */
  oProj: Float32Array;
}

/** Keys up-projected at once in prefill; a multiple of the cache page keeps rows on one page. */
const KEY_BLOCK = 256;

/** Projects x [T, d] to its latent cache rows [T, L+r] and appends them. */
function appendLatents(cfg: KimiConfig, w: MlaWeights, x: Float32Array, T: number, cache: LatentCache): void {
  const { kvLoraRank: L, qkRopeHeadDim: r } = cfg.mla;
  const ckv = linear(x, T, w.kvA, L + r, cfg.hiddenSize);
  const rows = new Float32Array(T * (L + r));
  for (let t = 0; t < T; t++) {
    const c = ckv.subarray(t * (L + r), t * (L + r) + L);
    rows.set(rmsnormRows(c, 1, L, w.kvNorm, cfg.mla.kvNormEps), t * (L + r));
    rows.set(ckv.subarray(t * (L + r) + L, (t + 1) * (L + r)), t * (L + r) + L);
  }
  if (cache.width !== L + r) throw new Error(`MLA cache width ${cache.width}, expected ${L + r}`);
  cache.append(rows, T);
}

/**
 * Causal attention of x's T tokens over every cached token before them and themselves (the naive,
 * up-projected form). Appends x's latents to `cache`; returns the layer output [T, d].
 */
export function mlaPrefill(cfg: KimiConfig, w: MlaWeights, x: Float32Array, T: number, cache: LatentCache): Float32Array {
  const { numHeads: H, qkNopeHeadDim: n, qkRopeHeadDim: r, vHeadDim: dv, kvLoraRank: L } = cfg.mla;
  const qw = n + r;
  const scale = 1 / Math.sqrt(qw);
  const start = cache.length;
  const q = linear(x, T, w.qProj, H * qw, cfg.hiddenSize);
  appendLatents(cfg, w, x, T, cache);
  const total = start + T;

  const m = new Float64Array(T * H).fill(-Infinity);
  const l = new Float64Array(T * H);
  const acc = new Float64Array(T * H * dv);
  const blockLat = new Float32Array(KEY_BLOCK * L);
  const blockRot = new Float32Array(KEY_BLOCK * r);
  const scores = new Float64Array(KEY_BLOCK);
  for (let k0 = 0; k0 < total; k0 += KEY_BLOCK) {
    const nb = Math.min(KEY_BLOCK, total - k0);
    for (let j = 0; j < nb; j++) {
      const row = cache.row(k0 + j);
      blockLat.set(row.subarray(0, L), j * L);
      blockRot.set(row.subarray(L, L + r), j * r);
    }
    // kv [nb, H·(n+v)]: per head the key's nope part, then its value.
    const kv = linear(blockLat, nb, w.kvB, H * (n + dv), L);
    const firstQuery = Math.max(0, k0 - start);
    for (let i = firstQuery; i < T; i++) {
      const lastKey = Math.min(nb, start + i - k0 + 1);
      for (let h = 0; h < H; h++) {
        const qo = (i * H + h) * qw;
        const mh = i * H + h;
        const ao = mh * dv;
        let blockMax = -Infinity;
        for (let j = 0; j < lastKey; j++) {
          const ko = j * H * (n + dv) + h * (n + dv);
          let s = 0;
          for (let a = 0; a < n; a++) s += q[qo + a] * kv[ko + a];
          for (let a = 0; a < r; a++) s += q[qo + n + a] * blockRot[j * r + a];
          s *= scale;
          scores[j] = s;
          if (s > blockMax) blockMax = s;
        }
        // One rescale per block instead of one per key.
        if (blockMax > m[mh]) {
          const rescale = Math.exp(m[mh] - blockMax);
          l[mh] *= rescale;
          for (let a = 0; a < dv; a++) acc[ao + a] *= rescale;
          m[mh] = blockMax;
        }
        for (let j = 0; j < lastKey; j++) {
          const p = Math.exp(scores[j] - m[mh]);
          l[mh] += p;
          const vo = j * H * (n + dv) + h * (n + dv) + n;
          for (let a = 0; a < dv; a++) acc[ao + a] += p * kv[vo + a];
        }
      }
    }
  }
  const ctx = new Float32Array(T * H * dv);
  for (let i = 0; i < T * H; i++) for (let a = 0; a < dv; a++) ctx[i * dv + a] = acc[i * dv + a] / l[i];
  return linear(ctx, T, w.oProj, cfg.hiddenSize, H * dv);
}

/**
 * One token with the absorbed weights: q_lat[h] = W_UK[h]ᵀ q_nope[h], scores against the cached
 * latents and k_rot, a latent context per head, then W_UV[h]. Appends the token's latent first,
 * so it attends to itself. Returns the layer output [d].
 */
export function mlaDecode(cfg: KimiConfig, w: MlaWeights, x: Float32Array, cache: LatentCache): Float32Array {
  const { numHeads: H, qkNopeHeadDim: n, qkRopeHeadDim: r, vHeadDim: dv, kvLoraRank: L } = cfg.mla;
  const qw = n + r;
  const scale = 1 / Math.sqrt(qw);
  const q = linear(x, 1, w.qProj, H * qw, cfg.hiddenSize);
  appendLatents(cfg, w, x, 1, cache);

  const qLat = new Float64Array(H * L);
  for (let h = 0; h < H; h++) {
    for (let a = 0; a < n; a++) {
      const qa = q[h * qw + a];
      const wo = (h * (n + dv) + a) * L;
      for (let c = 0; c < L; c++) qLat[h * L + c] += qa * w.kvB[wo + c];
    }
  }
  const m = new Float64Array(H).fill(-Infinity);
  const l = new Float64Array(H);
  const ctxLat = new Float64Array(H * L);
  for (let t = 0; t < cache.length; t++) {
    const row = cache.row(t);
    for (let h = 0; h < H; h++) {
      let s = 0;
      for (let c = 0; c < L; c++) s += qLat[h * L + c] * row[c];
      for (let a = 0; a < r; a++) s += q[h * qw + n + a] * row[L + a];
      s *= scale;
      if (s > m[h]) {
        const rescale = Math.exp(m[h] - s);
        l[h] *= rescale;
        for (let c = 0; c < L; c++) ctxLat[h * L + c] *= rescale;
        m[h] = s;
      }
      const p = Math.exp(s - m[h]);
      l[h] += p;
      for (let c = 0; c < L; c++) ctxLat[h * L + c] += p * row[c];
    }
  }
  const ctx = new Float32Array(H * dv);
  for (let h = 0; h < H; h++) {
    for (let a = 0; a < dv; a++) {
      const wo = (h * (n + dv) + n + a) * L;
      let s = 0;
      for (let c = 0; c < L; c++) s += w.kvB[wo + c] * ctxLat[h * L + c];
      ctx[h * dv + a] = s / l[h];
    }
  }
  return linear(ctx, 1, w.oProj, cfg.hiddenSize, H * dv);
}
