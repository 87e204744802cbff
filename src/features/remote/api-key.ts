/**
 * The remote backend's API key lives in VS Code's SecretStorage (the OS keychain where there is
 * one), never in settings, which sync and are shared in workspace files.
 */
import * as vscode from 'vscode';

export const REMOTE_API_KEY_SECRET = 'kimiLinear.remote.apiKey';

/** Asks for the key; an empty answer removes the stored one, Escape leaves it as it is. */
export async function setRemoteApiKey(secrets: vscode.SecretStorage): Promise<void> {
  const key = await vscode.window.showInputBox({
    title: 'Kimi Linear: Remote API Key',
    prompt: 'The key the server in kimiLinear.remote.endpoint expects as "Authorization: Bearer <key>". Leave empty to remove the stored key.',
    password: true,
    ignoreFocusOut: true,
  });
  if (key === undefined) return;
  if (key.trim() === '') {
    await secrets.delete(REMOTE_API_KEY_SECRET);
    void vscode.window.showInformationMessage('Kimi Linear: the remote API key was removed.');
  } else {
    await secrets.store(REMOTE_API_KEY_SECRET, key.trim());
    void vscode.window.showInformationMessage('Kimi Linear: the remote API key is stored in the editor\'s secret storage.');
  }
}
