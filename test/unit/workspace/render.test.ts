import { test } from 'node:test';
import assert from 'node:assert/strict';
import { displayPath, renderFileBlock, renderIndex, renderTree } from '../../../src/workspace/render';

test('the tree lists folders before files, each level sorted', () => {
  const tree = renderTree(['src/z.ts', 'README.md', 'src/util/a.ts', 'src/a.ts', 'docs/x.md']);
  assert.equal(tree, 'docs/\n  x.md\nsrc/\n  util/\n    a.ts\n  a.ts\n  z.ts\nREADME.md\n');
});

test('the index names the file count and wraps the tree', () => {
  assert.equal(
    renderIndex(['b.ts', 'a.ts']),
    '<workspace files="2">\nEvery packed file above, as a tree:\na.ts\nb.ts\n</workspace>\n\n',
  );
});

test('a file block always ends its content with a newline and the block with a blank line', () => {
  assert.equal(renderFileBlock('a.ts', 'x', false), '<file path="a.ts">\nx\n</file>\n\n');
  assert.equal(renderFileBlock('a.ts', 'x\n', false), '<file path="a.ts">\nx\n</file>\n\n');
  assert.equal(renderFileBlock('e.ts', '', false), '<file path="e.ts">\n</file>\n\n');
  assert.equal(renderFileBlock('a "b" <c>&.ts', 'x\n', false), '<file path="a &quot;b&quot; &lt;c&gt;&amp;.ts">\nx\n</file>\n\n');
});

test('line numbers are right-aligned to the widest number', () => {
  const text = Array.from({ length: 10 }, (_, i) => `l${i + 1}`).join('\n') + '\n';
  const block = renderFileBlock('a.ts', text, true);
  assert.equal(block.split('\n')[1], ' 1| l1');
  assert.equal(block.split('\n')[10], '10| l10');
  assert.equal(renderFileBlock('a.ts', 'one\n\nthree', true), '<file path="a.ts">\n1| one\n2| \n3| three\n</file>\n\n');
});

test('control characters in names cannot break lines', () => {
  assert.equal(displayPath('a\nb\t.ts'), 'a\\x0ab\\x09.ts');
});
