import { test } from 'node:test';
import assert from 'node:assert/strict';
import { JSDOM } from 'jsdom';
import createDOMPurify, { type WindowLike } from 'dompurify';
import { createMarkdown } from '../../../webview/chat/markdown';
import { sanitizeHtml } from '../../../webview/chat/sanitize';

const render = createMarkdown();
const { window } = new JSDOM('<!doctype html><body></body>');
const purify = createDOMPurify(window as unknown as WindowLike);
const files = new Set(['src/a.ts', 'lib/b.py', 'README.md']);
const lookup = (p: string) => files.has(p);

/** The full pipeline the webview runs: render, sanitize, insert; returns the element. */
function show(markdown: string): HTMLElement {
  const el = window.document.createElement('div');
  el.innerHTML = sanitizeHtml(purify, render(markdown, lookup).html);
  return el;
}

test('fenced code is highlighted by language', () => {
  const el = show('```ts\nconst x: number = 1; // one\n```');
  const code = el.querySelector('pre > code');
  assert.ok(code);
  assert.match(code.className, /\bhljs\b/);
  assert.match(code.className, /\blanguage-ts\b/);
  assert.equal(code.querySelector('.hljs-keyword')?.textContent, 'const');
  assert.equal(code.querySelector('.hljs-comment')?.textContent, '// one');
  assert.equal(code.textContent, 'const x: number = 1; // one\n');
});

test('unknown languages stay plain, escaped text', () => {
  const el = show('```nosuchlang\n<b>x</b>\n```');
  assert.equal(el.querySelector('pre code')?.textContent, '<b>x</b>\n');
  assert.equal(el.querySelector('b'), null);
});

test('existing files become links with their line; unknown candidates are reported', () => {
  const r = render('Look at src/a.ts:12 and lib/b.py#L3-L5, not missing/c.ts.', lookup);
  assert.deepEqual(r.unresolved, []);
  const el = show('Look at src/a.ts:12 and lib/b.py#L3-L5, not missing/c.ts.');
  const links = [...el.querySelectorAll('a.file-link')].map((a) => ({
    text: a.textContent,
    path: a.getAttribute('data-path'),
    line: a.getAttribute('data-line'),
    end: a.getAttribute('data-end-line'),
  }));
  assert.deepEqual(links, [
    { text: 'src/a.ts:12', path: 'src/a.ts', line: '12', end: null },
    { text: 'lib/b.py#L3-L5', path: 'lib/b.py', line: '3', end: '5' },
  ]);
  assert.match(el.textContent ?? '', /not missing\/c\.ts\./);
  const pending = render('see other/d.ts:4', () => undefined);
  assert.deepEqual(pending.unresolved, ['other/d.ts']);
  assert.doesNotMatch(pending.html, /file-link/);
});

test('inline code that is a path is linked; paths inside fenced code are not', () => {
  const el = show('Open `README.md` and\n\n```\nsrc/a.ts:1\n```');
  const links = el.querySelectorAll('a.file-link');
  assert.equal(links.length, 1);
  assert.equal(links[0].getAttribute('data-path'), 'README.md');
  assert.equal(links[0].querySelector('code')?.textContent, 'README.md');
});

test('markdown links: web links kept, file links retargeted, other schemes dropped', () => {
  const el = show('[docs](https://example.com/x) [code](src/a.ts#L7) [bad](javascript:alert(1)) [cmd](command:workbench.action.quit)');
  const anchors = [...el.querySelectorAll('a')];
  assert.equal(anchors[0].getAttribute('href'), 'https://example.com/x');
  assert.equal(anchors[0].className, 'external-link');
  assert.equal(anchors[1].getAttribute('data-path'), 'src/a.ts');
  assert.equal(anchors[1].getAttribute('data-line'), '7');
  assert.equal(anchors[1].getAttribute('href'), '#');
  // markdown-it refuses javascript: links (they stay text); command: becomes a link without a target.
  assert.equal(anchors.length, 3);
  assert.equal(anchors[2].textContent, 'cmd');
  assert.ok(!anchors[2].hasAttribute('href'));
  assert.match(el.textContent ?? '', /\[bad\]\(javascript:alert\(1\)\)/);
});

test('XSS in a model answer renders as text', () => {
  const answer = 'Here: <img src=x onerror="alert(1)"> and <script>alert(2)</script> <a href="javascript:alert(3)">x</a>';
  const el = show(answer);
  assert.equal(el.querySelector('img'), null);
  assert.equal(el.querySelector('script'), null);
  assert.equal(el.querySelector('a'), null);
  assert.equal(el.textContent?.trim(), answer);
});

test('XSS in file content (a code block) renders as text', () => {
  const file = '<img src=x onerror=alert(1)>\n<script>document.title = "pwned"</script>\n';
  for (const fence of ['```html\n', '```\n', '```js\n']) {
    const el = show(`${fence}${file}\`\`\``);
    assert.equal(el.querySelector('img'), null);
    assert.equal(el.querySelector('script'), null);
    assert.equal(el.querySelector('pre code')?.textContent, file);
  }
});

test('a hostile language name in a fence cannot break out of the class attribute', () => {
  const el = show('```"><img src=x onerror=alert(1)>\nx\n```');
  assert.equal(el.querySelector('img'), null);
  assert.equal(el.querySelector('pre code')?.textContent, 'x\n');
});

test('the sanitizer removes what the renderer never produces', () => {
  const dirty = '<p onclick="x()">a</p><img src=x onerror=y><iframe src="https://e"></iframe><a href="vscode://x" class="file-link">l</a><svg><script>1</script></svg>';
  const el = window.document.createElement('div');
  el.innerHTML = sanitizeHtml(purify, dirty);
  assert.equal(el.innerHTML, '<p>a</p><a class="file-link">l</a>');
});
