import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';

const PACKAGE_NAME = 'kimi-linear-code';

/**
 * The folder of the bundled tokenizer. Found by walking up from this module to the project's
 * package.json, so it works from the sources (tests), from the esbuild bundle in dist/ and from an
 * installed extension alike.
 */
export function bundledTokenizerDir(): string {
  for (let dir = __dirname; ; dir = dirname(dir)) {
    const manifest = join(dir, 'package.json');
    if (existsSync(manifest) && readName(manifest) === PACKAGE_NAME) return join(dir, 'assets', 'tokenizer');
    if (dirname(dir) === dir) {
      throw new Error(`cannot find the ${PACKAGE_NAME} package folder above ${__dirname}; the bundled tokenizer lives in its assets/tokenizer`);
    }
  }
}

function readName(manifest: string): string | undefined {
  try {
    return (JSON.parse(readFileSync(manifest, 'utf8')) as { name?: string }).name;
  } catch {
    return undefined;
  }
}
