/**
 * Ctrl-C and unwritable outputs in the CLI: an interrupted `klc ingest` exits 130 with one line
 * and leaves no temp file; a write cut off by the interrupt leaves the old file whole; `--out`
 * where nothing can be written is a one-line user error (exit 1).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { removeUnfinishedWrites, writeFileAtomic } from '../../../src/common/atomic';
import { isUserError } from '../../../src/common/errors';

const repoRoot = resolve(__dirname, '..', '..', '..');
const klc = [join(repoRoot, 'src/cli.ts')];

function filesUnder(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((d) => (d.isDirectory() ? filesUnder(join(dir, d.name)) : [join(dir, d.name)]));
}

test('Ctrl-C during klc ingest exits 130 with one line and leaves no temp file', async () => {
  const ws = mkdtempSync(join(tmpdir(), 'klc-sigint-ws-'));
  const cache = mkdtempSync(join(tmpdir(), 'klc-sigint-cache-'));
  try {
    for (let f = 0; f < 40; f++) {
      const body = Array.from({ length: 60 }, (_, i) => `export const v${f}_${i} = ${f * 1000 + i} * ${i + 7} + ${(i * 31) % 97};`).join('\n');
      writeFileSync(join(ws, `part${f}.ts`), `${body}\n`);
    }
    const child = spawn(process.execPath, ['--import', 'tsx', ...klc, 'ingest', ws, '--backend', 'reference', '--cache-dir', cache], { cwd: repoRoot });
    let stderr = '';
    let interrupted = false;
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (chunk: string) => {
      stderr += chunk;
      // The model is open and the ingest under way: interrupt it as a user would.
      if (!interrupted && /^model .* parameters\) on reference/m.test(stderr)) {
        interrupted = true;
        setTimeout(() => child.kill('SIGINT'), 500);
      }
    });
    const [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((done) => child.on('exit', (c, s) => done([c, s])));
    assert.ok(interrupted, stderr);
    assert.equal(signal, null, 'exited, not killed by the signal');
    assert.equal(code, 130, stderr);
    assert.equal(stderr.trimEnd().split('\n').at(-1), 'klc ingest: interrupted');
    assert.deepEqual(filesUnder(cache).filter((f) => f.endsWith('.tmp')), []);
  } finally {
    rmSync(ws, { recursive: true, force: true });
    rmSync(cache, { recursive: true, force: true });
  }
});

test('a write cut off by the interrupt leaves the old file whole and no temp file', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'klc-unfinished-'));
  try {
    const file = join(dir, 'state.bin');
    writeFileSync(file, 'old');
    function* parts(): Generator<Uint8Array> {
      yield Buffer.from('new, part one');
      // Ctrl-C arrives between two parts.
      removeUnfinishedWrites();
      assert.deepEqual(readdirSync(dir), ['state.bin'], 'the temp file is gone at once');
      yield Buffer.from('new, part two');
    }
    await assert.rejects(writeFileAtomic(file, parts()));
    assert.equal(readFileSync(file, 'utf8'), 'old');
    assert.deepEqual(readdirSync(dir), ['state.bin']);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('an --out that cannot be written is a one-line user error', async () => {
  const ws = mkdtempSync(join(tmpdir(), 'klc-out-ws-'));
  try {
    writeFileSync(join(ws, 'a.ts'), 'export const a = 1;\n');
    mkdirSync(join(ws, 'folder'));
    for (const [out, reason] of [[join(ws, 'a.ts', 'packed.txt'), 'a part of the path is a file, not a folder'], [join(ws, 'folder'), 'it is a folder']]) {
      const r = spawnSync(process.execPath, ['--import', 'tsx', ...klc, 'pack', ws, '--out', out], { encoding: 'utf8', cwd: repoRoot });
      assert.equal(r.status, 1, r.stderr);
      assert.equal(r.stderr, `klc pack: cannot write ${out}: ${reason}. Choose a writable path or free the space.\n`);
    }
    assert.deepEqual(readdirSync(ws).sort(), ['a.ts', 'folder']);
    assert.deepEqual(readdirSync(join(ws, 'folder')), []);
    await assert.rejects(writeFileAtomic(join(ws, 'a.ts', 'x'), 'x'), (e) => isUserError(e));
    assert.equal(existsSync(join(ws, 'a.ts')), true);
  } finally {
    rmSync(ws, { recursive: true, force: true });
  }
});
