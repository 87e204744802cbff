/** "Ingest Workspace": progress, the status bar, reuse of the saved state, staleness after a save, cancel. */
import assert from 'node:assert/strict';
import * as vscode from 'vscode';
import type { KimiLinearApi } from '../../../src/extension';
import { waitFor } from './index';
import { ingest, kimi, removeDir, writeSource } from './kimi-e2e';

const DIR = 'klc-e2e-ingest';

describe('Ingest workspace', function () {
  this.timeout(300_000);
  let api: KimiLinearApi;

  before(async () => {
    api = await kimi();
  });

  after(async () => {
    await removeDir(DIR);
  });

  it('ingests the workspace, shows the cached tokens in the status bar, and reuses the saved state', async () => {
    await writeSource(DIR, 'first', 4);
    const result = await ingest();
    assert.ok(result, 'the ingest completed');
    assert.ok(result.files > 0 && result.tokens > 0);
    assert.equal(api.client.lastStatus.engine?.repo.state, 'ready');
    assert.equal(api.client.lastStatus.engine?.repo.tokens, result.tokens);
    assert.match(api.statusBarText(), /^\$\(database\) Kimi: [\d.]+[kM]? tokens cached$/);

    const again = await ingest();
    assert.ok(again);
    assert.equal(again.upToDate, true);
    assert.equal(again.tokens, result.tokens);
  });

  it('marks the state stale when a workspace file is saved', async () => {
    const uri = await writeSource(DIR, 'edited', 2);
    const editor = await vscode.window.showTextDocument(uri);
    await editor.edit((b) => b.insert(new vscode.Position(0, 0), '// edited by the suite\n'));
    // A busy extension host can make a save participant time out and the save report false; try again then.
    await waitFor('the edit to be saved', async () => !editor.document.isDirty || (await editor.document.save()), Boolean);
    await waitFor('the stale state', () => api.client.lastStatus.engine?.repo.state === 'stale', Boolean);
    assert.equal(api.statusBarText(), '$(history) Kimi: stale');
    await vscode.commands.executeCommand('workbench.action.closeActiveEditor');
  });

  it('cancels a running ingest from the command; the next ingest completes', async () => {
    await writeSource(DIR, 'big', 30);
    const pending = ingest();
    await waitFor('prefill progress', () => api.client.lastStatus.ingest?.phase === 'prefill', Boolean);
    assert.match(api.statusBarText(), /^\$\(sync~spin\) Kimi: ingesting \d+%$/);
    await vscode.commands.executeCommand('kimiLinear.cancelIngest');
    assert.equal(await pending, undefined, 'a cancelled ingest has no result');
    assert.equal(api.client.lastStatus.ingest, null);
    assert.equal(api.client.lastStatus.process, 'running', 'cancelling does not stop the engine');
    assert.notEqual(api.client.lastStatus.engine?.repo.state, 'ingesting');

    const done = await ingest();
    assert.ok(done);
    assert.equal(done.upToDate, false);
    assert.equal(api.client.lastStatus.engine?.repo.state, 'ready');
  });
});
