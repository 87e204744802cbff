/**
 * `klc ingest` in a small git repository after a new, an edited, a deleted and a renamed file:
 * each time its `state` line says it resumed exactly where the first changed file sat in the
 * previous pack and computed only the rest. The expected positions come from the packer's
 * manifests of the workspace before each change, not from the session.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { appendFileSync, mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { repoClosing, repoPreamble } from '../../../src/engine/chat-template';
import { loadTokenizer } from '../../../src/engine/model/tokenizer';
import { packWorkspace, type PackResult } from '../../../src/workspace';
import { git } from '../workspace/fixture';

const repoRoot = resolve(__dirname, '..', '..', '..');

function source(name: string, lines: number): string {
  return Array.from({ length: lines }, (_, i) => `export function ${name}${i}(x: number): number {\n  return x * ${i + 2} + ${name.length};\n}\n`).join('\n');
}

interface StateLine {
  tokens: number;
  state: string;
}

function ingest(ws: string, cache: string): StateLine {
  const r = spawnSync(process.execPath, ['--import', 'tsx', join(repoRoot, 'src/cli.ts'), 'ingest', ws, '--backend', 'reference', '--cache-dir', cache], {
    encoding: 'utf8',
    cwd: repoRoot,
  });
  assert.equal(r.status, 0, r.stderr);
  const field = (name: string) => /^(\S+)\s+(.*)$/m.exec(r.stdout.split('\n').find((l) => l.startsWith(`${name} `)) ?? '')?.[2] ?? '';
  return { tokens: Number(field('tokens')), state: field('state') };
}

test('klc ingest resumes at the first changed file after a new, edited, deleted or renamed file', async () => {
  const ws = mkdtempSync(join(tmpdir(), 'klc-resume-ws-'));
  const cache = mkdtempSync(join(tmpdir(), 'klc-resume-cache-'));
  try {
    const files = { 'a.ts': source('alpha', 4), 'b.ts': source('beta', 3), 'c.ts': source('gamma', 4), 'd.ts': source('delta', 3) };
    git(ws, ['init', '-q']);
    let when = 1_600_000_000;
    for (const [name, text] of Object.entries(files)) {
      writeFileSync(join(ws, name), text);
      git(ws, ['add', name]);
      git(ws, ['commit', '-q', '-m', name], (when += 1000));
    }
    const tokenizer = await loadTokenizer();
    const preamble = repoPreamble(tokenizer).length;
    const closing = repoClosing(tokenizer).length;
    const pack = () => packWorkspace({ roots: [ws], tokenizer });
    const startOf = (p: PackResult, path: string) => p.manifest.files.find((f) => f.path === path)!.start;
    const expectResumed = async (what: string, at: number) => {
      const r = ingest(ws, cache);
      const now = await pack();
      assert.equal(r.tokens, preamble + now.manifest.totalTokens + closing, `${what}: token count`);
      const resumed = preamble + at;
      assert.equal(r.state, `resumed from a checkpoint at token ${resumed}, computed ${r.tokens - resumed}`, what);
      assert.ok(at > 0, `${what}: the change is not at the very start`);
    };

    const first = ingest(ws, cache);
    assert.equal(first.state, 'computed from the start (no usable checkpoint)');

    let before = await pack();
    writeFileSync(join(ws, 'e.ts'), source('epsilon', 1));
    await expectResumed('new file', before.manifest.index.start);

    before = await pack();
    appendFileSync(join(ws, 'b.ts'), '// edited\n');
    await expectResumed('edited file', startOf(before, 'b.ts'));

    before = await pack();
    rmSync(join(ws, 'c.ts'));
    await expectResumed('deleted file', startOf(before, 'c.ts'));

    before = await pack();
    renameSync(join(ws, 'd.ts'), join(ws, 'renamed.ts'));
    await expectResumed('renamed file', startOf(before, 'd.ts'));

    assert.equal(ingest(ws, cache).state, 'saved state already up to date');
  } finally {
    rmSync(ws, { recursive: true, force: true });
    rmSync(cache, { recursive: true, force: true });
  }
});
