/** "Select Model Folder…": picks a checkpoint folder and stores it in kimiLinear.modelPath. */
import * as vscode from 'vscode';

export async function selectModelFolder(): Promise<void> {
  const config = vscode.workspace.getConfiguration('kimiLinear');
  const current = config.get<string>('modelPath')?.trim();
  const picked = await vscode.window.showOpenDialog({
    title: 'Select a Kimi Linear checkpoint folder (config.json, *.safetensors, tokenizer files)',
    canSelectFiles: false,
    canSelectFolders: true,
    canSelectMany: false,
    openLabel: 'Use This Model',
    defaultUri: current ? vscode.Uri.file(current) : undefined,
  });
  const folder = picked?.[0];
  if (!folder) return;
  if (!(await exists(vscode.Uri.joinPath(folder, 'config.json')))) {
    void vscode.window.showErrorMessage(
      `Kimi Linear: ${folder.fsPath} has no config.json. Pick the folder of a Kimi Linear checkpoint in Hugging Face layout (config.json, *.safetensors, tiktoken.model).`,
    );
    return;
  }
  // The machine-wide setting: checkpoints live on this machine, not in one workspace.
  await config.update('modelPath', folder.fsPath, vscode.ConfigurationTarget.Global);
  const pick = await vscode.window.showInformationMessage(
    `Kimi Linear will use the model in ${folder.fsPath} from the next request. Ingest the workspace with it now?`,
    'Ingest Workspace',
  );
  if (pick) await vscode.commands.executeCommand('kimiLinear.ingestWorkspace');
}

async function exists(uri: vscode.Uri): Promise<boolean> {
  try {
    await vscode.workspace.fs.stat(uri);
    return true;
  } catch {
    return false;
  }
}
