/**
 * Fits the packed files into the token budget. When they do not fit, the LARGEST files (in bytes
 * of their rendered block; ties: the later one in packing order) are left out first: one huge
 * file should not crowd out hundreds of small ones, and leaving files out never reorders the
 * rest, so the stable prefix of the context survives. Because the ranking is by bytes, files are
 * tokenized smallest first and tokenizing stops where the budget is certainly exceeded, so a
 * workspace far over budget costs little more than the budget itself. Token counts are exact:
 * every kept file and the index are measured with the real tokenizer.
 */
import { UserError } from '../common/errors';

export interface BudgetInput {
  /** Byte length of each file block, in packing order. */
  bytes: readonly number[];
  /** Tokens of block i; called at most once per block, smallest blocks first. */
  measure: (i: number) => Promise<number>;
  /** Tokens of the index listing the kept files. */
  indexTokens: (kept: readonly boolean[]) => number;
  maxTokens: number;
}

/** Returns the keep-mask (packing order) and the token count of every measured block. */
export async function fitBudget({ bytes, measure, indexTokens, maxTokens }: BudgetInput): Promise<{ kept: boolean[]; tokens: (number | undefined)[] }> {
  const n = bytes.length;
  const tokens = new Array<number | undefined>(n).fill(undefined);
  const kept = new Array<boolean>(n).fill(false);
  const indexNone = indexTokens(kept);
  if (indexNone > maxTokens) {
    throw new UserError(`the token budget of ${maxTokens} is smaller than the file index alone (${indexNone} tokens); raise --max-tokens / kimiLinear.maxContextTokens`);
  }
  const smallestFirst = bytes.map((_, i) => i).sort((a, b) => bytes[a] - bytes[b] || a - b);
  // Measure the smallest files while they can still fit next to the smallest possible index.
  const measured: number[] = [];
  let sum = 0;
  for (const i of smallestFirst) {
    const t = await measure(i);
    tokens[i] = t;
    if (sum + t + indexNone > maxTokens) break;
    sum += t;
    measured.push(i);
    kept[i] = true;
  }
  // filesLeft[k]: tokens of the measured files kept after dropping the k largest of them.
  const filesLeft = [sum];
  for (let k = 0; k < measured.length; k++) filesLeft.push(filesLeft[k] - tokens[measured[measured.length - 1 - k]]!);
  const keptAfter = (k: number) => {
    const mask = kept.slice();
    for (let j = 0; j < k; j++) mask[measured[measured.length - 1 - j]] = false;
    return mask;
  };
  // The index only shrinks as files leave, so its sizes with all measured files and with none
  // bound the fewest drops that fit; binary search between them.
  const indexAll = indexTokens(kept);
  if (indexAll + sum <= maxTokens) return { kept, tokens };
  let lo = filesLeft.findIndex((f) => f + indexNone <= maxTokens);
  let hi = filesLeft.findIndex((f) => f + indexAll <= maxTokens);
  if (hi < 0) hi = measured.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (indexTokens(keptAfter(mid)) + filesLeft[mid] <= maxTokens) hi = mid;
    else lo = mid + 1;
  }
  return { kept: keptAfter(hi), tokens };
}
