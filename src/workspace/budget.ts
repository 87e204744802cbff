/**
 * Fits the packed files into the token budget. When they do not fit, the LARGEST files are left
 * out first (ties: the later one in packing order): one huge file should not crowd out hundreds
 * of small ones, and leaving files out never reorders the rest, so the stable prefix survives.
 * The header lists the kept files, so its size depends on what is dropped; the fewest drops that
 * fit are found by binary search between bounds given by the largest and smallest header.
 */
import { UserError } from '../common/errors';

/**
 * `tokens[i]` is the size of file block i (packing order); `headerTokens(kept)` measures the header
 * for a keep-mask. Returns the keep-mask.
 */
export function fitBudget(tokens: readonly number[], maxTokens: number, headerTokens: (kept: readonly boolean[]) => number): boolean[] {
  const n = tokens.length;
  const total = tokens.reduce((a, b) => a + b, 0);
  const headerAll = headerTokens(tokens.map(() => true));
  if (headerAll + total <= maxTokens) return tokens.map(() => true);
  const headerNone = headerTokens(tokens.map(() => false));
  if (headerNone > maxTokens) {
    throw new UserError(`the token budget of ${maxTokens} is smaller than the pack header alone (${headerNone} tokens); raise --max-tokens / kimiLinear.maxContextTokens`);
  }
  const dropOrder = tokens.map((_, i) => i).sort((a, b) => tokens[b] - tokens[a] || b - a);
  // filesLeft[k]: tokens of the files kept after dropping the first k of dropOrder.
  const filesLeft = [total];
  for (let k = 0; k < n; k++) filesLeft.push(filesLeft[k] - tokens[dropOrder[k]]);
  const keptAfter = (k: number) => {
    const kept = tokens.map(() => true);
    for (let j = 0; j < k; j++) kept[dropOrder[j]] = false;
    return kept;
  };
  // The header only shrinks as files leave, so headerNone and headerAll bound the answer.
  let lo = filesLeft.findIndex((f) => f + headerNone <= maxTokens);
  let hi = filesLeft.findIndex((f) => f + headerAll <= maxTokens);
  if (hi < 0) hi = n;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (headerTokens(keptAfter(mid)) + filesLeft[mid] <= maxTokens) hi = mid;
    else lo = mid + 1;
  }
  return keptAfter(hi);
}
