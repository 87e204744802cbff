import { test } from 'node:test';
import assert from 'node:assert/strict';
import { languageOf, userEntryText } from '../../../src/features/chat/user-entry';
import { createMarkdown } from '../../../webview/chat/markdown';

const selection = (text: string, path = 'src/a.ts') => ({ path, startLine: 3, endLine: 4, text });

test('a selection is shown as a fenced block in the file\'s language', () => {
  assert.equal(userEntryText('Explain `src/a.ts:3-4`', selection('let x = 1;')), 'Explain `src/a.ts:3-4`\n\n```ts\nlet x = 1;\n```');
  assert.equal(userEntryText('plain question'), 'plain question');
  assert.equal(languageOf('lib/Make.File.PY'), 'py');
  assert.equal(languageOf('Makefile'), '');
});

test('code containing fences cannot close the block early', () => {
  const code = 'a\n```\n<script>x</script>\n````\nb\n';
  const text = userEntryText('Explain', selection(code, 'notes.md'));
  const html = createMarkdown()(text, () => false).html;
  const blocks = html.match(/<pre>/g) ?? [];
  assert.equal(blocks.length, 1);
  assert.match(html, /&lt;script&gt;x&lt;\/script&gt;/);
});
