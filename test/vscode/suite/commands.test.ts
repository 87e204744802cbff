/**
 * The command table against the manifest: after activation, the extension has registered exactly
 * the commands package.json contributes (besides the ones VS Code makes for its views), so none is
 * declared without a handler and none is registered without a palette entry.
 */
import assert from 'node:assert/strict';
import * as vscode from 'vscode';
import { EXTENSION_ID, kimi } from './kimi-e2e';

interface Manifest {
  contributes: { commands: { command: string }[]; views: Record<string, { id: string }[]> };
}

describe('Commands', () => {
  it('registers every contributed command and no undeclared one', async () => {
    await kimi();
    const manifest = vscode.extensions.getExtension(EXTENSION_ID)?.packageJSON as Manifest;
    const declared = manifest.contributes.commands.map((c) => c.command).sort();
    const viewIds = Object.values(manifest.contributes.views).flat().map((v) => v.id);
    const registered = (await vscode.commands.getCommands(true))
      .filter((id) => id.startsWith('kimiLinear.') && !viewIds.some((v) => id.startsWith(`${v}.`)))
      .sort();
    assert.ok(declared.length >= 15, `package.json lists ${declared.length} commands`);
    assert.deepEqual(registered, declared);
  });
});
