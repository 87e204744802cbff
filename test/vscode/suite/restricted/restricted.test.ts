/**
 * Restricted mode: the fixture workspace opened with workspace trust on and never trusted. Nothing
 * is read and no engine process starts, whatever the user tries; each surface says why.
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import * as vscode from 'vscode';
import { drive, waitFor, type WebviewElement } from '../index';
import { EXTENSION_ID, kimi } from '../kimi-e2e';
import type { KimiLinearApi } from '../../../../src/extension';

const ROOT = '#klc-chat';
const query = (selector: string) => drive<WebviewElement[]>({ action: 'query', root: ROOT, selector });
const RESTRICTED = /restricted mode/i;

/** Every process on this machine running this extension's engine bundle. */
function engineProcesses(): number[] {
  const bundle = `${vscode.extensions.getExtension(EXTENSION_ID)?.extensionPath}/dist/engine-host.js`;
  return readdirSync('/proc').filter((p) => /^\d+$/.test(p)).filter((pid) => {
    try {
      return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').includes(bundle);
    } catch {
      return false;
    }
  }).map(Number);
}

/** The messages in the notification center, which the suite opens to read them. */
async function notifications(): Promise<string[]> {
  await vscode.commands.executeCommand('notifications.showList');
  const items = await drive<WebviewElement[]>({ action: 'workbenchQuery', selector: '.notification-list-item-message' });
  await vscode.commands.executeCommand('notifications.hideList');
  return items.map((i) => i.text);
}

describe('restricted mode', function () {
  this.timeout(120_000);
  let api: KimiLinearApi;

  before(async () => {
    api = await kimi();
  });

  afterEach(() => {
    assert.equal(api.client.pid, undefined, 'no engine process was started');
    assert.equal(api.client.lastStatus.process, 'stopped');
    assert.deepEqual(engineProcesses(), [], 'no engine process runs');
  });

  it('opens untrusted, and the status bar says so in text and in its accessible label', async () => {
    assert.equal(vscode.workspace.isTrusted, false);
    assert.equal(api.statusBarText(), '$(shield) Kimi: restricted');
    assert.match(api.statusBarAriaLabel(), /^Kimi Linear: restricted mode/);
  });

  it('refuses Ingest Workspace with a message that says how to trust the workspace', async () => {
    assert.equal(await vscode.commands.executeCommand('kimiLinear.ingestWorkspace'), undefined);
    const shown = await waitFor('the warning', notifications, (n) => n.some((t) => RESTRICTED.test(t)), 15_000);
    assert.ok(shown.some((t) => /does not ingest workspaces in restricted mode\. Trust this workspace/.test(t)), shown.join('\n'));
  });

  it('refuses questions from the command palette and from the chat, and the chat header explains why', async () => {
    await vscode.commands.executeCommand('kimiLinear.askRepo', 'Which file defines the entry point?');
    await vscode.commands.executeCommand('kimiLinear.chat.focus');
    const header = await waitFor('the restricted header', () => query('.repo'), (h) => h.length === 1 && RESTRICTED.test(h[0].text), 20_000);
    assert.match(header[0].text, /does not read this workspace and runs no model/);
    const trust = await query('.header-action');
    assert.equal(trust[0]?.text, 'Trust…');

    await drive({ action: 'type', root: ROOT, selector: '.composer textarea', text: 'What does main do?', submit: true });
    const error = await waitFor('the refusal in the chat', () => query('.entry.assistant .entry-footer .error'), (e) => e.length > 0, 20_000);
    assert.match(error[0].text, /does not read this workspace in restricted mode\. Trust the workspace/);
    await drive({ action: 'screenshot', name: 'chat-restricted' });
  });

  it('refuses Explain Selection and Annotate File', async () => {
    const folder = vscode.workspace.workspaceFolders?.[0];
    assert.ok(folder);
    const editor = await vscode.window.showTextDocument(vscode.Uri.joinPath(folder.uri, 'src', 'math.ts'));
    editor.selection = new vscode.Selection(0, 0, 2, 0);
    await vscode.commands.executeCommand('kimiLinear.explainSelection');
    await vscode.commands.executeCommand('kimiLinear.annotateFile');
    assert.deepEqual(api.shownAnnotations(editor.document.uri), []);
  });
});
