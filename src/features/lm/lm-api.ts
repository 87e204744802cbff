/**
 * The language model provider API that VS Code finalized in 1.104 (code-server 4.139 has it), which
 * the @types/vscode this extension builds against (1.100, its minimum engine) does not declare.
 * Only the members this extension uses; registerKimiChatModels checks at run time that the host
 * has the API before it calls it.
 */
import type * as vscode from 'vscode';

export interface LanguageModelChatInformation {
  readonly id: string;
  readonly name: string;
  readonly family: string;
  readonly version: string;
  readonly tooltip?: string;
  readonly detail?: string;
  readonly maxInputTokens: number;
  readonly maxOutputTokens: number;
  /** Shown in the chat's model picker. */
  readonly isUserSelectable?: boolean;
  readonly capabilities: { readonly imageInput?: boolean; readonly toolCalling?: boolean | number };
}

export interface LanguageModelChatRequestMessage {
  readonly role: vscode.LanguageModelChatMessageRole;
  readonly content: ReadonlyArray<unknown>;
  readonly name: string | undefined;
}

export interface LanguageModelChatProvider<T extends LanguageModelChatInformation = LanguageModelChatInformation> {
  readonly onDidChangeLanguageModelChatInformation?: vscode.Event<void>;
  provideLanguageModelChatInformation(options: { readonly silent: boolean }, token: vscode.CancellationToken): vscode.ProviderResult<T[]>;
  provideLanguageModelChatResponse(
    model: T,
    messages: readonly LanguageModelChatRequestMessage[],
    options: unknown,
    progress: vscode.Progress<vscode.LanguageModelTextPart>,
    token: vscode.CancellationToken,
  ): Thenable<void>;
  provideTokenCount(model: T, text: string | LanguageModelChatRequestMessage, token: vscode.CancellationToken): Thenable<number>;
}

export interface LmWithProviders {
  registerLanguageModelChatProvider(vendor: string, provider: LanguageModelChatProvider): vscode.Disposable;
}

/** vscode.lm when the host can register language model providers, else undefined. */
export function providerApi(lm: unknown): LmWithProviders | undefined {
  const candidate = lm as Partial<LmWithProviders> | undefined;
  return typeof candidate?.registerLanguageModelChatProvider === 'function' ? (candidate as LmWithProviders) : undefined;
}
