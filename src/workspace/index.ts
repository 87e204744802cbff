/**
 * The workspace packer: turns 1..n workspace folders into one tokenized context and a manifest
 * that maps every packed file to its exact token span. Pure Node; the CLI and the extension
 * both call `packWorkspace`.
 *
 * Pipeline: discover (discover.ts) → per file: secret and lock names, size, read, content
 * classification (classify.ts), secret redaction (secrets.ts) → order (order.ts) → render and
 * tokenize each block on its own (render.ts) → fit the budget (budget.ts) → index → manifest.
 * The packed ids are the concatenation of each block's own ids, so spans are exact by
 * construction and a changed file can be re-tokenized alone.
 */
import { createHash } from 'node:crypto';
import { promises as fs } from 'node:fs';
import { isAbsolute, join, resolve } from 'node:path';
import { UserError } from '../common/errors';
import { fitBudget, fitBudgetAfter, type PreviousFate } from './budget';
import { classifyContent, isLockFile } from './classify';
import { DEFAULT_MAX_FILE_BYTES, DEFAULT_MAX_TOKENS } from './defaults';
import { discoverRoot, errorCode, type Candidate } from './discover';
import { compareOrder, gitTimes, orderKey } from './order';
import { mapPool } from './pool';
import { displayPath, renderFileBlock, renderIndex } from './render';
import { rootNames } from './root-names';
import { redactSecrets, secretFileByContent, secretFileByName } from './secrets';
import type { OmitReason, OmittedFileEntry, OrderKey, PackBlock, PackedFileEntry, PackManifest, PackOptions, PackResult, PreviousPack } from './types';

export * from './types';
export { renderFileBlock, renderIndex } from './render';

/**
 * Bumped whenever the packed text for the same files could change; part of every state cache key,
 * so states saved by another version are rebuilt once. 2: the file index moved after the files.
 */
export const PACKER_VERSION = '2.0.0';

const READ_CONCURRENCY = 32;
/** Synchronous tokenizing yields to the event loop this often so that cancellation is noticed. */
const YIELD_EVERY_MS = 50;

interface Readable {
  root: number;
  cand: Candidate;
  path: string;
}

interface Packable extends Readable {
  text: string;
  sha256: string;
  bytes: number;
  mtimeMs: number;
  redactions: number;
  order?: OrderKey;
}

type ReadOutcome = { packable: Packable } | { omitted: OmittedFileEntry };

export async function packWorkspace(options: PackOptions): Promise<PackResult> {
  const started = performance.now();
  const { tokenizer, signal, onProgress } = options;
  const maxTokens = positiveInteger(options.maxTokens ?? DEFAULT_MAX_TOKENS, 'maxTokens');
  const maxFileBytes = positiveInteger(options.maxFileBytes ?? DEFAULT_MAX_FILE_BYTES, 'maxFileBytes');
  const lineNumbers = options.lineNumbers ?? false;
  const roots = await checkRoots(options.roots);
  const names = rootNames(roots);
  const multiRoot = roots.length > 1;
  const shownPath = (root: number, rel: string) => displayPath(multiRoot ? `${names[root]}/${rel}` : rel);

  onProgress?.({ phase: 'discover', done: 0, total: roots.length });
  const omitted: OmittedFileEntry[] = [];
  const readables: Readable[] = [];
  // A folder nested in another root is found twice; its files are packed once, under the first root.
  const seen = new Set<string>();
  for (let r = 0; r < roots.length; r++) {
    signal?.throwIfAborted();
    const found = await discoverRoot(roots[r], options.include ?? [], options.exclude ?? []);
    for (const s of found.skipped) omitted.push({ path: shownPath(r, s.rel), root: roots[r], reason: s.reason, detail: s.detail });
    for (const cand of found.files) {
      if (seen.has(cand.abs)) continue;
      seen.add(cand.abs);
      readables.push({ root: r, cand, path: shownPath(r, cand.rel) });
    }
    onProgress?.({ phase: 'discover', done: r + 1, total: roots.length });
  }

  let readDone = 0;
  const outcomes = await mapPool(readables, READ_CONCURRENCY, async (item) => {
    signal?.throwIfAborted();
    const outcome = await readCandidate(item, roots[item.root], maxFileBytes);
    onProgress?.({ phase: 'read', done: ++readDone, total: readables.length });
    return outcome;
  });
  const packables: Packable[] = [];
  for (const o of outcomes) {
    if ('packable' in o) packables.push(o.packable);
    else omitted.push(o.omitted);
  }

  onProgress?.({ phase: 'order', done: 0, total: roots.length });
  for (let r = 0; r < roots.length; r++) {
    const mine = packables.filter((p) => p.root === r);
    const git = await gitTimes(roots[r], mine.map((p) => p.cand.rel));
    for (const p of mine) p.order = orderKey(p.cand.rel, p.mtimeMs, git);
    onProgress?.({ phase: 'order', done: r + 1, total: roots.length });
  }
  const ordered = packables as Required<Packable>[];
  ordered.sort(compareOrder);

  // Blocks are rendered again when measured rather than kept, so files far over the budget do not
  // hold a second copy of their text.
  const render = (i: number) => renderFileBlock(ordered[i].path, ordered[i].text, lineNumbers);
  const blockBytes = ordered.map((_, i) => Buffer.byteLength(render(i)));
  const blockTexts = new Array<string | undefined>(ordered.length);
  const blockIds = new Array<Uint32Array | undefined>(ordered.length);
  let measuredCount = 0;
  let lastYield = performance.now();
  const measure = async (i: number) => {
    blockTexts[i] = render(i);
    blockIds[i] = Uint32Array.from(tokenizer.encodeOrdinary(blockTexts[i]));
    measuredCount++;
    if (performance.now() - lastYield > YIELD_EVERY_MS) {
      onProgress?.({ phase: 'tokenize', done: measuredCount, total: ordered.length });
      await new Promise((r) => setImmediate(r));
      signal?.throwIfAborted();
      lastYield = performance.now();
    }
    return blockIds[i].length;
  };
  const indexFor = (kept: readonly boolean[]) => renderIndex(ordered.filter((_, i) => kept[i]).map((p) => p.path));
  onProgress?.({ phase: 'tokenize', done: 0, total: ordered.length });
  const budget = { bytes: blockBytes, measure, indexTokens: (mask: readonly boolean[]) => tokenizer.encodeOrdinary(indexFor(mask)).length, maxTokens };
  const { previous } = options;
  const previously = previous && ordered.map((p) => previousFate(previous, join(roots[p.root], p.cand.rel), p.sha256));
  const { kept } = previously ? await fitBudgetAfter({ ...budget, previously }) : await fitBudget(budget);
  onProgress?.({ phase: 'tokenize', done: ordered.length, total: ordered.length });
  onProgress?.({ phase: 'budget', done: 0, total: 1 });
  const indexText = indexFor(kept);
  const indexIds = tokenizer.encodeOrdinary(indexText);
  onProgress?.({ phase: 'budget', done: 1, total: 1 });

  const blocks: PackBlock[] = [];
  const files: PackedFileEntry[] = [];
  let total = 0;
  let bytes = 0;
  let secretsRedacted = 0;
  for (let i = 0; i < ordered.length; i++) {
    const p = ordered[i];
    const fileIds = blockIds[i];
    const fileText = blockTexts[i];
    if (!kept[i] || !fileIds || fileText === undefined) {
      const size = fileIds ? `${fileIds.length} tokens` : `${blockBytes[i]} bytes`;
      omitted.push({ path: p.path, root: roots[p.root], reason: 'over-budget', detail: `${size}; ${overBudgetWhy(previously?.[i], maxTokens)}`, file: p.cand.rel, sha256: p.sha256 });
      continue;
    }
    const start = total;
    total += fileIds.length;
    blocks.push({ kind: 'file', path: p.path, text: fileText, start, end: total });
    files.push({ path: p.path, root: roots[p.root], file: p.cand.rel, sha256: p.sha256, bytes: p.bytes, start, end: total, redactions: p.redactions, order: p.order });
    bytes += p.bytes;
    secretsRedacted += p.redactions;
  }
  const index = { start: total, end: total + indexIds.length };
  blocks.push({ kind: 'index', text: indexText, ...index });
  total = index.end;

  const ids = new Uint32Array(total);
  let offset = 0;
  for (let i = 0; i < ordered.length; i++) {
    const block = blockIds[i];
    if (!kept[i] || !block) continue;
    ids.set(block, offset);
    offset += block.length;
  }
  ids.set(indexIds, offset);

  omitted.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : a.reason < b.reason ? -1 : a.reason > b.reason ? 1 : 0));
  const omittedByReason: Partial<Record<OmitReason, number>> = {};
  for (const o of omitted) omittedByReason[o.reason] = (omittedByReason[o.reason] ?? 0) + 1;

  const manifest: PackManifest = {
    version: 2,
    packerVersion: PACKER_VERSION,
    tokenizer: tokenizer.id,
    maxTokens,
    lineNumbers,
    totalTokens: total,
    roots: roots.map((path, i) => ({ name: names[i], path })),
    index,
    files,
    omitted,
  };
  return {
    ids,
    blocks,
    manifest,
    stats: { files: files.length, tokens: total, bytes, omitted: omittedByReason, secretsRedacted, seconds: (performance.now() - started) / 1000 },
  };
}

function previousFate(previous: PreviousPack, abs: string, sha256: string): PreviousFate {
  if (previous.kept.get(abs) === sha256) return 'kept';
  if (previous.overBudget.get(abs) === sha256) return 'over-budget';
  return 'changed';
}

function overBudgetWhy(fate: PreviousFate | undefined, maxTokens: number): string {
  switch (fate) {
    case undefined:
      return `the largest files are left out to fit the budget of ${maxTokens} tokens`;
    case 'changed':
      return `the largest changed files are left out to fit the budget of ${maxTokens} tokens`;
    case 'kept':
      return `left out to fit the budget of ${maxTokens} tokens, latest in packing order first`;
    case 'over-budget':
      return `kept out to leave the ingested context unchanged; it comes back once every file fits the budget of ${maxTokens} tokens`;
  }
}

async function readCandidate(item: Readable, root: string, maxFileBytes: number): Promise<ReadOutcome> {
  const omit = (reason: OmitReason, detail: string): ReadOutcome => ({ omitted: { path: item.path, root, reason, detail } });
  const rel = item.cand.rel;
  const secretName = secretFileByName(rel);
  if (secretName) return omit('secret-file', `${secretName}; never packed`);
  if (isLockFile(rel)) return omit('lock-file', 'dependency lock file');
  let stat;
  try {
    stat = await fs.stat(item.cand.abs);
  } catch (e) {
    return omit('unreadable', errorCode(e));
  }
  // The walker saw a regular file, but it may have been replaced since (a pipe would block the read).
  if (!stat.isFile()) return omit('not-regular-file', 'no longer a regular file');
  if (stat.size > maxFileBytes) return omit('too-large', `${stat.size} bytes; the limit is ${maxFileBytes} (maxFileBytes)`);
  let raw: Buffer;
  try {
    raw = await fs.readFile(item.cand.abs);
  } catch (e) {
    return omit('unreadable', errorCode(e));
  }
  if (raw.length > maxFileBytes) return omit('too-large', `${raw.length} bytes; the limit is ${maxFileBytes} (maxFileBytes)`);
  const verdict = classifyContent(rel, raw);
  if (verdict.kind === 'omit') return omit(verdict.reason, verdict.detail);
  const secretContent = secretFileByContent(rel, verdict.text);
  if (secretContent) return omit('secret-file', `${secretContent}; never packed`);
  const redacted = redactSecrets(verdict.text);
  return {
    packable: {
      ...item,
      text: redacted.text,
      sha256: createHash('sha256').update(raw).digest('hex'),
      bytes: raw.length,
      mtimeMs: stat.mtimeMs,
      redactions: redacted.count,
    },
  };
}

function positiveInteger(value: number, field: string): number {
  if (!Number.isSafeInteger(value) || value < 1) throw new UserError(`${field} must be a positive whole number, got ${value}`);
  return value;
}

async function checkRoots(roots: readonly string[]): Promise<string[]> {
  if (roots.length === 0) throw new UserError('no workspace folder to pack; open a folder or pass one');
  const out: string[] = [];
  for (const root of roots) {
    if (!isAbsolute(root)) throw new UserError(`workspace folder '${root}' is not an absolute path`);
    const stat = await fs.stat(root).catch(() => undefined);
    if (!stat) throw new UserError(`workspace folder '${root}' does not exist; check the path`, root);
    if (!stat.isDirectory()) throw new UserError(`'${root}' is not a folder; pass the folder that contains it`, root);
    const abs = resolve(root);
    if (!out.includes(abs)) out.push(abs);
  }
  return out;
}

