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

export function sampleToken(logits: Float32Array, opts: SamplingOptions, random: () => number): number {
  if (opts.temperature <= 0 || opts.topK === 1) return argmax(logits);
  let order = Array.from({ length: logits.length }, (_, i) => i).sort((a, b) => logits[b] - logits[a] || a - b);
  if (opts.topK > 0) order = order.slice(0, opts.topK);
  const max = logits[order[0]];
  const weights = order.map((i) => Math.exp((logits[i] - max) / opts.temperature));
  const total = weights.reduce((s, w) => s + w, 0);
  let keep = order.length;
  if (opts.topP < 1) {
    let cum = 0;
    for (let j = 0; j < order.length; j++) {
      cum += weights[j] / total;
      if (cum >= opts.topP) {
        keep = j + 1;
        break;
      }
    }
  }
  const kept = weights.slice(0, keep);
  const keptTotal = kept.reduce((s, w) => s + w, 0);
  let r = random() * keptTotal;
  for (let j = 0; j < keep; j++) {
    r -= kept[j];
    if (r < 0) return order[j];
  }
  return order[keep - 1];
}
