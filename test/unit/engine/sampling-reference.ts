/**
 * What a sampled pick should draw from, computed here in float64 from the definition rather than
 * from src/engine/sampler: softmax(logits / T) over the ids below `vocab`, kept to the top-k most
 * likely, then to the smallest most-likely set whose probability reaches top-p, renormalised.
 */
export interface PickSettings {
  temperature: number;
  topP: number;
  topK: number;
  vocab: number;
}

/** [id, probability] pairs, most likely first (ties: lower id first). */
export function pickDistribution(logits: ArrayLike<number>, s: PickSettings): [number, number][] {
  const n = Math.min(s.vocab, logits.length);
  let max = -Infinity;
  for (let i = 0; i < n; i++) max = Math.max(max, logits[i]);
  let entries: [number, number][] = [];
  let z = 0;
  for (let i = 0; i < n; i++) {
    const e = Math.exp((logits[i] - max) / s.temperature);
    entries.push([i, e]);
    z += e;
  }
  entries = entries.map(([i, e]) => [i, e / z]);
  entries.sort((a, b) => b[1] - a[1] || a[0] - b[0]);
  if (s.topK > 0) entries = entries.slice(0, s.topK);
  const kMass = entries.reduce((m, [, p]) => m + p, 0);
  entries = entries.map(([i, p]) => [i, p / kMass]);
  if (s.topP < 1) {
    let mass = 0;
    let keep = entries.length;
    for (let j = 0; j < entries.length; j++) {
      mass += entries[j][1];
      if (mass >= s.topP) {
        keep = j + 1;
        break;
      }
    }
    entries = entries.slice(0, keep);
  }
  const mass = entries.reduce((m, [, p]) => m + p, 0);
  return entries.map(([i, p]) => [i, p / mass]);
}

/** The id whose cumulative interval of `dist` (in its order) holds u ∈ [0, 1). */
export function inverseCdf(dist: readonly [number, number][], u: number): number {
  let cum = 0;
  for (const [id, p] of dist) {
    cum += p;
    if (u < cum) return id;
  }
  return dist[dist.length - 1][0];
}

/**
 * Pearson's chi-square statistic of `counts` against `dist` (ids expected fewer than 5 times are
 * pooled into one bin, as the test requires), and the statistic's 0.999 quantile for its degrees
 * of freedom (Wilson–Hilferty): a correct sampler exceeds it once in a thousand seeds, and the
 * seeds here are fixed.
 */
export function chiSquare(counts: ReadonlyMap<number, number>, dist: readonly [number, number][], draws: number): { statistic: number; critical: number } {
  const bins: { expected: number; observed: number }[] = [];
  const pooled = { expected: 0, observed: 0 };
  for (const [id, p] of dist) {
    const bin = { expected: draws * p, observed: counts.get(id) ?? 0 };
    if (bin.expected < 5) {
      pooled.expected += bin.expected;
      pooled.observed += bin.observed;
    } else {
      bins.push(bin);
    }
  }
  if (pooled.expected > 0) bins.push(pooled);
  const statistic = bins.reduce((s, b) => s + (b.observed - b.expected) ** 2 / b.expected, 0);
  const df = Math.max(1, bins.length - 1);
  const z999 = 3.0902;
  const critical = df * (1 - 2 / (9 * df) + z999 * Math.sqrt(2 / (9 * df))) ** 3;
  return { statistic, critical };
}
