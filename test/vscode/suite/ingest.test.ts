/**
 * "Ingest Workspace": progress, the status bar, reuse of the saved state, staleness after a save,
 * automatic incremental re-ingest, and Cancel Ingest (of an ingest and of the one a question started).
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as vscode from 'vscode';
import type { PackedFile } from '../../../src/engine/api';
import type { KimiLinearApi } from '../../../src/extension';
import { waitFor } from './index';
import { atFirstPrefill, ingest, kimi, lastTurn, removeDir, workspaceRoot, writeSource } from './kimi-e2e';

const DIR = 'klc-e2e-ingest';
const GIT_DIR = 'klc-e2e-git';

const sha256 = (text: string) => createHash('sha256').update(text).digest('hex');

describe('Ingest workspace', function () {
  this.timeout(300_000);
  let api: KimiLinearApi;
  /** Cancel Ingest, with the status bar's text at that moment. */
  const cancelShowing = () => ({ shown: api.statusBarText(), cancelled: vscode.commands.executeCommand('kimiLinear.cancelIngest') });

  before(async () => {
    api = await kimi();
  });

  after(async () => {
    await removeDir(DIR);
    await removeDir(GIT_DIR).then(undefined, () => undefined);
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
    await editAndSave(uri, '// edited by the suite\n');
    await waitFor('the stale state', () => api.client.lastStatus.engine?.repo.state === 'stale', Boolean);
    assert.equal(api.statusBarText(), '$(history) Kimi: stale');
    await vscode.commands.executeCommand('workbench.action.closeActiveEditor');
  });

  it('with autoIngest on, a save re-ingests incrementally and the status bar returns to tokens cached', async () => {
    const uri = await writeSource(DIR, 'auto', 3);
    const first = await ingest();
    assert.ok(first);
    const config = vscode.workspace.getConfiguration('kimiLinear');
    await config.update('autoIngest', true, vscode.ConfigurationTarget.Global);
    const shown: string[] = [];
    const sub = api.client.onDidChangeStatus(() => shown.push(api.statusBarText()));
    try {
      await editAndSave(uri, '// saved with autoIngest on\n');
      const result = await waitFor('the automatic ingest', () => api.lastIngestResult(), (r) => r !== undefined && r !== first);
      assert.ok(result);
      assert.equal(result.upToDate, false);
      assert.ok(result.resumedTokens > 0 && result.resumedTokens < result.tokens, `incremental: ${result.resumedTokens} of ${result.tokens} tokens reused`);
      await waitFor('the status bar to show the cached tokens', () => api.statusBarText(), (t) => /^\$\(database\) Kimi: [\d.]+[kM]? tokens cached$/.test(t));
      assert.equal(api.client.lastStatus.engine?.repo.tokens, result.tokens);
      assert.ok(shown.includes('$(history) Kimi: stale'), `stale first: ${shown.join(' | ')}`);
      assert.ok(shown.some((t) => /Kimi: ingesting/.test(t)), `then ingesting: ${shown.join(' | ')}`);
    } finally {
      sub.dispose();
      await config.update('autoIngest', undefined, vscode.ConfigurationTarget.Global);
      await vscode.commands.executeCommand('workbench.action.closeActiveEditor');
    }
  });

  it('a file written outside the editor marks the state stale; with autoIngest the engine packs its new content', async () => {
    const uri = await writeSource(DIR, 'outside', 3);
    const first = await ingest();
    assert.ok(first);
    writeFileSync(uri.fsPath, 'export const writtenOutside = "by another program";\n');
    await waitFor('the stale state', () => api.client.lastStatus.engine?.repo.state === 'stale', Boolean);
    assert.equal(api.statusBarText(), '$(history) Kimi: stale');

    const config = vscode.workspace.getConfiguration('kimiLinear');
    await config.update('autoIngest', true, vscode.ConfigurationTarget.Global);
    try {
      const content = 'export const writtenOutside = "by another program, twice";\n';
      writeFileSync(uri.fsPath, content);
      const entry = await waitFor('the engine to pack the new content', () => packedEntry(api, uri.fsPath), (f) => f?.sha256 === sha256(content));
      assert.ok(entry);
      // The engine's manifest changes before the client has the ingest's result; wait for that too.
      const result = await waitFor('the automatic ingest to end', () => api.lastIngestResult(), (r) => r !== undefined && r !== first);
      assert.ok(result && result.resumedTokens > 0, `the re-ingest resumed from a checkpoint: ${JSON.stringify(result)}`);
    } finally {
      await config.update('autoIngest', undefined, vscode.ConfigurationTarget.Global);
    }
  });

  it('a git checkout of another branch is noticed and the engine packs that branch\'s files', async () => {
    const repo = join(workspaceRoot().fsPath, GIT_DIR);
    mkdirSync(repo, { recursive: true });
    const git = (...args: string[]) => execFileSync('git', args, {
      cwd: repo,
      encoding: 'utf8',
      env: { ...process.env, GIT_AUTHOR_NAME: 't', GIT_AUTHOR_EMAIL: 't@example.com', GIT_COMMITTER_NAME: 't', GIT_COMMITTER_EMAIL: 't@example.com' },
    }).trim();
    const onMain = 'export const branch = "main";\n';
    const onOther = 'export const branch = "other";\n';
    const onlyOther = 'export const addedOnOther = true;\n';
    git('init', '-q');
    writeFileSync(join(repo, 'branch.ts'), onMain);
    git('add', '.');
    git('commit', '-q', '-m', 'main');
    const main = git('rev-parse', '--abbrev-ref', 'HEAD');
    git('checkout', '-q', '-b', 'other');
    writeFileSync(join(repo, 'branch.ts'), onOther);
    writeFileSync(join(repo, 'only-other.ts'), onlyOther);
    git('add', '.');
    git('commit', '-q', '-m', 'other');
    git('checkout', '-q', main);

    const first = await ingest();
    assert.ok(first);
    assert.equal((await packedEntry(api, join(repo, 'branch.ts')))?.sha256, sha256(onMain));
    assert.equal(await packedEntry(api, join(repo, 'only-other.ts')), undefined);
    const config = vscode.workspace.getConfiguration('kimiLinear');
    await config.update('autoIngest', true, vscode.ConfigurationTarget.Global);
    try {
      git('checkout', '-q', 'other');
      await waitFor('the engine to pack the other branch', async () => {
        const [branch, added] = await Promise.all([packedEntry(api, join(repo, 'branch.ts')), packedEntry(api, join(repo, 'only-other.ts'))]);
        return branch?.sha256 === sha256(onOther) && added?.sha256 === sha256(onlyOther);
      }, Boolean);
      const files = (await api.client.manifest()).map((f) => f.path);
      assert.ok(!files.some((f) => f.includes(`${GIT_DIR}/.git/`)), 'git internals are never packed');
    } finally {
      await config.update('autoIngest', undefined, vscode.ConfigurationTarget.Global);
    }
  });

  it('cancels a running ingest from the command; the next ingest completes', async () => {
    // The ingest resumes before the new file, so only its tokens are prefilled (within the tiny model's 8k budget).
    await writeSource(DIR, 'big', 120);
    const { result, acted } = await atFirstPrefill(api, ingest, cancelShowing);
    assert.ok(acted, 'the ingest reached the prefill phase');
    await acted.cancelled;
    assert.match(acted.shown, /^\$\(sync~spin\) Kimi: ingesting \d+%$/);
    assert.equal(result, undefined, 'a cancelled ingest has no result');
    assert.equal(api.client.lastStatus.ingest, null);
    assert.equal(api.client.lastStatus.process, 'running', 'cancelling does not stop the engine');
    assert.notEqual(api.client.lastStatus.engine?.repo.state, 'ingesting');

    const done = await ingest();
    assert.ok(done);
    assert.equal(done.upToDate, false);
    assert.equal(api.client.lastStatus.engine?.repo.state, 'ready');
  });

  it('Cancel Ingest also stops the ingest a question started: the question is refused with a message, the engine keeps running', async () => {
    // A fresh engine holds no repository state, so the next question ingests the workspace first.
    await vscode.commands.executeCommand('kimiLinear.restartEngine');
    await writeSource(DIR, 'asked', 30);
    await vscode.commands.executeCommand('kimiLinear.newChat');
    const { acted } = await atFirstPrefill(api, () => vscode.commands.executeCommand('kimiLinear.askRepo', 'What does asked1 return?'), cancelShowing);
    assert.ok(acted, 'the question\'s ingest reached the prefill phase');
    await acted.cancelled;
    assert.match(acted.shown, /^\$\(sync~spin\) Kimi: ingesting \d+%$/);
    const { answer } = lastTurn(api);
    assert.equal(answer.state, 'error');
    assert.match(answer.error ?? '', /ingest was cancelled, so the question was not answered/);
    assert.equal(answer.text, '');
    assert.equal(api.client.lastStatus.ingest, null);
    assert.equal(api.client.lastStatus.process, 'running', 'cancelling does not stop the engine');
    assert.doesNotMatch(api.statusBarText(), /ingesting/);
  });
});

async function packedEntry(api: KimiLinearApi, path: string): Promise<PackedFile | undefined> {
  return (await api.client.manifest()).find((f) => f.path === path);
}

async function editAndSave(uri: vscode.Uri, line: string): Promise<void> {
  const editor = await vscode.window.showTextDocument(uri);
  await editor.edit((b) => b.insert(new vscode.Position(0, 0), line));
  // A busy extension host can make a save participant time out and the save report false; try again then.
  await waitFor('the edit to be saved', async () => !editor.document.isDirty || (await editor.document.save()), Boolean);
}
