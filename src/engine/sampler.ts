/**
 * Picks the next token from logits: greedy at temperature 0, else temperature, top-k and top-p
 * (nucleus) sampling with a seeded PRNG so that a run can be repeated.
 */
import type { SamplingOptions } from './api';

export const DEFAULT_SAMPLING: SamplingOptions = { temperature: 0, topP: 1, topK: 0, maxNewTokens: 256 };

/** mulberry32: small, fast and good enough to draw sampling thresholds. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Index of the largest logit; the lowest index wins a tie, as torch.argmax does. */
export function argmax(logits: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < logits.length; i++) if (logits[i] > logits[best]) best = i;
  return best;
}

/**
 * Everything one pick of one row needs, so that a device backend can pick without the host's
 * PRNG: the sampling settings, the vocabulary limit and the random draw itself.
 */
export interface TokenPick {
  /** ≤ 0: greedy. */
  temperature: number;
  topP: number;
  /** 0 = off; 1 = greedy. */
  topK: number;
  /** Ids ≥ vocab are never picked: a checkpoint's embedding may have padding rows beyond its tokenizer. */
  vocab: number;
  /** The one U[0, 1) draw the pick consumes; ignored when the pick is greedy (see picksAtRandom). */
  uniform: number;
}

/**
 * Whether a pick with these settings consumes a random draw. Callers draw `uniform` from their
 * PRNG only then, so the sequence of draws (and with it every later token) does not depend on
 * where the pick runs.
 */
export function picksAtRandom(s: { temperature: number; topK: number }): boolean {
  return s.temperature > 0 && s.topK !== 1;
}

/**
 * The token a pick chooses from one row of logits. The exact rule, which the CUDA sampling kernel
 * reproduces (JS arithmetic is float64 on the fp32 logits):
 *
 * 1. Only ids 0 … vocab−1 take part (vocab is clamped to the row's length).
 * 2. Greedy when temperature ≤ 0 or topK = 1: the id of the largest logit, the lowest id on ties.
 * 3. Otherwise order the ids by logit, largest first, ties by the lower id first. If topK > 0,
 *    keep the first min(topK, vocab) of that order (n ids).
 * 4. m = logit of order[0]; w_j = exp((logit(order[j]) − m) / temperature) for j < n;
 *    total = w_0 + w_1 + … + w_{n−1}, summed in that order.
 * 5. keep = n. If topP < 1: cum = 0; for j = 0, 1, …: cum += w_j / total; at the first j where
 *    cum ≥ topP, keep = j + 1 and stop.
 * 6. keptTotal = w_0 + … + w_{keep−1} in that order; r = uniform · keptTotal; for j < keep:
 *    r −= w_j; return order[j] at the first j where r < 0. If none, return order[keep − 1].
 */
export function pickToken(logits: Float32Array, pick: TokenPick): number {
  if (!Number.isInteger(pick.vocab) || pick.vocab < 1) throw new Error(`pickToken: vocab must be a positive integer, got ${pick.vocab}`);
  const row = pick.vocab < logits.length ? logits.subarray(0, pick.vocab) : logits;
  if (!picksAtRandom(pick)) return argmax(row);
  let order = Array.from({ length: row.length }, (_, i) => i).sort((a, b) => row[b] - row[a] || a - b);
  if (pick.topK > 0) order = order.slice(0, pick.topK);
  const max = row[order[0]];
  const weights = order.map((i) => Math.exp((row[i] - max) / pick.temperature));
  const total = weights.reduce((s, w) => s + w, 0);
  let keep = order.length;
  if (pick.topP < 1) {
    let cum = 0;
    for (let j = 0; j < order.length; j++) {
      cum += weights[j] / total;
      if (cum >= pick.topP) {
        keep = j + 1;
        break;
      }
    }
  }
  const kept = weights.slice(0, keep);
  const keptTotal = kept.reduce((s, w) => s + w, 0);
  let r = pick.uniform * keptTotal;
  for (let j = 0; j < keep; j++) {
    r -= kept[j];
    if (r < 0) return order[j];
  }
  return order[keep - 1];
}

/** The pick of one sequence's next token, drawing from `random` only when the pick samples. */
export function tokenPick(opts: SamplingOptions, vocab: number, random: () => number): TokenPick {
  return { temperature: opts.temperature, topP: opts.topP, topK: opts.topK, vocab, uniform: picksAtRandom(opts) ? random() : 0 };
}

/** pickToken over the whole row with a draw from `random` (when the settings sample). */
export function sampleToken(logits: Float32Array, opts: SamplingOptions, random: () => number): number {
  return pickToken(logits, tokenPick(opts, logits.length, random));
}
