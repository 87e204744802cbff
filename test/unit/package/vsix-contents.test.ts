/**
 * What each platform package holds, listed by vsce itself from .vscodeignore plus the target's
 * lines (the same listing `vsce package` zips): exactly the bundles, webview, tokenizer, tiny
 * checkpoint, media, LICENSE and onnxruntime-node's JS with the one binary folder that
 * onnxruntime-node's binding.js loads on that platform; the CUDA library on linux-x64 only.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, before, test } from 'node:test';
import { ignoreFileFor, targetNamed } from '../../../tools/vsix/targets';

const root = resolve(__dirname, '..', '..', '..');
const vsce = createRequire(join(root, 'package.json'))('@vscode/vsce') as {
  listFiles(options: { cwd: string; ignoreFile: string }): Promise<string[]>;
};

const filesUnder = (dir: string, keep: (f: string) => boolean = () => true) =>
  readdirSync(join(root, dir), { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile())
    .map((e) => join(e.parentPath, e.name).slice(root.length + 1).replaceAll('\\', '/'))
    .filter(keep);

/** Every package's files, whatever the platform. */
function common(): string[] {
  return [
    'package.json', 'README.md', 'LICENSE',
    'dist/extension.js', 'dist/engine-host.js', 'dist/webview/chat.js', 'dist/webview/chat.css',
    'assets/tiny-model/config.json', 'assets/tiny-model/model.safetensors', 'assets/tiny-model/tiktoken.model', 'assets/tiny-model/tokenizer_config.json',
    'assets/tokenizer/tiktoken.model', 'assets/tokenizer/tokenizer_config.json',
    ...filesUnder('media'),
    'node_modules/onnxruntime-node/package.json',
    ...filesUnder('node_modules/onnxruntime-node/dist', (f) => f.endsWith('.js')),
    'node_modules/onnxruntime-common/package.json',
    ...filesUnder('node_modules/onnxruntime-common/dist/cjs', (f) => f.endsWith('.js') || f.endsWith('/package.json')),
  ];
}

let work: string;
before(() => {
  // The listing holds only files that exist: the bundles are built when this checkout has none.
  if (!existsSync(join(root, 'dist', 'engine-host.js')) || !existsSync(join(root, 'dist', 'webview', 'chat.css'))) {
    const r = spawnSync(process.execPath, ['esbuild.mjs'], { cwd: root, stdio: 'inherit' });
    assert.equal(r.status, 0, 'node esbuild.mjs failed');
  }
  work = mkdtempSync(join(tmpdir(), 'klc-vsix-'));
});
after(() => rmSync(work, { recursive: true, force: true }));

async function listed(target: string): Promise<string[]> {
  const ignoreFile = join(work, `.vscodeignore-${target}`);
  writeFileSync(ignoreFile, ignoreFileFor(readFileSync(join(root, '.vscodeignore'), 'utf8'), targetNamed(target)));
  return (await vsce.listFiles({ cwd: root, ignoreFile })).map((f) => f.replaceAll('\\', '/')).sort();
}

const platforms: { target: string; platform: string; arch: string }[] = [
  { target: 'linux-x64', platform: 'linux', arch: 'x64' },
  { target: 'linux-arm64', platform: 'linux', arch: 'arm64' },
  { target: 'darwin-arm64', platform: 'darwin', arch: 'arm64' },
  { target: 'win32-x64', platform: 'win32', arch: 'x64' },
];

for (const { target, platform, arch } of platforms) {
  test(`the ${target} package holds its own files and nothing else`, async (t) => {
    const cuda = target === 'linux-x64';
    if (cuda && !existsSync(join(root, 'native', 'build', 'klc_native.node'))) {
      t.skip('native/build/klc_native.node is not built here (npm run build:native needs nvcc); npm run package builds it');
      return;
    }
    const ort = `node_modules/onnxruntime-node/bin/napi-v6/${platform}/${arch}`;
    // On macOS the binding links @rpath/libonnxruntime.1.dylib; npm's extra copy under the full version name is left out.
    const ortFiles = filesUnder(ort, (f) => !/\/libonnxruntime\.\d+\.\d+\.\d+\.dylib$/.test(f));
    const expected = [...common(), ...ortFiles, ...(cuda ? ['native/build/klc_native.node'] : [])].sort();
    const files = await listed(target);
    assert.deepEqual(files, expected);
    // onnxruntime-node's binding.js requires bin/napi-v6/${process.platform}/${process.arch}/onnxruntime_binding.node.
    assert.ok(files.includes(`${ort}/onnxruntime_binding.node`), `${target} lacks the binding onnxruntime-node loads`);
    assert.ok(!files.some((f) => f.endsWith('.map') || f.startsWith('src/') || f.startsWith('test/')), 'no sources, tests or source maps');
  });
}
