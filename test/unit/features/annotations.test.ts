import assert from 'node:assert/strict';
import { test } from 'node:test';
import { AnnotationCache, contentHash } from '../../../src/features/annotations/annotation-cache';
import { oneLineSummary, SUMMARY_MAX_NEW_TOKENS, summaryRequest } from '../../../src/features/annotations/summary';
import { lensTargets, symbolKey, topLevelTargets, type SymbolLike } from '../../../src/features/annotations/symbol-targets';

const FUNCTION = 11;
const CLASS = 4;
const METHOD = 5;
const VARIABLE = 12;
const kinds = new Set([FUNCTION, CLASS, METHOD]);

function sym(name: string, kind: number, line: number, children: SymbolLike[] = []): SymbolLike {
  return { name, kind, range: { start: { line }, end: { line: line + 3 } }, selectionRange: { start: { line } }, children };
}

const symbols = [
  sym('Store', CLASS, 10, [sym('get', METHOD, 12), sym('size', VARIABLE, 11)]),
  sym('helper', FUNCTION, 2),
  sym('CONFIG', VARIABLE, 0),
];

test('lenses go on functions, classes and methods at any depth, in document order', () => {
  assert.deepEqual(lensTargets(symbols, kinds).map((s) => s.name), ['helper', 'Store', 'get']);
});

test('summaries are for top-level functions and classes only', () => {
  assert.deepEqual(topLevelTargets(symbols, kinds).map((s) => s.name), ['helper', 'Store']);
  assert.equal(symbolKey(symbols[0]), 'Store@10');
});

test('the summary request is short, greedy and carries the code', () => {
  const sel = { path: 'a.ts', startLine: 3, endLine: 6, text: 'function helper() {}' };
  const r = summaryRequest('helper', sel);
  assert.deepEqual(r.selection, sel);
  assert.deepEqual(r.sampling, { temperature: 0, maxNewTokens: SUMMARY_MAX_NEW_TOKENS });
  assert.match(r.question, /one line/);
});

test('answers are cut to their first meaningful line without markdown', () => {
  assert.equal(oneLineSummary('\n\n- **Parses** the `config` file.\nMore text'), 'Parses the config file.');
  assert.equal(oneLineSummary('1. Returns   the sum'), 'Returns the sum');
  assert.equal(oneLineSummary('***\n---\n'), '');
  const long = oneLineSummary('word '.repeat(60));
  assert.equal(long.length, 120);
  assert.ok(long.endsWith('…'));
});

test('the cache finds summaries by exact content and forgets the least recently used file', () => {
  assert.equal(contentHash('a'), contentHash('a'));
  assert.notEqual(contentHash('a'), contentHash('a '));
  const cache = new AnnotationCache(2);
  cache.set('h1', { 'f@1': 'one' });
  cache.set('h2', { 'f@1': 'two' });
  assert.deepEqual(cache.get('h1'), { 'f@1': 'one' });
  cache.set('h3', { 'f@1': 'three' });
  assert.equal(cache.get('h2'), undefined, 'h2 was used least recently');
  const restored = new AnnotationCache(2, cache.toJSON());
  assert.deepEqual(restored.get('h1'), { 'f@1': 'one' });
  assert.deepEqual(restored.get('h3'), { 'f@1': 'three' });
});
