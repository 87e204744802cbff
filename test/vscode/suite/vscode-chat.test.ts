/**
 * VS Code's own language model API: the local model is listed under the vendor kimi-linear and
 * answers a request from the ingested workspace state, as the engine answers the same question.
 */
import assert from 'node:assert/strict';
import * as vscode from 'vscode';
import type { KimiLinearApi } from '../../../src/extension';
import { samplingFrom } from '../../../src/client/settings';
import { providerApi } from '../../../src/features/lm/lm-api';
import { kimi, useShortAnswers } from './kimi-e2e';

describe('VS Code language model API', function () {
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
});
