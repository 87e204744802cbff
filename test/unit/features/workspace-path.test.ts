import assert from 'node:assert/strict';
import { test } from 'node:test';
import { rootNames, workspacePath } from '../../../src/features/explain/workspace-path';

test('single root: relative path with forward slashes', () => {
  assert.equal(workspacePath('/home/u/app/src/a.ts', ['/home/u/app']), 'src/a.ts');
});

test('multi-root: prefixed with the root folder name, as the packer names files', () => {
  assert.equal(workspacePath('/w/api/src/a.ts', ['/w/web', '/w/api']), 'api/src/a.ts');
  assert.deepEqual(rootNames(['/x/app', '/y/app', '/z/lib']), ['app', 'app-2', 'lib']);
  assert.equal(workspacePath('/y/app/main.go', ['/x/app', '/y/app']), 'app-2/main.go');
});

test('nested roots: the innermost root names the file', () => {
  assert.equal(workspacePath('/w/mono/pkg/a.ts', ['/w/mono', '/w/mono/pkg']), 'pkg/a.ts');
});

test('a file outside every root keeps its absolute path', () => {
  assert.equal(workspacePath('/etc/hosts', ['/w/app']), '/etc/hosts');
  assert.equal(workspacePath('/w/application/x.ts', ['/w/app']), '/w/application/x.ts');
});
