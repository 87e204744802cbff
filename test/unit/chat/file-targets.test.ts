import { test } from 'node:test';
import assert from 'node:assert/strict';
import { candidateFiles, packedRoots } from '../../../src/features/chat/file-targets';

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
