/**
 * Prints the bundled tokenizer's encoding speed on real source (the TypeScript compiler's own
 * JavaScript, ~5 MB) next to the `tiktoken` library's on the same ranks, pattern and text.
 *   npx tsx tools/tokenizer/bench.ts [file…]
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Tiktoken } from 'tiktoken/lite';
import { loadTokenizer } from '../../src/engine/model/tokenizer';
import { bundledTokenizerDir } from '../../src/engine/model/tokenizer/assets';
import { KIMI_PAT_STR } from '../../src/engine/model/tokenizer/pattern';

async function main(): Promise<void> {
  const files = process.argv.length > 2 ? process.argv.slice(2) : [join(__dirname, '..', '..', 'node_modules', 'typescript', 'lib', 'typescript.js')];
  const text = files.map((f) => readFileSync(f, 'utf8')).join('\n').slice(0, 5_000_000);
  const mb = Buffer.byteLength(text) / 1e6;
  const tokenizer = await loadTokenizer();
  for (const run of ['cold cache', 'warm cache']) {
    const t0 = performance.now();
    const ids = tokenizer.encodeOrdinary(text);
    const s = (performance.now() - t0) / 1000;
    process.stdout.write(`ours (${run}): ${ids.length} tokens from ${mb.toFixed(2)} MB in ${s.toFixed(2)} s = ${Math.round(ids.length / s)} tokens/s, ${(mb / s).toFixed(1)} MB/s\n`);
  }
  const reference = new Tiktoken(readFileSync(join(bundledTokenizerDir(), 'tiktoken.model'), 'utf8'), Object.fromEntries(tokenizer.specialTokens), KIMI_PAT_STR);
  const t0 = performance.now();
  const n = reference.encode_ordinary(text).length;
  const s = (performance.now() - t0) / 1000;
  reference.free();
  process.stdout.write(`tiktoken 1.0 (WASM): ${n} tokens in ${s.toFixed(2)} s = ${Math.round(n / s)} tokens/s\n`);
}

void main();
