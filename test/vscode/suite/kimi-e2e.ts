/**
 * Shared steps of the extension-host suites for ingest, explain, ask, annotations and the engine
 * crash: the extension's API, waiting for what the user would see, and scratch source files that
 * give the engine real prefill work inside the fixture workspace.
 */
import assert from 'node:assert/strict';
import * as vscode from 'vscode';
import type { ChatEntry } from '../../../src/common/chat-protocol';
import type { IngestResult } from '../../../src/engine/api';
import type { KimiLinearApi } from '../../../src/extension';

export const EXTENSION_ID = 'kimi-linear-code.kimi-linear-code';

export async function kimi(): Promise<KimiLinearApi> {
  const ext = vscode.extensions.getExtension<KimiLinearApi>(EXTENSION_ID);
  assert.ok(ext, `extension ${EXTENSION_ID} is not loaded`);
  return ext.isActive ? ext.exports : ext.activate();
}

export function workspaceRoot(): vscode.Uri {
  const folder = vscode.workspace.workspaceFolders?.[0];
  assert.ok(folder, 'the suite needs a workspace folder');
  return folder.uri;
}

/**
 * Writes a TypeScript file of `functions` small functions under <workspace>/<dir>/. Each new file
 * changes the packed workspace, so the next ingest has tokens to prefill (about 20 per function).
 */
export async function writeSource(dir: string, name: string, functions: number): Promise<vscode.Uri> {
  const lines: string[] = [];
  for (let i = 1; i <= functions; i++) {
    lines.push(`export function ${name.replace(/\W/g, '_')}${i}(x: number): number {`, `  return x * ${i} + ${(i * 7) % 13};`, '}', '');
  }
  return writeFile(dir, `${name}.ts`, lines.join('\n'));
}

export async function writeFile(dir: string, name: string, text: string): Promise<vscode.Uri> {
  const uri = vscode.Uri.joinPath(workspaceRoot(), dir, name);
  await vscode.workspace.fs.writeFile(uri, new TextEncoder().encode(text));
  return uri;
}

export async function removeDir(dir: string): Promise<void> {
  await vscode.workspace.fs.delete(vscode.Uri.joinPath(workspaceRoot(), dir), { recursive: true, useTrash: false });
}

/**
 * Runs `start` and calls `act` once, at the first prefill report of the ingest it begins, from the
 * status event itself: polling could miss a prefill that resumes near its end (it still outlasts the
 * report's trip to the extension host). `acted` is undefined when no prefill was reported.
 */
export async function atFirstPrefill<T, A>(api: KimiLinearApi, start: () => Thenable<T>, act: () => A): Promise<{ result: T; acted: A | undefined }> {
  let acted: A | undefined;
  let done = false;
  const sub = api.client.onDidChangeStatus((s) => {
    if (s.ingest?.phase !== 'prefill' || done) return;
    done = true;
    acted = act();
  });
  try {
    return { result: await start(), acted };
  } finally {
    sub.dispose();
  }
}

export function ingest(): Thenable<IngestResult | undefined> {
  return vscode.commands.executeCommand<IngestResult | undefined>('kimiLinear.ingestWorkspace');
}

/** Answers stay short: the tiny checkpoint's words carry no meaning, only the plumbing is under test. */
export async function useShortAnswers(): Promise<() => Promise<void>> {
  const config = vscode.workspace.getConfiguration('kimiLinear');
  const before = config.inspect<number>('maxNewTokens')?.globalValue;
  await config.update('maxNewTokens', 6, vscode.ConfigurationTarget.Global);
  return async () => {
    await vscode.workspace.getConfiguration('kimiLinear').update('maxNewTokens', before, vscode.ConfigurationTarget.Global);
  };
}

/** The last user message and answer of the conversation the chat panel shows. */
export function lastTurn(api: KimiLinearApi): { user: ChatEntry; answer: ChatEntry } {
  const history = api.chatHistory();
  assert.ok(history, 'the chat saved a history');
  const conversation = history.conversations.find((c) => c.id === history.activeId);
  assert.ok(conversation && conversation.entries.length >= 2, 'the active conversation has a turn');
  const [user, answer] = conversation.entries.slice(-2);
  assert.equal(user.role, 'user');
  assert.equal(answer.role, 'assistant');
  return { user, answer };
}
