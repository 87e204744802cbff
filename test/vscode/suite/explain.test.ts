/** "Explain Selection" and the CodeLens "Explain" / "Where is this used?": the chat shows the file, lines and a streamed answer. */
import assert from 'node:assert/strict';
import * as vscode from 'vscode';
import type { KimiLinearApi } from '../../../src/extension';
import { ingest, kimi, lastTurn, removeDir, useShortAnswers, writeFile } from './kimi-e2e';

const DIR = 'klc-e2e-explain';
const SOURCE = [
  'export function add(a: number, b: number): number {',
  '  return a + b;',
  '}',
  '',
  'export function twice(x: number): number {',
  '  return add(x, x);',
  '}',
  '',
].join('\n');

describe('Explain selection', function () {
  this.timeout(300_000);
  let api: KimiLinearApi;
  let restoreSettings: () => Promise<void>;
  let uri: vscode.Uri;

  before(async () => {
    api = await kimi();
    restoreSettings = await useShortAnswers();
    // Earlier suites' conversations would be sent along as history and slow every question down.
    await vscode.commands.executeCommand('kimiLinear.newChat');
    uri = await writeFile(DIR, 'math.ts', SOURCE);
    // The answer is to come from a repository that holds the file (the watcher marks a state without it stale).
    await ingest();
  });

  after(async () => {
    await vscode.commands.executeCommand('workbench.action.closeAllEditors');
    await restoreSettings();
    await removeDir(DIR);
  });

  it('sends the selection with its file and lines, and the answer streams into the chat', async () => {
    const editor = await vscode.window.showTextDocument(uri);
    editor.selection = new vscode.Selection(4, 0, 6, 1);
    await vscode.commands.executeCommand('kimiLinear.explainSelection');
    const { user, answer } = lastTurn(api);
    assert.match(user.text, /klc-e2e-explain\/math\.ts:5-7/);
    assert.equal(answer.state, 'done', answer.error);
    assert.ok(answer.text.length > 0, 'the answer has text');
    assert.ok(answer.stats && answer.stats.tokens > 0 && answer.stats.tokens <= 6);
    assert.equal(api.client.lastStatus.engine?.repo.state, 'ready', 'the answer came from the ingested repository');
  });

  it('"Where is this used?" asks about the symbol at its definition', async () => {
    const range = new vscode.Range(0, 0, 2, 1);
    await vscode.commands.executeCommand('kimiLinear.findUsages', uri, range, 'add');
    const { user, answer } = lastTurn(api);
    assert.match(user.text, /Where is `add` used\?/);
    assert.match(user.text, /klc-e2e-explain\/math\.ts:1-3/);
    assert.equal(answer.state, 'done', answer.error);
  });
});
