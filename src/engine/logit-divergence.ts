/**
 * How far a model's next-token distributions moved from a baseline's on the same tokens (a
 * quantized model against the unquantized one): per position KL(p_base ‖ p_other) of the softmax
 * distributions and whether the two argmax tokens agree, then their mean, max and agreement rate.
 */
import { argmax } from './sampler';

/** Per-position figures of one comparison, in the rows' order. */
export interface PositionDivergence {
  /** KL(p_base ‖ p_other) in nats. */
  kl: Float64Array;
  /** 1 where both rows have the same argmax token, else 0. */
  sameTop1: Uint8Array;
}

export interface DivergenceSummary {
  positions: number;
  /** Mean KL(p_base ‖ p_other) over the positions, in nats. */
  meanKl: number;
  maxKl: number;
  /** Fraction of positions whose argmax tokens agree, in [0, 1]. */
  top1Agreement: number;
}

/**
 * log-softmax of `row` as (row[i] − max) − log Σ exp(row − max), in float64: the shift keeps large
 * logits from overflowing, and taking it before anything else keeps the large offset out of the sum.
 */
function logSoftmaxParts(row: Float32Array): { max: number; logSum: number } {
  let max = -Infinity;
  for (let i = 0; i < row.length; i++) if (row[i] > max) max = row[i];
  let sum = 0;
  for (let i = 0; i < row.length; i++) sum += Math.exp(row[i] - max);
  return { max, logSum: Math.log(sum) };
}

function klOfRows(base: Float32Array, other: Float32Array): number {
  const b = logSoftmaxParts(base);
  const o = logSoftmaxParts(other);
  let kl = 0;
  for (let i = 0; i < base.length; i++) {
    const logP = base[i] - b.max - b.logSum;
    const p = Math.exp(logP);
    // A probability that underflows to 0 contributes nothing (p log p → 0), whatever q is.
    if (p > 0) kl += p * (logP - (other[i] - o.max - o.logSum));
  }
  // KL is never negative; rounding can leave a few ulps below 0 for nearly equal rows.
  return Math.max(0, kl);
}

function checkFinite(row: Float32Array, which: string, position: number): void {
  for (let i = 0; i < row.length; i++) {
    if (!Number.isFinite(row[i])) throw new Error(`${which} logits at position ${position}, token ${i} are ${row[i]}: the divergence is undefined`);
  }
}

/** Compares two [positions × vocab] logit matrices row by row. */
export function comparePositions(base: Float32Array, other: Float32Array, vocab: number): PositionDivergence {
  if (!Number.isInteger(vocab) || vocab < 1) throw new Error(`comparePositions: vocab must be a positive integer, got ${vocab}`);
  if (base.length !== other.length) throw new Error(`comparePositions: the baseline has ${base.length} logits, the other ${other.length}`);
  if (base.length % vocab !== 0) throw new Error(`comparePositions: ${base.length} logits are not whole rows of ${vocab}`);
  const positions = base.length / vocab;
  const kl = new Float64Array(positions);
  const sameTop1 = new Uint8Array(positions);
  for (let t = 0; t < positions; t++) {
    const b = base.subarray(t * vocab, (t + 1) * vocab);
    const o = other.subarray(t * vocab, (t + 1) * vocab);
    checkFinite(b, 'baseline', t);
    checkFinite(o, 'compared', t);
    kl[t] = klOfRows(b, o);
    sameTop1[t] = argmax(b) === argmax(o) ? 1 : 0;
  }
  return { kl, sameTop1 };
}

/** Mean and max KL and top-1 agreement over all positions of `parts` (e.g. one part per sequence). */
export function summarizeDivergence(parts: readonly PositionDivergence[]): DivergenceSummary {
  let positions = 0;
  let klSum = 0;
  let maxKl = 0;
  let agree = 0;
  for (const { kl, sameTop1 } of parts) {
    positions += kl.length;
    for (let t = 0; t < kl.length; t++) {
      klSum += kl[t];
      if (kl[t] > maxKl) maxKl = kl[t];
      agree += sameTop1[t];
    }
  }
  if (positions === 0) throw new Error('summarizeDivergence: no positions to summarize');
  return { positions, meanKl: klSum / positions, maxKl, top1Agreement: agree / positions };
}

/** comparePositions and summarizeDivergence in one step. */
export function compareLogits(base: Float32Array, other: Float32Array, vocab: number): DivergenceSummary {
  return summarizeDivergence([comparePositions(base, other, vocab)]);
}
