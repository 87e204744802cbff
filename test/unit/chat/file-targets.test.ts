import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, realpathSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { candidateFiles, firstFileInside, packedRoots } from '../../../src/features/chat/file-targets';

const one = [{ name: 'app', fsPath: '/ws/app' }];
const two = [{ name: 'api', fsPath: '/ws/api' }, { name: 'web', fsPath: '/ws/web' }];

test('relative paths resolve under the folder', () => {
  assert.deepEqual(candidateFiles('src/a.ts', one), ['/ws/app/src/a.ts']);
  assert.deepEqual(candidateFiles('./src/a.ts', one), ['/ws/app/src/a.ts']);
});

test('multi-root: the folder-name prefix is tried first, then every folder', () => {
  assert.deepEqual(candidateFiles('web/src/a.ts', two), ['/ws/web/src/a.ts', '/ws/api/web/src/a.ts', '/ws/web/web/src/a.ts']);
  assert.deepEqual(candidateFiles('src/a.ts', two), ['/ws/api/src/a.ts', '/ws/web/src/a.ts']);
});

test('nothing outside the workspace folders', () => {
  assert.deepEqual(candidateFiles('../secret.txt', one), []);
  assert.deepEqual(candidateFiles('src/../../x.ts', one), []);
  assert.deepEqual(candidateFiles('/etc/passwd.txt', one), []);
  assert.deepEqual(candidateFiles('/ws/app/src/a.ts', one), ['/ws/app/src/a.ts']);
  assert.deepEqual(candidateFiles('/ws/application/a.ts', one), []);
  assert.deepEqual(candidateFiles('', one), []);
});

test('folders are named as the packer names them: base names, numbered when alike', () => {
  const roots = packedRoots(['/ws/front/app', '/ws/back/app', '/ws/lib']);
  assert.deepEqual(roots.map((r) => r.name), ['app', 'app-2', 'lib']);
  assert.equal(candidateFiles('app-2/src/index.ts', roots)[0], '/ws/back/app/src/index.ts');
  assert.equal(candidateFiles('app/src/index.ts', roots)[0], '/ws/front/app/src/index.ts');
  assert.equal(candidateFiles('lib/util.ts', roots)[0], '/ws/lib/util.ts');
});

test('a link is followed only to a file inside a workspace folder; the file opened is the real one', async () => {
  const base = realpathSync(mkdtempSync(join(tmpdir(), 'klc-links-')));
  try {
    const ws = join(base, 'ws');
    mkdirSync(join(ws, 'src'), { recursive: true });
    writeFileSync(join(ws, 'src', 'a.ts'), 'a\n');
    writeFileSync(join(base, 'secret.txt'), 'outside\n');
    symlinkSync(join(base, 'secret.txt'), join(ws, 'leak.txt'));
    symlinkSync(join(ws, 'src', 'a.ts'), join(ws, 'alias.ts'));
    symlinkSync(base, join(ws, 'up'));
    const roots = packedRoots([ws]);
    const open = (written: string) => firstFileInside(candidateFiles(written, roots), roots);
    assert.equal(await open('src/a.ts'), join(ws, 'src', 'a.ts'));
    assert.equal(await open('alias.ts'), join(ws, 'src', 'a.ts'), 'a link inside resolves to its target');
    assert.equal(await open('leak.txt'), undefined, 'a link to a file outside is refused');
    assert.equal(await open('up/secret.txt'), undefined, 'a linked folder outside is refused');
    assert.equal(await open('src'), undefined, 'a folder is not a file');
    assert.equal(await open('src/missing.ts'), undefined);
    // The workspace folder itself reached through a link: files under it are still inside.
    symlinkSync(ws, join(base, 'ws-link'));
    const linked = packedRoots([join(base, 'ws-link')]);
    assert.equal(await firstFileInside(candidateFiles('src/a.ts', linked), linked), join(ws, 'src', 'a.ts'));
  } finally {
    rmSync(base, { recursive: true, force: true });
  }
});
