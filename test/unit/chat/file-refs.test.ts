import { test } from 'node:test';
import assert from 'node:assert/strict';
import { findFileRefs, parseFileRef } from '../../../webview/chat/file-refs';

const paths = (text: string) => findFileRefs(text).map((r) => text.slice(r.start, r.end));

test('finds paths with and without line suffixes', () => {
  const text = 'See src/engine/api.ts:42, then main.ts and ./lib/x.py#L3-L9 or a.rs:7:5 and b.go:10-20.';
  assert.deepEqual(paths(text), ['src/engine/api.ts:42', 'main.ts', './lib/x.py#L3-L9', 'a.rs:7:5', 'b.go:10-20']);
  const refs = findFileRefs(text);
  assert.deepEqual(
    refs.map(({ path, line, endLine, column }) => ({ path, line, endLine, column })),
    [
      { path: 'src/engine/api.ts', line: 42, endLine: undefined, column: undefined },
      { path: 'main.ts', line: undefined, endLine: undefined, column: undefined },
      { path: './lib/x.py', line: 3, endLine: 9, column: undefined },
      { path: 'a.rs', line: 7, endLine: undefined, column: 5 },
      { path: 'b.go', line: 10, endLine: 20, column: undefined },
    ],
  );
});

test('leaves URLs, numbers and versions alone', () => {
  assert.deepEqual(paths('https://example.com/a/b.js and http://x.org/y.ts:3'), []);
  assert.deepEqual(paths('pi is 3.14, version v1.2.3, 10.0.0.1'), []);
  assert.deepEqual(paths('email me@host.com'), []);
});

test('a sentence-ending period is not part of the path', () => {
  const [ref] = findFileRefs('It is defined in util/strings.ts.');
  assert.equal(ref.path, 'util/strings.ts');
});

test('parseFileRef takes only a whole reference', () => {
  assert.deepEqual(parseFileRef('src/a.ts:12'), { path: 'src/a.ts', line: 12 });
  assert.deepEqual(parseFileRef(' lib/b.py#L4 '), { path: 'lib/b.py', line: 4 });
  assert.equal(parseFileRef('call src/a.ts now'), undefined);
  assert.equal(parseFileRef('x = 1.5'), undefined);
});

test('an end line before the start line is dropped; line 0 is not a line', () => {
  assert.deepEqual(parseFileRef('a.ts:9-3'), { path: 'a.ts', line: 9 });
  assert.deepEqual(parseFileRef('a.ts:0'), { path: 'a.ts' });
});
