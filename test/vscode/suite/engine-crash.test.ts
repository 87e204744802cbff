/**
 * Killing the engine process in the middle of an ingest: the extension host goes on, the user is
 * told what happened, the next request starts a new engine, and the state it ends up with answers
 * exactly like one restored from disk by yet another engine process.
 */
import assert from 'node:assert/strict';
import * as vscode from 'vscode';
import type { KimiLinearApi } from '../../../src/extension';
import { atFirstPrefill, ingest, kimi, removeDir, useShortAnswers, writeSource } from './kimi-e2e';

const DIR = 'klc-e2e-crash';

describe('Engine crash', function () {
  this.timeout(300_000);
  let api: KimiLinearApi;
  let restoreSettings: () => Promise<void>;

  before(async () => {
    api = await kimi();
    restoreSettings = await useShortAnswers();
  });

  after(async () => {
    await restoreSettings();
    await removeDir(DIR);
  });

  it('survives a killed engine mid-ingest, says so, and restarts it on the next request', async () => {
    // The rest of the workspace resumes from the state earlier tests saved (within the tiny model's 8k budget).
    await writeSource(DIR, 'crash', 120);
    const { result: failed, acted: pid } = await atFirstPrefill(api, ingest, () => {
      const engine = api.client.pid;
      if (engine) process.kill(engine, 'SIGKILL');
      return engine;
    });
    assert.ok(pid, 'an engine process was running when the prefill began');
    assert.equal(failed, undefined, 'the ingest failed instead of hanging');
    assert.equal(api.client.lastStatus.process, 'crashed');
    assert.match(api.client.lastStatus.error ?? '',
      /^The engine process stopped unexpectedly \(signal SIGKILL\)\. It will restart on your next request\. See Kimi Linear logs/);
    assert.equal(api.statusBarText(), '$(error) Kimi: engine stopped');
    // The extension host is alive and still serves commands.
    assert.ok((await vscode.commands.getCommands(true)).includes('kimiLinear.ingestWorkspace'));

    const result = await ingest();
    assert.ok(result, 'the next request succeeded');
    assert.ok(api.client.pid && api.client.pid !== pid, 'a new engine process serves it');
    assert.equal(api.client.lastStatus.process, 'running');
    assert.equal(api.client.lastStatus.engine?.repo.state, 'ready');
    assert.match(api.statusBarText(), /tokens cached$/);

    const question = { question: 'What does crash1 return?', sampling: { temperature: 0, maxNewTokens: 6 } };
    const afterCrash = await api.client.ask(question, () => undefined);

    await vscode.commands.executeCommand('kimiLinear.restartEngine');
    const restored = await ingest();
    assert.ok(restored);
    assert.equal(restored.upToDate, true, 'the state saved after the crash is found valid on disk');
    assert.equal(restored.tokens, result.tokens);
    const fromDisk = await api.client.ask(question, () => undefined);
    assert.equal(fromDisk.text, afterCrash.text, 'the restored state answers exactly like the one computed after the crash');
  });
});
