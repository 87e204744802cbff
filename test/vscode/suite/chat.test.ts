/// <reference types="mocha" />
/**
 * The chat panel in a real VS Code: answers streamed by the real engine (bundled tiny checkpoint),
 * highlighted code, file links a user can click, text that must never become markup, and
 * screenshots of the panel in dark and light themes.
 */
import * as assert from 'node:assert/strict';
import * as vscode from 'vscode';
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

async function setTheme(theme: string): Promise<void> {
  await vscode.workspace.getConfiguration('workbench').update('colorTheme', theme, vscode.ConfigurationTarget.Global);
  await waitFor('the webview to take the theme', () => query('body'), (b) => b.length === 1 && (theme.includes('Light') ? /vscode-light/ : /vscode-dark/).test(b[0].className), 15_000);
  await new Promise((r) => setTimeout(r, 500));
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

    await setTheme('Default Dark Modern');
    await drive({ action: 'screenshot', name: 'chat-dark' });

    await vscode.commands.executeCommand('workbench.action.closeAllEditors');
    await drive({ action: 'click', root: ROOT, selector: '.entry.user a.file-link' });
    const opened = await waitFor('the editor to open at the line', () => vscode.window.activeTextEditor, (e) => e?.document.uri.path.endsWith('/src/math.ts') === true, 15_000);
    assert.equal(opened?.selection.active.line, 2, 'the cursor is on line 3 (0-based 2)');

    await setTheme('Default Light Modern');
    await vscode.commands.executeCommand('kimiLinear.chat.focus');
    await drive({ action: 'screenshot', name: 'chat-light' });
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
});
