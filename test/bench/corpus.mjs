// The default benchmark corpus: source trees of installed npm packages copied into one folder.
// Copied (not packed in place) because packing inside node_modules would be refused by this
// repository's own .gitignore, which both packers honour. Timestamps are kept, so the packing
// order is the same on every run.
import { cpSync, existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';

export const CORPUS_PACKAGES = ['highlight.js', 'zod', 'jsdom', 'eslint', 'css-tree', 'repomix', '@types', 'mocha', 'markdown-it'];

/** Copies the packages into `target` and returns the number of files copied. */
export function buildCorpus(nodeModules, target) {
  let files = 0;
  for (const name of CORPUS_PACKAGES) {
    const from = join(nodeModules, name);
    if (!existsSync(from)) throw new Error(`${from} is missing; run npm install first`);
    cpSync(from, join(target, name), { recursive: true, preserveTimestamps: true, dereference: true });
    files += countFiles(join(target, name));
  }
  return files;
}

function countFiles(dir) {
  return readdirSync(dir).reduce((n, name) => {
    const p = join(dir, name);
    return n + (statSync(p).isDirectory() ? countFiles(p) : 1);
  }, 0);
}
