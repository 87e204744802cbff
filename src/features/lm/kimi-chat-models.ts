/**
 * The local model in VS Code's model picker (vscode.lm, VS Code ≥ 1.104): one model, "Kimi Linear
 * (this repository)", whose answers continue from the ingested workspace state like the chat
 * panel's. Any extension can use it through vscode.lm.selectChatModels({ vendor: 'kimi-linear' }).
 */
import * as vscode from 'vscode';
import type { EngineClient } from '../../client/engine-client';
import { samplingFrom } from '../../client/settings';
import { askFromChat, type ChatText } from '../../common/chat-to-ask';
import { providerApi, type LanguageModelChatInformation, type LanguageModelChatRequestMessage } from './lm-api';

export const KIMI_VENDOR = 'kimi-linear';
const MODEL_ID = 'kimi-linear-repository';
/** What a question and its history may take: the repository fills the rest of the context (session.questionReserve). */
const QUESTION_TOKENS = 4096;
/** The engine's tokenizer lives in the engine process; this side estimates, erring towards more tokens. */
const CHARS_PER_TOKEN = 3;

function textOf(message: LanguageModelChatRequestMessage): string {
  return message.content.map((part) => (part instanceof vscode.LanguageModelTextPart ? part.value : '')).join('');
}

/** The host's roles as ours: User and Assistant as such; System (proposed, 3) as system text. */
export function chatTexts(messages: readonly LanguageModelChatRequestMessage[]): ChatText[] {
  return messages.map((m) => ({
    role: m.role === vscode.LanguageModelChatMessageRole.Assistant ? 'assistant' : m.role === vscode.LanguageModelChatMessageRole.User ? 'user' : 'system',
    content: textOf(m),
  }));
}

function signalOf(token: vscode.CancellationToken): AbortSignal {
  const controller = new AbortController();
  if (token.isCancellationRequested) controller.abort();
  else token.onCancellationRequested(() => controller.abort());
  return controller.signal;
}

/** Registers the model where the host has the provider API; undefined where it does not. */
export function registerKimiChatModels(client: EngineClient, config: () => vscode.WorkspaceConfiguration): vscode.Disposable | undefined {
  const lm = providerApi(vscode.lm);
  if (!lm) return undefined;
  const info = (): LanguageModelChatInformation => ({
    id: MODEL_ID,
    name: 'Kimi Linear (this repository)',
    family: 'kimi-linear',
    version: '1',
    tooltip: 'Answers from the ingested workspace state of the local Kimi Linear model',
    maxInputTokens: QUESTION_TOKENS,
    maxOutputTokens: config().get<number>('maxNewTokens') ?? 1024,
    isUserSelectable: true,
    capabilities: {},
  });
  return lm.registerLanguageModelChatProvider(KIMI_VENDOR, {
    provideLanguageModelChatInformation: () => [info()],
    async provideLanguageModelChatResponse(_model, messages, _options, progress, token) {
      const request = { ...askFromChat(chatTexts(messages)), sampling: samplingFrom(config()) };
      await client.ask(request, (delta) => progress.report(new vscode.LanguageModelTextPart(delta)), signalOf(token));
    },
    async provideTokenCount(_model, text) {
      return Math.ceil((typeof text === 'string' ? text : textOf(text)).length / CHARS_PER_TOKEN);
    },
  });
}
