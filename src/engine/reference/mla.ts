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
 * Per key block and head, scores and the value sum are two matrix products; an online softmax
 * (running max and sum per query) joins the blocks.
 */
export function mlaPrefill(cfg: KimiConfig, w: MlaWeights, x: Float32Array, T: number, cache: LatentCache): Float32Array {
  const { numHeads: H, qkNopeHeadDim: n, qkRopeHeadDim: r, vHeadDim: dv, kvLoraRank: L } = cfg.mla;
  const qw = n + r;
  const scale = 1 / Math.sqrt(qw);
  const start = cache.length;
  const q = linear(x, T, w.qProj, H * qw, cfg.hiddenSize);
  appendLatents(cfg, w, x, T, cache);
  const total = start + T;

  const qHead = Array.from({ length: H }, (_, h) => {
    const out = new Float32Array(T * qw);
    for (let i = 0; i < T; i++) out.set(q.subarray((i * H + h) * qw, (i * H + h + 1) * qw), i * qw);
    return out;
  });
  const m = new Float64Array(T * H).fill(-Infinity);
  const l = new Float64Array(T * H);
  const acc = new Float64Array(T * H * dv);
  const blockLat = new Float32Array(KEY_BLOCK * L);
  const keys = new Float32Array(KEY_BLOCK * qw);
  const valuesT = new Float32Array(dv * KEY_BLOCK);
  for (let k0 = 0; k0 < total; k0 += KEY_BLOCK) {
    const nb = Math.min(KEY_BLOCK, total - k0);
    for (let j = 0; j < nb; j++) blockLat.set(cache.row(k0 + j).subarray(0, L), j * L);
    // kv [nb, H·(n+v)]: per head the key's nope part, then its value.
    const kv = linear(blockLat, nb, w.kvB, H * (n + dv), L);
    const first = Math.max(0, k0 - start);
    const rows = T - first;
    for (let h = 0; h < H; h++) {
      for (let j = 0; j < nb; j++) {
        const ko = (j * H + h) * (n + dv);
        keys.set(kv.subarray(ko, ko + n), j * qw);
        keys.set(cache.row(k0 + j).subarray(L, L + r), j * qw + n);
        for (let a = 0; a < dv; a++) valuesT[a * nb + j] = kv[ko + n + a];
      }
      const p = linear(qHead[h].subarray(first * qw), rows, keys.subarray(0, nb * qw), nb, qw);
      for (let ri = 0; ri < rows; ri++) {
        const i = first + ri;
        const visible = Math.min(nb, start + i - k0 + 1);
        const mh = i * H + h;
        const po = ri * nb;
        let blockMax = -Infinity;
        for (let j = 0; j < visible; j++) blockMax = Math.max(blockMax, p[po + j] * scale);
        if (blockMax > m[mh]) {
          const rescale = Math.exp(m[mh] - blockMax);
          l[mh] *= rescale;
          for (let a = 0; a < dv; a++) acc[mh * dv + a] *= rescale;
          m[mh] = blockMax;
        }
        for (let j = 0; j < nb; j++) {
          const e = j < visible ? Math.exp(p[po + j] * scale - m[mh]) : 0;
          l[mh] += e;
          p[po + j] = e;
        }
      }
      const pv = linear(p, rows, valuesT.subarray(0, dv * nb), dv, nb);
      for (let ri = 0; ri < rows; ri++) {
        const ao = ((first + ri) * H + h) * dv;
        for (let a = 0; a < dv; a++) acc[ao + a] += pv[ri * dv + a];
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

  // Absorbed query per head: [W_UK[h]ᵀ q_nope[h] (L values), q_pe[h] (r values)], the width of a cache row.
  const width = L + r;
  const qAbs = new Float32Array(H * width);
  for (let h = 0; h < H; h++) {
    for (let c = 0; c < L; c++) {
      let s = 0;
      for (let a = 0; a < n; a++) s += q[h * qw + a] * w.kvB[(h * (n + dv) + a) * L + c];
      qAbs[h * width + c] = s;
    }
    qAbs.set(q.subarray(h * qw + n, (h + 1) * qw), h * width + L);
  }
  const m = new Float64Array(H).fill(-Infinity);
  const l = new Float64Array(H);
  const ctxLat = new Float64Array(H * L);
  const rows = new Float32Array(KEY_BLOCK * width);
  const latT = new Float32Array(L * KEY_BLOCK);
  for (let t0 = 0; t0 < cache.length; t0 += KEY_BLOCK) {
    const nb = Math.min(KEY_BLOCK, cache.length - t0);
    for (let j = 0; j < nb; j++) {
      const row = cache.row(t0 + j);
      rows.set(row, j * width);
      for (let c = 0; c < L; c++) latT[c * nb + j] = row[c];
    }
    const p = linear(qAbs, H, rows.subarray(0, nb * width), nb, width);
    for (let h = 0; h < H; h++) {
      let blockMax = -Infinity;
      for (let j = 0; j < nb; j++) blockMax = Math.max(blockMax, p[h * nb + j] * scale);
      if (blockMax > m[h]) {
        const rescale = Math.exp(m[h] - blockMax);
        l[h] *= rescale;
        for (let c = 0; c < L; c++) ctxLat[h * L + c] *= rescale;
        m[h] = blockMax;
      }
      for (let j = 0; j < nb; j++) {
        const e = Math.exp(p[h * nb + j] * scale - m[h]);
        l[h] += e;
        p[h * nb + j] = e;
      }
    }
    const add = linear(p, H, latT.subarray(0, L * nb), L, nb);
    for (let i = 0; i < H * L; i++) ctxLat[i] += add[i];
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
