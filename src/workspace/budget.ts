/**
 * Fits the packed files into the token budget. When they do not fit, the LARGEST files (in bytes
 * of their rendered block; ties: the later one in packing order) are left out first: one huge
 * file should not crowd out hundreds of small ones, and leaving files out never reorders the
 * rest, so the stable prefix of the context survives. Because the ranking is by bytes, files are
 * tokenized smallest first and tokenizing stops where the budget is certainly exceeded, so a
 * workspace far over budget costs little more than the budget itself. Token counts are exact:
 * every kept file and the index are measured with the real tokenizer.
 *
 * With the previous pack of the same settings (fitBudgetAfter) the rule is different, because a
 * context already ingested should change only at its end: see fitBudgetAfter.
 */
import { UserError } from '../common/errors';

export interface BudgetInput {
  /** Byte length of each file block, in packing order. */
  bytes: readonly number[];
  /** Tokens of block i; called at most once per block. */
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
  const indexNone = emptyIndexTokens(indexTokens, n, maxTokens);
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

/** Where a file stood in the previous pack: 'kept' or 'over-budget' with the same bytes, else 'changed' (edited, new, or omitted then for another reason). */
export type PreviousFate = 'kept' | 'over-budget' | 'changed';

export interface BudgetAfterInput extends BudgetInput {
  /** The fate of each block in the previous pack, in packing order. */
  previously: readonly PreviousFate[];
}

/**
 * Fits the budget so that the context ingested from the previous pack changes as late as possible.
 * When every file fits, every file is kept. Otherwise the changed files go in first (they are what
 * the user is working on; if they alone are over the budget, the largest of them give way as in
 * fitBudget); then the unchanged files that were kept, the latest in packing order giving way
 * first, so only the tail after them has to be recomputed. Files the previous pack left out stay
 * out even when there is room: let in, they would land mid-context and force a recompute from
 * there. They come back once every file fits. Files are measured in packing order (changed first),
 * stopping where the budget is certainly exceeded; the ones left out before are measured only
 * when all the others fit.
 */
export async function fitBudgetAfter({ bytes, measure, indexTokens, maxTokens, previously }: BudgetAfterInput): Promise<{ kept: boolean[]; tokens: (number | undefined)[] }> {
  const n = bytes.length;
  const tokens = new Array<number | undefined>(n).fill(undefined);
  const tokensOf = async (i: number) => {
    if (tokens[i] === undefined) tokens[i] = await measure(i);
    return tokens[i];
  };
  const indexNone = emptyIndexTokens(indexTokens, n, maxTokens);
  const fated = (fate: PreviousFate) => previously.flatMap((f, i) => (f === fate ? [i] : []));
  const changed = fated('changed');
  const unchanged = fated('kept');
  const outBefore = fated('over-budget');
  const maskOf = (files: readonly number[]) => {
    const mask = new Array<boolean>(n).fill(false);
    for (const i of files) mask[i] = true;
    return mask;
  };
  /** Tokens of `files`, or undefined as soon as they certainly exceed `room`. */
  const tokensWithin = async (files: readonly number[], room: number) => {
    let sum = 0;
    for (const i of files) {
      sum += await tokensOf(i);
      if (sum > room) return undefined;
    }
    return sum;
  };

  const current = [...changed, ...unchanged];
  const currentTokens = await tokensWithin(current, maxTokens - indexNone);
  if (currentTokens !== undefined && currentTokens + indexTokens(maskOf(current)) <= maxTokens) {
    if (outBefore.length > 0) {
      const all = new Array<boolean>(n).fill(true);
      const outTokens = await tokensWithin(outBefore, maxTokens - indexNone - currentTokens);
      if (outTokens !== undefined && currentTokens + outTokens + indexTokens(all) <= maxTokens) return { kept: all, tokens };
    }
    return { kept: maskOf(current), tokens };
  }

  const ofChanged = await fitBudget({
    bytes: changed.map((i) => bytes[i]),
    measure: (j) => tokensOf(changed[j]),
    indexTokens: (mask) => indexTokens(maskOf(changed.filter((_, j) => mask[j]))),
    maxTokens,
  });
  const kept = maskOf(changed.filter((_, j) => ofChanged.kept[j]));
  // filesWith[p]: tokens of the kept changed files and the first p unchanged ones, for every p
  // that can fit next to the smallest possible index, the one without those p.
  const indexChanged = indexTokens(kept);
  const filesWith = [changed.reduce((sum, i) => (kept[i] ? sum + tokens[i]! : sum), 0)];
  for (const i of unchanged) {
    const next = filesWith[filesWith.length - 1] + (await tokensOf(i));
    if (next + indexChanged > maxTokens) break;
    filesWith.push(next);
  }
  const keptWith = (p: number) => {
    const mask = kept.slice();
    for (let j = 0; j < p; j++) mask[unchanged[j]] = true;
    return mask;
  };
  // The index only grows with p, so its size at the largest candidate bounds the p that certainly
  // fit; binary search above them.
  let hi = filesWith.length - 1;
  const indexMost = indexTokens(keptWith(hi));
  let lo = 0;
  while (lo < hi && filesWith[lo + 1] + indexMost <= maxTokens) lo++;
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if (filesWith[mid] + indexTokens(keptWith(mid)) <= maxTokens) lo = mid;
    else hi = mid - 1;
  }
  return { kept: keptWith(lo), tokens };
}

function emptyIndexTokens(indexTokens: BudgetInput['indexTokens'], n: number, maxTokens: number): number {
  const tokens = indexTokens(new Array<boolean>(n).fill(false));
  if (tokens > maxTokens) {
    throw new UserError(`the token budget of ${maxTokens} is smaller than the file index alone (${tokens} tokens); raise --max-tokens / kimiLinear.maxContextTokens`);
  }
  return tokens;
}
