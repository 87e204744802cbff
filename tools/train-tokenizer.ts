/**
 * Trains the tokenizer bundled in assets/tokenizer: byte-level BPE with Kimi's pre-tokenization,
 * 3840 ranks + Kimi's 256 special ids, on a fixed corpus of source files from packages pinned by
 * package-lock.json. Writes tiktoken.model, tokenizer_config.json and training.json (the corpus
 * file list with sha256, so a re-run can prove it trained on the same bytes).
 *
 *   npm run tokenizer:train              retrain and write the files
 *   npm run tokenizer:train -- --verify  retrain and fail unless the committed files come out identical
 */
import { createHash } from 'node:crypto';
import { readFileSync, readdirSync, existsSync } from 'node:fs';
import { join, relative } from 'node:path';
import { parseArgs } from 'node:util';
import { writeFileAtomicSync } from '../src/common/atomic';
import { KIMI_PAT_STR } from '../src/engine/model/tokenizer/pattern';
import { formatRanks } from '../src/engine/model/tokenizer/ranks';
import { trainByteLevelBpe } from './tokenizer/bpe-trainer';
import { kimiTokenizerConfig } from './tokenizer/kimi-config';

const BASE_VOCAB = 3840;
const MODEL_MAX_LENGTH = 1_048_576;
const ROOT = join(__dirname, '..');
const OUT = join(ROOT, 'assets', 'tokenizer');

/** Folders of pinned packages and which of their files (by suffix) make up the corpus. */
const CORPUS: readonly { pkg: string; dir: string; suffix: string; skip?: string }[] = [
  { pkg: '@types/node', dir: '', suffix: '.d.ts' },
  { pkg: 'eslint', dir: 'lib/rules', suffix: '.js' },
  { pkg: 'highlight.js', dir: 'lib/languages', suffix: '.js', skip: '.js.js' },
  { pkg: 'highlight.js', dir: 'styles', suffix: '.css', skip: '.min.css' },
  ...['markdown-it', 'globby', 'ignore', 'dompurify', 'vscode-jsonrpc', 'mocha', 'tsx', 'esbuild', 'eslint', 'repomix', 'typescript-eslint']
    .flatMap((pkg) => [{ pkg, dir: '', suffix: 'README.md' }, { pkg, dir: '', suffix: 'package.json' }]),
];

interface CorpusFile {
  path: string;
  version: string;
  bytes: number;
  sha256: string;
}

function corpusFiles(): { files: CorpusFile[]; texts: string[] } {
  const files: CorpusFile[] = [];
  const texts: string[] = [];
  for (const { pkg, dir, suffix, skip } of CORPUS) {
    const pkgDir = join(ROOT, 'node_modules', pkg);
    if (!existsSync(pkgDir)) throw new Error(`corpus package ${pkg} is not installed; run npm install first`);
    const version = (JSON.parse(readFileSync(join(pkgDir, 'package.json'), 'utf8')) as { version: string }).version;
    const names = readdirSync(join(pkgDir, dir))
      .filter((n) => n.endsWith(suffix) && !(skip && n.endsWith(skip)))
      .sort();
    for (const name of names) {
      const file = join(pkgDir, dir, name);
      const data = readFileSync(file);
      files.push({ path: relative(ROOT, file), version, bytes: data.length, sha256: createHash('sha256').update(data).digest('hex') });
      texts.push(data.toString('utf8'));
    }
  }
  return { files, texts };
}

function main(): void {
  const { values } = parseArgs({ options: { verify: { type: 'boolean', default: false }, help: { type: 'boolean', default: false } } });
  if (values.help) {
    process.stdout.write('usage: tsx tools/train-tokenizer.ts [--verify]\n');
    return;
  }
  const started = performance.now();
  const { files, texts } = corpusFiles();
  if (values.verify) {
    const recorded = (JSON.parse(readFileSync(join(OUT, 'training.json'), 'utf8')) as { corpus: CorpusFile[] }).corpus;
    const now = new Map(files.map((f) => [f.path, f.sha256]));
    const changed = recorded.filter((f) => now.get(f.path) !== f.sha256).map((f) => f.path);
    if (changed.length || recorded.length !== files.length) {
      throw new Error(`the corpus differs from training.json (${changed.length} changed, ${recorded.length} recorded vs ${files.length} now): ${changed.slice(0, 5).join(', ')}`);
    }
  }
  const tokens = trainByteLevelBpe(texts, BASE_VOCAB);
  if (tokens.length !== BASE_VOCAB) throw new Error(`the corpus only supports ${tokens.length} tokens, fewer than ${BASE_VOCAB}`);
  const ranksText = formatRanks(tokens);
  const configText = `${JSON.stringify(kimiTokenizerConfig(BASE_VOCAB, MODEL_MAX_LENGTH), null, 2)}\n`;
  const sha = (s: string) => createHash('sha256').update(s).digest('hex');
  const training = {
    about: 'Bundled tokenizer of kimi-linear-code: byte-level BPE trained by tools/train-tokenizer.ts on the files below.',
    pattern: KIMI_PAT_STR,
    base_vocab: BASE_VOCAB,
    special_tokens: 256,
    outputs: { 'tiktoken.model': sha(ranksText), 'tokenizer_config.json': sha(configText) },
    corpus_bytes: files.reduce((n, f) => n + f.bytes, 0),
    corpus: files,
  };
  const trainingText = `${JSON.stringify(training, null, 1)}\n`;
  const seconds = ((performance.now() - started) / 1000).toFixed(1);
  if (values.verify) {
    for (const [name, text] of [['tiktoken.model', ranksText], ['tokenizer_config.json', configText], ['training.json', trainingText]]) {
      if (readFileSync(join(OUT, name), 'utf8') !== text) throw new Error(`retraining gave a different ${name} than the one in ${OUT}`);
    }
    process.stdout.write(`verified: retraining on ${files.length} files reproduces ${OUT} exactly (${seconds} s)\n`);
    return;
  }
  writeFileAtomicSync(join(OUT, 'tiktoken.model'), ranksText);
  writeFileAtomicSync(join(OUT, 'tokenizer_config.json'), configText);
  writeFileAtomicSync(join(OUT, 'training.json'), trainingText);
  process.stdout.write(`trained ${BASE_VOCAB} ranks + 256 specials on ${files.length} files (${training.corpus_bytes} bytes) in ${seconds} s → ${OUT}\n`);
}

try {
  main();
} catch (e) {
  process.stderr.write(`train-tokenizer: ${e instanceof Error ? e.message : String(e)}\n`);
  process.exitCode = 1;
}
