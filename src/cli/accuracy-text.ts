/**
 * The tokens `klc accuracy` feeds every model: real text rather than random ids, so that the
 * distributions compared are those of code. The text is this repository's own TypeScript sources,
 * src/**\/*.ts in path order, each file preceded by a line naming it: fixed for a given commit and
 * present wherever klc runs (it runs from the repository's dist/).
 */
import { createHash } from 'node:crypto';
import { promises as fs } from 'node:fs';
import { join, relative, sep } from 'node:path';
import { UserError } from '../common/errors';
import { packageRoot } from '../common/package-root';
import { loadTokenizer, type Tokenizer } from '../engine/model/tokenizer';
import { bundledTokenizerDir } from '../engine/model/tokenizer/assets';

/** Tokens per sequence: long enough to reach the MLA layers' long-range attention, short enough for the reference backend. */
export const SEQUENCE_TOKENS = 512;

export const TEXT_SOURCE = "this repository's src/**/*.ts in path order";

export interface AccuracyTokens {
  /** Sequences of SEQUENCE_TOKENS tokens (the last may be shorter), `positions` tokens in all. */
  sequences: Int32Array[];
  /** The source files the tokens came from, relative to the repository. */
  files: string[];
  /** sha256 of the token ids (int32 little-endian), to tell whether two runs measured the same tokens. */
  digest: string;
}

/** The checkpoint folder's own tokenizer, else (no tokenizer files, or dummy weights) the bundled one; and its folder. */
export async function accuracyTokenizer(modelDir: string | undefined): Promise<{ tokenizer: Tokenizer; dir: string }> {
  const has = async (name: string) => modelDir !== undefined && ((await fs.stat(join(modelDir, name)).catch(() => null))?.isFile() ?? false);
  const dir = (await has('tiktoken.model')) || (await has('tokenizer.json')) ? (modelDir as string) : bundledTokenizerDir();
  return { tokenizer: await loadTokenizer(dir), dir };
}

async function sourceFiles(root: string): Promise<string[]> {
  const src = join(root, 'src');
  const names = await fs.readdir(src, { recursive: true }).catch((e: NodeJS.ErrnoException) => {
    throw new UserError(`cannot read ${src} (${e.code ?? String(e)}), the text klc accuracy measures on; run klc from a checkout of the repository`, src);
  });
  // Code-unit order, not locale order, so the text is the same on every machine.
  return names
    .filter((n) => n.endsWith('.ts'))
    .map((n) => relative(root, join(src, n)).split(sep).join('/'))
    .sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
}

/**
 * The first `positions` tokens of the text, split into sequences. Ids the model's vocabulary does
 * not have (the bundled tokenizer's 4096 ids against a checkpoint of fewer) are folded into it
 * (id mod vocab), which keeps the text's repetitions, the structure the comparison needs.
 */
export async function accuracyTokens(tokenizer: Tokenizer, vocab: number, positions: number): Promise<AccuracyTokens> {
  const root = packageRoot();
  const ids: number[] = [];
  const files: string[] = [];
  for (const file of await sourceFiles(root)) {
    if (ids.length >= positions) break;
    const text = await fs.readFile(join(root, file), 'utf8');
    for (const id of tokenizer.encodeOrdinary(`// ${file}\n${text}`)) ids.push(id % vocab);
    files.push(file);
  }
  if (ids.length < positions) {
    throw new UserError(`--positions ${positions} is more than the ${ids.length} tokens of ${TEXT_SOURCE}; use --positions ${ids.length} or fewer`);
  }
  const sequences: Int32Array[] = [];
  for (let t = 0; t < positions; t += SEQUENCE_TOKENS) sequences.push(Int32Array.from(ids.slice(t, Math.min(positions, t + SEQUENCE_TOKENS))));
  const digest = createHash('sha256').update(new Uint8Array(Int32Array.from(ids.slice(0, positions)).buffer)).digest('hex');
  return { sequences, files, digest };
}
