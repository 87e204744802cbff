import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';

const PACKAGE_NAME = 'kimi-linear-code';

function nameOf(manifest: string): string | undefined {
  try {
    return (JSON.parse(readFileSync(manifest, 'utf8')) as { name?: string }).name;
  } catch {
    return undefined;
  }
}

/**
 * The project's package folder (where package.json and assets/ are), found by walking up from
 * this module, so it works from the sources (tests), from the esbuild bundles in dist/ and from
 * an installed extension alike.
 */
export function packageRoot(): string {
  for (let dir = __dirname; ; dir = dirname(dir)) {
    const manifest = join(dir, 'package.json');
    if (existsSync(manifest) && nameOf(manifest) === PACKAGE_NAME) return dir;
    if (dirname(dir) === dir) throw new Error(`cannot find the ${PACKAGE_NAME} package folder above ${__dirname}`);
  }
}

/** The bundled tiny checkpoint (see tools/make-tiny-checkpoint.ts). */
export function bundledModelDir(): string {
  return join(packageRoot(), 'assets', 'tiny-model');
}
