import assert from 'node:assert/strict';
import { test } from 'node:test';
import { explainSelection, explainSymbol, lineRange, whereUsed } from '../../../src/features/explain/explain-request';

const selection = { path: 'src/math.ts', startLine: 5, endLine: 7, text: 'export function twice(x: number) {\n  return add(x, x);\n}' };

test('the selection travels whole with the question, which names the file and lines', () => {
  const s = explainSelection(selection, { temperature: 0 });
  assert.equal(s.display, 'Explain `src/math.ts:5-7`');
  assert.deepEqual(s.request.selection, selection);
  assert.deepEqual(s.request.sampling, { temperature: 0 });
  assert.match(s.request.question, /src\/math\.ts:5-7/);
  assert.match(s.request.question, /callers/);
});

test('one-line ranges read path:line', () => {
  assert.equal(lineRange({ ...selection, endLine: 5 }), 'src/math.ts:5');
});

test('symbol requests name the symbol and ask for path:line references', () => {
  assert.equal(explainSymbol('twice', selection, {}).display, 'Explain `twice` (`src/math.ts:5-7`)');
  const used = whereUsed('twice', selection, {});
  assert.equal(used.display, 'Where is `twice` used? (`src/math.ts:5-7`)');
  assert.match(used.request.question, /`twice`.*path:line/s);
  assert.deepEqual(used.request.selection, selection);
});
