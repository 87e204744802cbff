/**
 * `npm run package`: one .vsix per platform with `vsce package --target`. Every package holds the
 * production bundles, the webview, the bundled tokenizer and tiny checkpoint, media, LICENSE and
 * onnxruntime-node with only that platform's binary; linux-x64 also holds the prebuilt CUDA
 * library (sm_80/86/89/90 + PTX, and the Hopper MLA prefill kernel for sm_90a), which is built first
 * when missing or older than native/.
 * Usage: npm run package [-- --target linux-x64,win32-x64] [--out DIR]
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import { ignoreFileFor, NATIVE_LIBRARY, targetNamed, TARGETS, type VsixTarget, vsixName } from './vsix/targets';
import { zipEntries } from './vsix/zip-entries';

/**
 * The GPUs the CUDA library must run on: Ampere, Ada, Hopper, and PTX for newer ones; with 90 in the
 * list, build-native.mjs also builds the wgmma MLA prefill unit for sm_90a (H100/H200).
 */
const CUDA_ARCHS = 'sm_80 sm_86 sm_89 sm_90 compute_90 sm_90a (MLA prefill, MoE)';

const root = resolve(__dirname, '..');
const argv = process.argv.slice(2);
const opt = (name: string): string | undefined => {
  const i = argv.indexOf(name);
  return i >= 0 ? argv[i + 1] : undefined;
};

function fail(message: string): never {
  console.error(`package: ${message}`);
  process.exit(1);
}

function step(what: string, cmd: string, args: string[]): void {
  console.log(`package: ${what}`);
  const r = spawnSync(cmd, args, { cwd: root, stdio: 'inherit' });
  if (r.status !== 0) fail(`${what} failed (${r.status ?? r.signal})`);
}

function newestMtime(dir: string): number {
  return Math.max(...readdirSync(dir, { recursive: true, encoding: 'utf8' }).map((f) => statSync(join(dir, f)).mtimeMs));
}

/** Builds the CUDA library when it is missing or older than its sources, then checks what it was built for. */
function ensureCudaLibrary(): void {
  const library = join(root, NATIVE_LIBRARY);
  let built = 0;
  try {
    built = statSync(library).mtimeMs;
  } catch {
    // Not built yet.
  }
  const sources = Math.max(newestMtime(join(root, 'native', 'src')), newestMtime(join(root, 'native', 'include')));
  if (built < sources) step(built ? 'the CUDA library is older than native/: rebuilding it' : 'building the CUDA library', process.execPath, ['tools/build-native.mjs']);
  // Loading needs no GPU or driver: the library reports "no driver" only when asked for devices.
  const mod = { exports: {} as { buildArchs?: () => string } };
  try {
    process.dlopen(mod, library);
  } catch (e) {
    fail(`${library} does not load here (${(e as Error).message.split('\n')[0]}); rebuild it with: npm run build:native`);
  }
  const archs = mod.exports.buildArchs?.();
  if (archs !== CUDA_ARCHS) fail(`${library} was built for "${archs}", the package needs "${CUDA_ARCHS}"; rebuild it with: npm run build:native`);
}

function packageTarget(target: VsixTarget, outDir: string, version: string): string {
  const ignoreFile = join(outDir, `.vscodeignore-${target.name}`);
  writeFileSync(ignoreFile, ignoreFileFor(readFileSync(join(root, '.vscodeignore'), 'utf8'), target));
  const out = join(outDir, vsixName('kimi-linear-code', version, target));
  rmSync(out, { force: true });
  step(`packaging ${target.name}`, process.execPath, [
    require.resolve('@vscode/vsce/vsce'), 'package', '--target', target.name, '--ignoreFile', ignoreFile, '--out', out,
    // No repository is published yet: README links stay relative (they resolve inside the package).
    '--allow-missing-repository', '--no-rewrite-relative-links',
  ]);
  return out;
}

const names = (opt('--target') ?? TARGETS.map((t) => t.name).join(',')).split(',').map((s) => s.trim()).filter(Boolean);
const targets = names.map((n) => {
  try {
    return targetNamed(n);
  } catch (e) {
    return fail((e as Error).message);
  }
});
const outDir = resolve(root, opt('--out') ?? join('out', 'vsix'));
mkdirSync(outDir, { recursive: true });
const { version } = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { version: string };

step('building the production bundles', process.execPath, ['esbuild.mjs', '--production']);
if (targets.some((t) => t.cuda)) ensureCudaLibrary();
const made = targets.map((t) => ({ target: t.name, file: packageTarget(t, outDir, version) }));

console.log('\npackage: built');
for (const { target, file } of made) {
  const entries = zipEntries(file);
  const unpacked = entries.reduce((s, e) => s + e.size, 0);
  const mb = (bytes: number) => `${(bytes / 1e6).toFixed(1)} MB`;
  console.log(`  ${target.padEnd(13)} ${mb(statSync(file).size).padStart(9)}  (${entries.length} files, ${mb(unpacked)} unpacked)  ${relative(root, file)}`);
}
