/**
 * The remote backend in the editor: with kimiLinear.backend = remote pointed at `klc serve` (started
 * here on loopback for the same folder), a question in the chat panel is answered by the server,
 * which reports the repository's tokens as served from its cached state.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import * as vscode from 'vscode';
import type { KimiLinearApi } from '../../../src/extension';
import { waitFor } from './index';
import { EXTENSION_ID, kimi, lastTurn, useShortAnswers, workspaceRoot } from './kimi-e2e';

describe('Remote backend', function () {
  this.timeout(300_000);
  let api: KimiLinearApi;
  let restoreSettings: () => Promise<void>;
  let server: ChildProcess;
  let serverLog = '';
  let url: string;

  before(async () => {
    api = await kimi();
    restoreSettings = await useShortAnswers();
    const cli = join(vscode.extensions.getExtension(EXTENSION_ID)!.extensionPath, 'dist', 'cli.js');
    const cacheDir = mkdtempSync(join(tmpdir(), 'klc-e2e-serve-'));
    server = spawn(process.execPath, [cli, 'serve', '--workspace', workspaceRoot().fsPath, '--port', '0', '--backend', 'reference', '--cache-dir', cacheDir], {
      env: { ...process.env, ELECTRON_RUN_AS_NODE: '1' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    server.stderr!.setEncoding('utf8').on('data', (d: string) => (serverLog += d));
    url = await new Promise<string>((ok, fail) => {
      let out = '';
      server.stdout!.setEncoding('utf8').on('data', (d: string) => {
        out += d;
        const m = /listening on (http:\/\/\S+)/.exec(out);
        if (m) ok(m[1]);
      });
      server.once('exit', (code) => fail(new Error(`klc serve exited with ${code}: ${serverLog}`)));
    });
  });

  after(async () => {
    const config = vscode.workspace.getConfiguration('kimiLinear');
    await config.update('backend', undefined, vscode.ConfigurationTarget.Global);
    await config.update('remote.endpoint', undefined, vscode.ConfigurationTarget.Global);
    await config.update('remote.model', undefined, vscode.ConfigurationTarget.Global);
    await restoreSettings();
    server?.kill('SIGTERM');
  });

  it('answers in the chat panel through klc serve, from the server\'s cached repository', async () => {
    const config = vscode.workspace.getConfiguration('kimiLinear');
    await config.update('remote.endpoint', url, vscode.ConfigurationTarget.Global);
    await config.update('remote.model', `kimi-linear@${basename(workspaceRoot().fsPath)}`, vscode.ConfigurationTarget.Global);
    await config.update('backend', 'remote', vscode.ConfigurationTarget.Global);
    await vscode.commands.executeCommand('kimiLinear.newChat');
    const question = 'Which file defines the entry point?';
    await vscode.commands.executeCommand('kimiLinear.askRepo', question);
    const { user, answer } = lastTurn(api);
    assert.equal(user.text, question);
    assert.equal(answer.state, 'done', answer.error);
    assert.ok(answer.text.length > 0);
    assert.equal(api.client.lastStatus.engine?.backend, 'remote');
    const repoTokens = api.client.lastStatus.engine?.repo.tokens ?? 0;
    assert.ok(repoTokens > 0);
    // The server logs every answer with the prompt tokens its cached state served.
    // The server logs every answer with the prompt tokens its cached state served: all of the
    // repository (the chat's system message was recognised as it), leaving only the question.
    const answered = /chat for kimi-linear@\S+: \d+ tokens, first after \d+ ms, (\d+)\/(\d+) prompt tokens cached/;
    const served = (await waitFor('the server to log the answer', () => serverLog.split('\n').filter((l) => answered.test(l)).pop(), Boolean))!.match(answered)!;
    assert.equal(Number(served[1]), repoTokens, served[0]);
    assert.ok(Number(served[2]) - repoTokens < 200, served[0]);
  });
});
