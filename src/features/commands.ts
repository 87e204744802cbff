/**
 * Every command the extension registers, by id, in one table (as rust-analyzer's createCommands()):
 * Ctx registers it in one loop, and the extension-host tests hold it to package.json's
 * contributes.commands, so a command cannot be declared without a handler or the reverse.
 */
import * as vscode from 'vscode';
import { join } from 'node:path';
import type { EngineClient } from '../client/engine-client';
import { askCommand } from './ask/ask-command';
import type { Annotator } from './annotations/annotator';
import type { ChatViewProvider } from './chat/chat-view';
import { explainCommands } from './explain/explain-commands';
import type { IngestController } from './ingest/ingest-controller';
import { setRemoteApiKey } from './remote/api-key';
import { checkGpu, selectModelFolder } from './status/model-folder';

/** A command's handler; VS Code passes it whatever the caller (menu, CodeLens, executeCommand) gave. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- handlers type their own arguments
export type Command = (...args: any[]) => unknown;

export interface CommandOwners {
  readonly context: vscode.ExtensionContext;
  readonly client: EngineClient;
  readonly ingest: IngestController;
  readonly chat: ChatViewProvider;
  readonly annotator: Annotator;
  readonly log: vscode.LogOutputChannel;
  /** The engine's entry script, for the model-folder check and the GPU check. */
  readonly enginePath: string;
}

export function createCommands(o: CommandOwners): Record<string, Command> {
  const modelPath = () => vscode.workspace.getConfiguration('kimiLinear').get<string>('modelPath')?.trim() || o.context.asAbsolutePath(join('assets', 'tiny-model'));
  return {
    'kimiLinear.ingestWorkspace': () => o.ingest.run(),
    'kimiLinear.cancelIngest': () => {
      if (!o.ingest.cancel()) void vscode.window.showInformationMessage('Kimi Linear: no ingest is running.');
    },
    'kimiLinear.askRepo': askCommand(o.chat),
    ...explainCommands(o.chat),
    'kimiLinear.newChat': () => o.chat.newChat(),
    'kimiLinear.clearHistory': () => o.chat.clearHistory(),
    'kimiLinear.annotateFile': async (uri?: vscode.Uri) => {
      const document = uri instanceof vscode.Uri ? await vscode.workspace.openTextDocument(uri) : vscode.window.activeTextEditor?.document;
      if (!document) {
        void vscode.window.showInformationMessage('Kimi Linear: open a file to annotate first.');
        return;
      }
      await o.annotator.annotate(document);
    },
    'kimiLinear.toggleAnnotations': () => o.annotator.toggle(),
    'kimiLinear.selectModelFolder': (folder?: vscode.Uri) => selectModelFolder(o.enginePath, folder),
    'kimiLinear.checkGpu': () => checkGpu(o.enginePath, modelPath()),
    'kimiLinear.showLogs': () => o.log.show(),
    'kimiLinear.setRemoteApiKey': () => setRemoteApiKey(o.context.secrets),
    'kimiLinear.restartEngine': async () => {
      await o.client.restart();
      void vscode.window.showInformationMessage('Kimi Linear: the engine was stopped; it starts again with the current settings on your next request.');
    },
  };
}

export function registerCommands(commands: Record<string, Command>): vscode.Disposable {
  return vscode.Disposable.from(...Object.entries(commands).map(([id, run]) => vscode.commands.registerCommand(id, run)));
}
