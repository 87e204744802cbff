/**
 * What the EngineClient tests run against: the real engine process bundle, built from the
 * sources into out/, and the bundled tiny checkpoint (generated into out/ when this checkout has
 * not generated assets/tiny-model yet).
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { build } from 'esbuild';

const repoRoot = resolve(__dirname, '..', '..', '..');

/** Bundles src/engine/host/main.ts inside the repository, where the bundle finds the package root. */
export async function buildEngineHost(): Promise<string> {
  const outfile = join(repoRoot, 'out', 'unit-engine-host', 'engine-host.js');
  await build({
    entryPoints: [join(repoRoot, 'src', 'engine', 'host', 'main.ts')],
    outfile,
    bundle: true,
    platform: 'node',
    target: 'node20',
    format: 'cjs',
    external: ['vscode', '*.node', 'onnxruntime-node'],
    logLevel: 'warning',
  });
  return outfile;
}

/** undefined selects the bundled checkpoint, as the extension does by default. */
export function tinyModelDir(): string | undefined {
  if (existsSync(join(repoRoot, 'assets', 'tiny-model', 'config.json'))) return undefined;
  const out = join(repoRoot, 'out', 'unit-tiny-model');
  if (!existsSync(join(out, 'config.json'))) {
    const r = spawnSync(process.execPath, ['--import', 'tsx', join(repoRoot, 'tools', 'make-tiny-checkpoint.ts'), out], { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`make-tiny-checkpoint failed: ${r.stderr}`);
  }
  return out;
}

export function tempDir(prefix: string): string {
  return mkdtempSync(join(tmpdir(), `klc-${prefix}-`));
}

export function makeWorkspace(files: Record<string, string>): string {
  const root = tempDir('ws');
  for (const [path, text] of Object.entries(files)) {
    const file = join(root, path);
    mkdirSync(dirname(file), { recursive: true });
    writeFileSync(file, text);
  }
  return root;
}

/** A few small files, few enough tokens to ingest in about a second on the reference backend. */
export const SMALL_WORKSPACE: Record<string, string> = {
  'src/math.ts': 'export function add(a: number, b: number): number {\n  return a + b;\n}\n\nexport function twice(x: number): number {\n  return add(x, x);\n}\n',
  'src/main.ts': "import { twice } from './math';\n\nconsole.log(twice(21));\n",
  'README.md': '# tiny\n\nA workspace for the engine client tests: `twice` doubles a number with `add`.\n',
};

/**
 * SMALL_WORKSPACE and a longer file: an ingest of several prefill slices (512 tokens each on the
 * reference backend), so that a cancel after the first slice still finds work to stop.
 */
export const CANCELLABLE_WORKSPACE: Record<string, string> = {
  ...SMALL_WORKSPACE,
  'src/table.ts': Array.from({ length: 90 }, (_, i) => `export const row${i} = add(${i}, twice(${(i * 37) % 101}));`).join('\n') + '\n',
};
