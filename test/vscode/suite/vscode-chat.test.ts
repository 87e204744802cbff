/**
 * VS Code's own chat: the local model is listed under the vendor kimi-linear and answers a
 * language model request, and @kimi answers in the chat view, each as the engine answers the same
 * question from the ingested workspace state.
 */
import assert from 'node:assert/strict';
import * as vscode from 'vscode';
import type { KimiLinearApi } from '../../../src/extension';
import { samplingFrom } from '../../../src/client/settings';
import { providerApi } from '../../../src/features/lm/lm-api';
import { drive, waitFor, type WebviewElement } from './index';
import { kimi, useShortAnswers } from './kimi-e2e';

describe('VS Code chat', function () {
  this.timeout(300_000);
  let api: KimiLinearApi;
  let restoreSettings: () => Promise<void>;

  before(async () => {
    api = await kimi();
    restoreSettings = await useShortAnswers();
  });

  after(async () => {
    await restoreSettings();
  });

  it('the host has the provider API (code-server 4.139 = VS Code 1.139)', () => {
    assert.ok(providerApi(vscode.lm), `vscode ${vscode.version} has no vscode.lm.registerLanguageModelChatProvider`);
  });

  it('lists the local model and streams its answer from the ingested repository', async () => {
    const models = await vscode.lm.selectChatModels({ vendor: 'kimi-linear' });
    assert.equal(models.length, 1, `models: ${models.map((m) => m.id).join(', ')}`);
    assert.equal(models[0].family, 'kimi-linear');
    const question = 'Which file defines the entry point?';
    const response = await models[0].sendRequest([vscode.LanguageModelChatMessage.User(question)], {}, new vscode.CancellationTokenSource().token);
    let text = '';
    for await (const piece of response.text) text += piece;
    const want = await api.client.ask({ question, history: [], sampling: samplingFrom(vscode.workspace.getConfiguration('kimiLinear')) }, () => {});
    assert.equal(text, want.text);
    assert.ok(text.length > 0);
    assert.equal(api.client.lastStatus.engine?.repo.state, 'ready');
  });

  it('@kimi answers in the chat view once the Kimi Linear model is selected', async () => {
    const question = 'Where is the entry point?';
    // The chat view sends a participant's request only with a selected model; ours is selectable
    // in Ask mode (Agent mode lists only models that call tools).
    await vscode.lm.selectChatModels({ vendor: 'kimi-linear' });
    await vscode.commands.executeCommand('workbench.action.chat.open', { mode: 'ask' });
    // The chat view lists models asynchronously; until ours is listed, switching to it does nothing.
    await waitFor('the chat view to select the Kimi Linear model', async () => {
      await vscode.commands.executeCommand('workbench.action.chat.changeModel', { vendor: 'kimi-linear', id: 'kimi-linear-repository', family: 'kimi-linear' });
      return (await drive<WebviewElement[]>({ action: 'workbenchQuery', selector: '.interactive-input-part' })).map((e) => e.text).join(' ');
    }, (text) => text.includes('Kimi Linear (this'));
    await vscode.commands.executeCommand('workbench.action.chat.open', { mode: 'ask', query: `@kimi ${question}` });
    const want = await api.client.ask({ question, history: [], sampling: samplingFrom(vscode.workspace.getConfiguration('kimiLinear')) }, () => {});
    // Markdown rendering may drop punctuation of the tiny model's words; letters and digits stay.
    const plain = (s: string) => s.replace(/[^A-Za-z0-9]/g, '');
    const response = await waitFor(
      'the @kimi response in the chat view',
      async () => (await drive<WebviewElement[]>({ action: 'workbenchQuery', selector: '.interactive-item-container.interactive-response' })).pop()?.text ?? '',
      (text) => plain(text).includes(plain(want.text)) || /unavailable|failed/i.test(text),
    );
    await drive({ action: 'screenshot', name: 'vscode-chat-kimi-participant' });
    assert.ok(plain(response).includes(plain(want.text)), `chat view shows ${JSON.stringify(response)}; the engine answers ${JSON.stringify(want.text)}`);
    assert.ok(plain(want.text).length > 0);
    await vscode.commands.executeCommand('workbench.action.closeAuxiliaryBar');
  });
});
