/**
 * How far a bf16 computation lands from the float64 reference run, and whether ours is no farther
 * than transformers' own bf16 run (test/gpu/hf-bf16.test.ts). Both runs are measured with the same
 * figures against the same reference logits:
 *  - per position, the relative error ‖logits − reference‖₂ / ‖reference‖₂ over the vocabulary;
 *    a run is judged by the median over its positions (the max is reported too);
 *  - top-1 agreement: the share of positions whose argmax equals the reference's.
 *
 * Why the median and not the maximum: a random-weight MoE routes each token to the experts whose
 * router scores are highest, and where two scores tie to within bf16 rounding a run picks the other
 * expert. That position's logits then move by tens of percent, in transformers' bf16 run as in
 * ours, at positions that differ between the runs (measured on the tiny checkpoints: both reach a
 * maximum of 0.4–0.7 on 300 tokens). The maximum over a case measures which run met such a tie,
 * not precision; the median measures the rounding every position sees, and it doubles with each
 * mantissa bit lost.
 */
import { argmax } from '../../src/engine/sampler';

export interface Closeness {
  /** Per position: ‖Δ‖₂ / ‖reference‖₂ over the vocabulary. */
  errors: Float64Array;
  /** Positions whose top token equals the reference's. */
  top1Equal: number;
  positions: number;
}

/**
 * Slack of the comparison, and why.
 * medianFactor: two runs of the same precision differ in their median by a few percent with which
 * values happen to round badly; 10% keeps that luck from failing the check, while a computation
 * coarser than transformers' bf16 (one mantissa bit less doubles the error) still fails.
 * top1: a flip happens only where the reference's two best logits nearly tie, so which positions
 * flip is rounding luck; a run may have one more flip than transformers, or 1% more of its
 * positions. With few positions (a 1-token prefill) one flip is therefore allowed: one position
 * cannot rank two runs; the check pooled over all of a checkpoint's positions still can.
 */
export const SLACK = { medianFactor: 1.1, top1Share: 0.01, top1Min: 1 } as const;

/** Per-position errors and top-1 agreement of `got` against `reference`, both [positions, vocab] row-major. */
export function closeness(got: Float32Array, reference: Float32Array, vocab: number): Closeness {
  if (got.length !== reference.length) throw new Error(`${got.length} logits vs ${reference.length} in the reference run`);
  if (vocab < 1 || reference.length % vocab !== 0) throw new Error(`${reference.length} logits are not rows of ${vocab}`);
  const positions = reference.length / vocab;
  const errors = new Float64Array(positions);
  let top1Equal = 0;
  for (let p = 0; p < positions; p++) {
    const a = got.subarray(p * vocab, (p + 1) * vocab);
    const b = reference.subarray(p * vocab, (p + 1) * vocab);
    let diff = 0;
    let norm = 0;
    for (let i = 0; i < vocab; i++) {
      diff += (a[i] - b[i]) ** 2;
      norm += b[i] ** 2;
    }
    errors[p] = Math.sqrt(diff) / Math.sqrt(norm);
    if (argmax(a) === argmax(b)) top1Equal++;
  }
  return { errors, top1Equal, positions };
}

/** The median of the per-position errors; NaN or Infinity when any is not finite. */
export function median(c: Closeness): number {
  if (c.errors.some((e) => !Number.isFinite(e))) return Infinity;
  const s = Float64Array.from(c.errors).sort();
  const n = s.length;
  return n % 2 === 1 ? s[(n - 1) / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
}

/** The largest per-position error (reported, not judged: see the module comment). */
export function worst(c: Closeness): number {
  return c.errors.reduce((m, e) => (Number.isFinite(e) ? Math.max(m, e) : Infinity), 0);
}

/** Several cases as one: their positions together. */
export function pooled(cases: readonly Closeness[]): Closeness {
  const errors = new Float64Array(cases.reduce((s, c) => s + c.positions, 0));
  let at = 0;
  for (const c of cases) {
    errors.set(c.errors, at);
    at += c.positions;
  }
  return { errors, top1Equal: cases.reduce((s, c) => s + c.top1Equal, 0), positions: errors.length };
}

/** Flips allowed beyond transformers' over `positions` positions (see SLACK). */
export function top1Slack(positions: number): number {
  return Math.max(SLACK.top1Min, Math.ceil(SLACK.top1Share * positions));
}

/**
 * Why `ours` is farther from the reference than transformers' bf16 run (`theirs`) beyond the slack;
 * empty when it is not. A non-finite error is always a failure.
 */
export function farther(what: string, ours: Closeness, theirs: Closeness): string[] {
  if (ours.positions !== theirs.positions) throw new Error(`${what}: ${ours.positions} positions vs ${theirs.positions}`);
  const why: string[] = [];
  const [mine, hf] = [median(ours), median(theirs)];
  if (!(mine <= SLACK.medianFactor * hf)) {
    why.push(`${what}: median relative error ${mine.toExponential(2)} > ${SLACK.medianFactor} × transformers bf16's ${hf.toExponential(2)}`);
  }
  const slack = top1Slack(ours.positions);
  if (ours.top1Equal < theirs.top1Equal - slack) {
    why.push(`${what}: top-1 equal to the reference at ${ours.top1Equal} of ${ours.positions} positions, transformers bf16 at ${theirs.top1Equal} (${slack} fewer allowed)`);
  }
  return why;
}

export function describe(c: Closeness): string {
  return `relative error median ${median(c).toExponential(2)} max ${worst(c).toExponential(2)}, top-1 ${(c.top1Equal / c.positions).toFixed(3)} (${c.top1Equal}/${c.positions})`;
}
