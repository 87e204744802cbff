/**
 * A multi-root workspace (test/vscode/fixtures/multi-root): two folders that share the base name
 * "app", the second with a display name of its own. The packed context names their files
 * "app/…" and "app-2/…"; selections are sent under those names and file links in the chat open
 * the file in the right folder.
 */
import assert from 'node:assert/strict';
import * as vscode from 'vscode';
import { drive, waitFor, type WebviewElement } from '../index';
import { ingest, kimi, lastTurn } from '../kimi-e2e';
import type { KimiLinearApi } from '../../../../src/extension';

const ROOT = '#klc-chat';
const query = (selector: string) => drive<WebviewElement[]>({ action: 'query', root: ROOT, selector });

function folder(index: number): vscode.WorkspaceFolder {
  const f = vscode.workspace.workspaceFolders?.[index];
  assert.ok(f, `the workspace has folder ${index}`);
  return f;
}

async function clickLinkAndExpect(path: string, file: vscode.Uri, line: number): Promise<void> {
  const link = `.entry a.file-link[data-path="${path}"]`;
  await waitFor(`the link ${path} to be confirmed by the host`, () => query(link), (l) => l.length > 0, 30_000);
  await vscode.commands.executeCommand('workbench.action.closeAllEditors');
  await drive({ action: 'click', root: ROOT, selector: link });
  const editor = await waitFor(`${file.fsPath} to open`, () => vscode.window.activeTextEditor, (e) => e?.document.uri.fsPath === file.fsPath, 15_000);
  assert.equal(editor?.selection.active.line, line - 1, `the cursor is on line ${line}`);
}

describe('multi-root workspace', function () {
  this.timeout(300_000);
  let api: KimiLinearApi;

  before(async () => {
    api = await kimi();
    await vscode.commands.executeCommand('kimiLinear.clearHistory');
  });

  after(async () => {
    await vscode.commands.executeCommand('workbench.action.closeAllEditors');
  });

  it('opens two folders with the same base name, the second under its own display name', () => {
    assert.equal(vscode.workspace.workspaceFolders?.length, 2);
    assert.equal(folder(0).name, 'app');
    assert.equal(folder(1).name, 'Backend service');
  });

  it('ingests the files of both folders', async () => {
    const result = await ingest();
    assert.ok(result, 'the ingest completed');
    assert.equal(result.files, 4, 'two files from each folder');
    const repo = api.client.lastStatus.engine?.repo;
    assert.deepEqual(repo?.roots, [folder(0).uri.fsPath, folder(1).uri.fsPath]);
    assert.equal(repo?.state, 'ready');
  });

  it('sends a selection in the second folder as app-2/…, and its link opens that folder\'s file', async () => {
    const file = vscode.Uri.joinPath(folder(1).uri, 'src', 'index.ts');
    const editor = await vscode.window.showTextDocument(file);
    editor.selection = new vscode.Selection(3, 0, 5, 1);
    await vscode.commands.executeCommand('kimiLinear.explainSelection');
    const { user, answer } = lastTurn(api);
    assert.match(user.text, /`app-2\/src\/index\.ts:4-6`/);
    assert.equal(answer.state, 'done', answer.error);
    await clickLinkAndExpect('app-2/src/index.ts', file, 4);
  });

  it('links a path of the first folder to it, and leaves a path that is in neither folder unlinked', async () => {
    const question = 'How does app/src/view.ts:2 relate to app-2/src/server.ts:2 and app-2/src/view.ts?';
    await drive({ action: 'type', root: ROOT, selector: '.composer textarea', text: question, submit: true });
    await waitFor('the answer to finish', () => api.chatHistory(), (h) => {
      const entries = h?.conversations.find((c) => c.id === h.activeId)?.entries ?? [];
      return entries.at(-2)?.text === question && entries.at(-1)?.state !== 'streaming';
    });
    assert.equal(lastTurn(api).answer.state, 'done', lastTurn(api).answer.error);
    await clickLinkAndExpect('app/src/view.ts', vscode.Uri.joinPath(folder(0).uri, 'src', 'view.ts'), 2);
    await clickLinkAndExpect('app-2/src/server.ts', vscode.Uri.joinPath(folder(1).uri, 'src', 'server.ts'), 2);
    const asked = (await query('.entry.user .body')).at(-1);
    assert.ok(asked && asked.text.includes('app-2/src/view.ts'), 'the question shows the missing path');
    assert.doesNotMatch(asked.html, /data-path="app-2\/src\/view\.ts"/, 'a path that is in neither folder is not a link');
    await drive({ action: 'screenshot', name: 'chat-multi-root' });
  });
});
