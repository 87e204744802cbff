/** "Ask About This Repository…": the question goes to the chat and is answered from the cached state. */
import assert from 'node:assert/strict';
import * as vscode from 'vscode';
import type { KimiLinearApi } from '../../../src/extension';
import { ingest, kimi, lastTurn, useShortAnswers } from './kimi-e2e';

describe('Repository Q&A', function () {
  this.timeout(300_000);
  let api: KimiLinearApi;
  let restoreSettings: () => Promise<void>;

  before(async () => {
    api = await kimi();
    restoreSettings = await useShortAnswers();
    // Earlier suites' conversations would be sent along as history and slow every question down.
    await vscode.commands.executeCommand('kimiLinear.newChat');
    // Earlier suites changed files after their last ingest; the watcher has marked that state stale.
    await ingest();
  });

  after(async () => {
    await restoreSettings();
  });

  it('answers a question in the chat panel from the ingested workspace', async () => {
    const question = 'Which file defines the entry point?';
    await vscode.commands.executeCommand('kimiLinear.askRepo', question);
    const { user, answer } = lastTurn(api);
    assert.equal(user.text, question);
    assert.equal(answer.state, 'done', answer.error);
    assert.ok(answer.text.length > 0);
    const repo = api.client.lastStatus.engine?.repo;
    assert.ok(repo && repo.state === 'ready' && repo.tokens > 0, 'the workspace was ingested for the question');
  });
});
