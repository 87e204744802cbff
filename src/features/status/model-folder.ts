/**
 * "Select Model Folder…": picks a checkpoint folder, checks it before anything loads (files,
 * format, the GPU and the memory plan for the context budget and GPU limit in the settings) and
 * stores it in kimiLinear.modelPath only when it can be used. Returns the verdict, which the extension-host tests read.
 */
import * as vscode from 'vscode';
import { inspectModelFolder } from '../../client/inspect-model';
import { userMessageOf } from '../../client/engine-errors';
import { memoryBudgetFrom } from '../../client/settings';
import { folderVerdict, type FolderVerdict, setupSummary } from './model-folder-text';

const WALKTHROUGH = 'kimi-linear-code.kimi-linear-code#kimiLinear.gettingStarted';

/** The walkthrough step that lists the published checkpoints and which card each fits. */
export function showGetTheModel(): Thenable<unknown> {
  return vscode.commands.executeCommand('workbench.action.openWalkthrough', { category: WALKTHROUGH, step: `${WALKTHROUGH}#model` }, false);
}

export async function selectModelFolder(enginePath: string, given?: vscode.Uri): Promise<FolderVerdict | undefined> {
  const config = vscode.workspace.getConfiguration('kimiLinear');
  const current = config.get<string>('modelPath')?.trim();
  const folder = given instanceof vscode.Uri ? given : (await vscode.window.showOpenDialog({
    title: 'Select a Kimi Linear checkpoint folder (config.json, *.safetensors, tokenizer files)',
    canSelectFiles: false,
    canSelectFolders: true,
    canSelectMany: false,
    openLabel: 'Use This Model',
    defaultUri: current ? vscode.Uri.file(current) : undefined,
  }))?.[0];
  if (!folder) return undefined;

  let verdict: FolderVerdict;
  try {
    const budget = memoryBudgetFrom(config);
    const inspection = await vscode.window.withProgress(
      { location: vscode.ProgressLocation.Notification, title: `Kimi Linear: checking ${folder.fsPath} and the GPU…` },
      () => inspectModelFolder(enginePath, folder.fsPath, budget),
    );
    verdict = folderVerdict(inspection, config.get<string>('backend') ?? 'auto');
  } catch (e) {
    void vscode.window.showErrorMessage(`Kimi Linear: ${userMessageOf(e)}`);
    return undefined;
  }
  if (!verdict.use) {
    void vscode.window.showErrorMessage(verdict.message, 'Get the Model').then((pick) => (pick ? showGetTheModel() : undefined));
    return verdict;
  }
  // Machine-wide settings: checkpoints and GPUs belong to this machine, not to one workspace.
  await config.update('modelPath', folder.fsPath, vscode.ConfigurationTarget.Global);
  if (verdict.backend) await config.update('backend', verdict.backend, vscode.ConfigurationTarget.Global);
  const show = { error: vscode.window.showErrorMessage, warning: vscode.window.showWarningMessage, info: vscode.window.showInformationMessage }[verdict.severity];
  const actions = verdict.severity === 'info' ? ['Ingest Workspace'] : ['Ingest Workspace', 'Get the Model'];
  void show(verdict.message, ...actions).then((pick) => {
    if (pick === 'Get the Model') return showGetTheModel();
    return pick ? vscode.commands.executeCommand('kimiLinear.ingestWorkspace') : undefined;
  });
  return verdict;
}

/** "Check GPU and Backend" (the walkthrough's first step): what the installed package can run on here. */
export async function checkGpu(enginePath: string, modelDir: string): Promise<string | undefined> {
  try {
    const inspection = await vscode.window.withProgress(
      { location: vscode.ProgressLocation.Notification, title: 'Kimi Linear: looking for an NVIDIA GPU…' },
      () => inspectModelFolder(enginePath, modelDir),
    );
    const summary = setupSummary(inspection);
    void (summary.severity === 'info' ? vscode.window.showInformationMessage : vscode.window.showWarningMessage)(summary.message);
    return summary.message;
  } catch (e) {
    void vscode.window.showErrorMessage(`Kimi Linear: ${userMessageOf(e)}`);
    return undefined;
  }
}
