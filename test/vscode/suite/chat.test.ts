/// <reference types="mocha" />
/**
 * The chat panel in a real VS Code: answers streamed by the real engine (bundled tiny checkpoint),
 * highlighted code, file links a user can click, text that must never become markup, Stop by
 * button and by keyboard, the keyboard focus order, history across hide/show and a webview reload,
 * and screenshots of the panel in dark, light and high-contrast themes.
 */
import * as assert from 'node:assert/strict';
import * as vscode from 'vscode';
import type { ChatEntry } from '../../../src/common/chat-protocol';
import type { KimiLinearApi } from '../../../src/extension';
import { drive, waitFor, type WebviewElement } from './index';

const ROOT = '#klc-chat';
const query = (selector: string) => drive<WebviewElement[]>({ action: 'query', root: ROOT, selector });
const EXTENSION_ID = 'kimi-linear-code.kimi-linear-code';

function workspaceUri(rel: string): vscode.Uri {
  const folder = vscode.workspace.workspaceFolders?.[0];
  assert.ok(folder, 'the test workspace is open');
  return vscode.Uri.joinPath(folder.uri, rel);
}

/** Waits until the last answer in the panel has finished and returns its entry. */
async function lastAnswerFinished(): Promise<WebviewElement> {
  const answers = await waitFor('the answer to finish', () => query('.entry.assistant'), (a) => a.length > 0 && !a[a.length - 1].className.includes('streaming'), 240_000);
  return answers[answers.length - 1];
}

async function setTheme(theme: string, bodyClass: RegExp): Promise<void> {
  await vscode.workspace.getConfiguration('workbench').update('colorTheme', theme, vscode.ConfigurationTarget.Global);
  await waitFor('the webview to take the theme', () => query('body'), (b) => b.length === 1 && bodyClass.test(b[0].className), 15_000);
  await new Promise((r) => setTimeout(r, 500));
}

/** The panel's entries as the user reads them; null while the webview is (re)loading. */
async function shownEntries(): Promise<string[] | null> {
  try {
    return (await query('.log .entry')).map((e) => e.text);
  } catch {
    return null;
  }
}

/** Asks from the composer (typed, Enter) and waits until the answer is streaming. */
async function askAndWaitForStreaming(question: string): Promise<void> {
  await drive({ action: 'type', root: ROOT, selector: '.composer textarea', text: question, submit: true });
  await waitFor('the answer to stream', () => query('.entry.assistant:last-of-type'), (a) => a[0]?.className.includes('streaming') === true, 120_000);
}

/** The last answer as saved in the history, once it has ended. */
async function lastSavedAnswer(): Promise<ChatEntry> {
  const ext = vscode.extensions.getExtension<KimiLinearApi>(EXTENSION_ID);
  const answer = await waitFor('the saved answer to end', () => {
    const history = ext?.exports.chatHistory();
    return history?.conversations.find((c) => c.id === history.activeId)?.entries.at(-1);
  }, (e) => e !== undefined && e.state !== 'streaming', 10_000);
  assert.ok(answer && answer.role === 'assistant', 'the saved history ends with an answer');
  return answer;
}

/**
 * Asks, stops the answer while it streams, and checks it was saved as stopped. The tiny model's
 * sampled answer can reach an end token before the stop arrives; that attempt proves nothing
 * about Stop, so the question is asked again (each attempt continues a different context).
 */
async function stopWhileStreaming(question: string, stop: () => Promise<unknown>): Promise<void> {
  const ended: string[] = [];
  for (let attempt = 0; attempt < 6; attempt++) {
    await askAndWaitForStreaming(question);
    // Stopping fails when the answer ended first (the Stop button hides); that is judged below.
    const stopFailure = await stop().then(() => undefined, (e: unknown) => e);
    await lastAnswerFinished();
    const answer = await lastSavedAnswer();
    if (answer.state === 'stopped') return;
    if (answer.state !== 'done') throw stopFailure ?? new Error(`an answer that was not stopped ended as ${answer.state}`);
    ended.push(`${answer.text.length} characters`);
  }
  assert.fail(`every answer ended before the stop arrived (${ended.join(', ')})`);
}

describe('chat panel', function () {
  // The tiny model decodes on the pure-TS reference backend; short answers keep the panel (and the
  // screenshots) showing the question and the answer together.
  this.timeout(360_000);
  before(async () => {
    await vscode.workspace.getConfiguration('kimiLinear').update('maxNewTokens', 48, vscode.ConfigurationTarget.Workspace);
    await vscode.commands.executeCommand('workbench.action.closeAuxiliaryBar');
    const ext = vscode.extensions.getExtension(EXTENSION_ID);
    assert.ok(ext, `${EXTENSION_ID} is loaded from the checkout`);
    await ext.activate();
    await vscode.commands.executeCommand('kimiLinear.clearHistory');
    await vscode.commands.executeCommand('kimiLinear.chat.focus');
    await waitFor('the panel to render', () => query('.composer textarea'), (t) => t.length === 1);
  });
  after(async () => {
    await vscode.workspace.getConfiguration('kimiLinear').update('maxNewTokens', undefined, vscode.ConfigurationTarget.Workspace);
    await vscode.workspace.getConfiguration('workbench').update('colorTheme', undefined, vscode.ConfigurationTarget.Global);
  });

  it('streams an answer to Explain Selection, with the code highlighted and a file link that opens the file at its line', async () => {
    const doc = await vscode.workspace.openTextDocument(workspaceUri('src/math.ts'));
    const editor = await vscode.window.showTextDocument(doc);
    editor.selection = new vscode.Selection(2, 0, 5, 1);
    await vscode.commands.executeCommand('kimiLinear.explainSelection');

    const answer = await lastAnswerFinished();
    const footer = await query('.entry.assistant:last-of-type .entry-footer .error');
    assert.deepEqual(footer.map((f) => f.text), [], 'the answer ended without an error');
    assert.ok(answer.text.replace(/^Kimi Linear/, '').trim().length > 0, 'the answer has text');
    assert.match((await query('.entry.assistant:last-of-type .entry-footer .note'))[0]?.text ?? '', /tokens/);

    const keywords = await query('.entry.user .code-block code.language-ts .hljs-keyword');
    assert.ok(keywords.some((k) => k.text === 'export') && keywords.some((k) => k.text === 'return'), 'the selection is highlighted as TypeScript');
    const links = await waitFor('the file link to be confirmed by the host', () => query('.entry.user a.file-link'), (l) => l.length > 0);
    assert.equal(links[0].attrs['data-path'], 'src/math.ts');
    assert.equal(links[0].attrs['data-line'], '3');

    await setTheme('Default Dark Modern', /vscode-dark/);
    await drive({ action: 'screenshot', name: 'chat-dark' });

    await vscode.commands.executeCommand('workbench.action.closeAllEditors');
    await drive({ action: 'click', root: ROOT, selector: '.entry.user a.file-link' });
    const opened = await waitFor('the editor to open at the line', () => vscode.window.activeTextEditor, (e) => e?.document.uri.path.endsWith('/src/math.ts') === true, 15_000);
    assert.equal(opened?.selection.active.line, 2, 'the cursor is on line 3 (0-based 2)');

    await setTheme('Default Light Modern', /vscode-light/);
    await vscode.commands.executeCommand('kimiLinear.chat.focus');
    await drive({ action: 'screenshot', name: 'chat-light' });

    await setTheme('Default High Contrast', /vscode-high-contrast\b/);
    await drive({ action: 'screenshot', name: 'chat-high-contrast' });
    await setTheme('Default Dark Modern', /vscode-dark/);
  });

  it('shows markup from a file and from a question as text, never as elements', async () => {
    const doc = await vscode.workspace.openTextDocument(workspaceUri('src/banner.html'));
    const editor = await vscode.window.showTextDocument(doc);
    editor.selection = new vscode.Selection(0, 0, 3, 0);
    await vscode.commands.executeCommand('kimiLinear.explainSelection');
    await lastAnswerFinished();

    const question = 'Is <img src=x onerror="document.title=\'xss-q\'"> safe here? <script>document.title="xss-q2"</script>';
    await drive({ action: 'type', root: ROOT, selector: '.composer textarea', text: question, submit: true });
    await waitFor('the typed question to appear', () => query('.entry.user'), (u) => u.length >= 2 && u[u.length - 1].text.includes('safe here?'));
    await lastAnswerFinished();

    const users = await query('.entry.user .body');
    const fileTurn = users[users.length - 2];
    const typedTurn = users[users.length - 1];
    assert.match(fileTurn.text, /<img src=x onerror="document\.title='xss-file'">/);
    assert.match(fileTurn.text, /<script>document\.title = 'xss-file-script';<\/script>/);
    assert.ok(typedTurn.text.includes(question), `the question shows verbatim: ${typedTurn.text}`);
    assert.deepEqual(await query('.log img, .log script, .log iframe, .log [onerror]'), [], 'no element came from the text');
    assert.deepEqual(await drive<string[]>({ action: 'dialogs' }), []);
    const title = await query('title');
    assert.equal(title[0]?.text, 'Kimi Linear Chat', 'no script changed the document');
  });

  it('stops a streaming answer with the Stop button, and from the keyboard with Escape', async () => {
    // Long enough that the answer is usually still streaming when Stop arrives, even on a fast
    // backend (ONNX decodes the tiny model at ~170 tokens/s); well inside its 8192 positions.
    const config = vscode.workspace.getConfiguration('kimiLinear');
    await config.update('maxNewTokens', 3000, vscode.ConfigurationTarget.Workspace);
    // Greedy answers of the tiny model can end early in some contexts; sampled ones rarely do.
    await config.update('temperature', 1, vscode.ConfigurationTarget.Workspace);
    try {
      await stopWhileStreaming('Walk me through the whole repository, file by file.', async () => {
        const stop = await query('.composer button.stop');
        assert.ok(stop.length === 1 && stop[0].attrs.hidden === undefined, 'Stop shows while the answer streams');
        await waitFor('Send to hide meanwhile', () => query('.composer button.primary'), (b) => b[0]?.attrs.hidden === '', 10_000);
        await drive({ action: 'click', root: ROOT, selector: '.composer button.stop' });
      });
      assert.equal((await query('.entry.assistant:last-of-type .entry-footer .note'))[0]?.text, 'Stopped.');

      // Enter sent the question; the focus stays in the composer, where Escape stops the answer.
      await stopWhileStreaming('And the tests?', () => drive({ action: 'press', root: ROOT, key: 'Escape' }));
      assert.equal((await query('.composer button.stop'))[0]?.attrs.hidden, '', 'Stop hides again');
    } finally {
      await config.update('maxNewTokens', 48, vscode.ConfigurationTarget.Workspace);
      await config.update('temperature', 0, vscode.ConfigurationTarget.Workspace);
    }
  });

  it('works from the keyboard alone: a sensible focus order, and a name for every control', async () => {
    const order = await drive<string[]>({ action: 'focusOrder', root: ROOT, start: '.composer textarea', keys: ['Tab', 'Shift+Tab', 'Shift+Tab'] });
    assert.match(order[0], /^textarea\.input\[Question\]$/);
    assert.match(order[1], /^button\.primary\[Send\]$/, 'Send follows the question box');
    assert.match(order[2], /^textarea/, 'and Shift+Tab goes back');
    // Code blocks scroll sideways, so Chromium makes them focusable too.
    assert.match(order[3], /^(a|button|select|pre)\b/, `before the question box come the answer's links, buttons and code: ${order[3]}`);
    const unnamed = await drive<string[]>({
      action: 'evaluate',
      root: ROOT,
      expression: `[...document.querySelectorAll('button, select, textarea, a[href]')]
        .filter((e) => !e.hidden && !(e.getAttribute('aria-label') || e.textContent.trim() || e.getAttribute('title')))
        .map((e) => e.outerHTML.slice(0, 80))`,
    });
    assert.deepEqual(unnamed, [], 'every control has an accessible name');
    const status = await drive<WebviewElement[]>({ action: 'workbenchQuery', selector: `[id="${EXTENSION_ID}.kimiLinear.status"] [aria-label], [id="${EXTENSION_ID}.kimiLinear.status"][aria-label]` });
    assert.ok(status.some((e) => /^Kimi Linear: /.test(e.attrs['aria-label'])), `status bar item label: ${JSON.stringify(status.map((e) => e.attrs))}`);
  });

  it('keeps the conversation when the panel is hidden and shown, and when its webview reloads', async () => {
    const before = await shownEntries();
    assert.ok(before && before.length >= 4, 'the panel shows the earlier turns');
    await vscode.commands.executeCommand('workbench.action.closeSidebar');
    await vscode.commands.executeCommand('kimiLinear.chat.focus');
    assert.deepEqual(await waitFor('the panel after hide/show', shownEntries, (e) => e !== null && e.length === before.length, 20_000), before);

    await drive({ action: 'evaluate', root: ROOT, expression: "document.body.dataset.e2eMark = 'before-reload'" });
    await vscode.commands.executeCommand('workbench.action.webview.reloadWebviewAction');
    await waitFor('a fresh webview document', async () => {
      try {
        return await drive<string | null>({ action: 'evaluate', root: ROOT, expression: 'document.body.dataset.e2eMark ?? null' });
      } catch {
        return 'loading';
      }
    }, (mark) => mark === null, 20_000);
    assert.deepEqual(await waitFor('the history after the reload', shownEntries, (e) => e !== null && e.length === before.length, 20_000), before);
  });
});
