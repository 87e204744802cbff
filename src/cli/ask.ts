/** `klc ask`: answer a question from the workspace's saved state (ingesting first if needed). */
import { UserError } from '../common/errors';
import type { AskResult, SamplingOptions } from '../engine/api';
import { intOption, numberOption, parseCommandArgs } from './args';
import { openRepoSession, remoteOptions, remoteUsage } from './remote-options';
import { progressPrinter, sessionOptions, sessionUsage, workspaceSettings } from './session-options';

const USAGE = `usage: klc ask "question" [--workspace DIR]… [options]
       klc ask --question Q1 --question Q2 … [options]

Streams the answer to stdout; time to first token and decode speed go to stderr. Several
--question options are answered together in one batch, each answer printed under its question.

  --question Q        a question (repeatable; instead of the positional question)
  --workspace DIR     folder to ask about (repeatable; default: the current folder)
  --max-new-tokens N  longest answer (default 256)
  --temperature T     0 = greedy (default 0)
  --top-p P           nucleus sampling threshold (default 1)
  --top-k K           sample among the K most likely tokens (default 0 = all)
  --seed S            sampler seed
${sessionUsage}${remoteUsage}`;

export async function run(argv: string[]): Promise<void> {
  const { values, positionals } = parseCommandArgs(
    argv,
    {
      ...sessionOptions,
      ...remoteOptions,
      question: { type: 'string', multiple: true },
      workspace: { type: 'string', multiple: true },
      'max-new-tokens': { type: 'string' },
      temperature: { type: 'string' },
      'top-p': { type: 'string' },
      'top-k': { type: 'string' },
      seed: { type: 'string' },
    },
    USAGE,
  );
  const questions = questionsOf(positionals, (values.question as unknown as string[] | undefined) ?? []);
  const workspace = workspaceSettings((values.workspace as unknown as string[] | undefined) ?? [], values);
  const sampling: Partial<SamplingOptions> = {};
  const maxNew = intOption(values, 'max-new-tokens', 1);
  if (maxNew !== undefined) sampling.maxNewTokens = maxNew;
  const temperature = numberOption(values, 'temperature', 0, 5);
  if (temperature !== undefined) sampling.temperature = temperature;
  const topP = numberOption(values, 'top-p', 0, 1);
  if (topP !== undefined) sampling.topP = topP;
  const topK = intOption(values, 'top-k', 0);
  if (topK !== undefined) sampling.topK = topK;
  const seed = intOption(values, 'seed', 0);
  if (seed !== undefined) sampling.seed = seed;

  const session = await openRepoSession(values, workspace);
  try {
    const ingest = await session.ingest(workspace, progressPrinter());
    process.stderr.write(
      ingest.upToDate
        ? `using the saved state of ${ingest.tokens} tokens (${ingest.files} files)\n`
        : `ingested ${ingest.tokens} tokens (${ingest.files} files) at ${ingest.tokensPerSecond.toFixed(1)} tokens/s${ingest.resumedTokens > 0 ? `, resumed at ${ingest.resumedTokens}` : ''}\n`,
    );
    const figures = (r: AskResult) =>
      `time to first token ${r.ttftMs.toFixed(0)} ms, ${r.tokens} tokens at ${r.decodeTokensPerSecond.toFixed(1)} tokens/s (${r.stopReason}, ${session.status().backend})\n`;
    if (questions.length === 1) {
      const r = await session.ask({ question: questions[0], sampling }, (delta) => process.stdout.write(delta));
      process.stdout.write('\n');
      process.stderr.write(figures(r));
    } else {
      const print = inOrder(questions.length, (i, r) => {
        process.stdout.write(`${i > 0 ? '\n' : ''}## ${questions[i]}\n\n${r.text}\n`);
        process.stderr.write(`[${i + 1}] ${figures(r)}`);
      });
      await session.askBatch(questions.map((question) => ({ question, sampling })), () => undefined, undefined, print);
    }
  } finally {
    await session.dispose();
  }
}

/** The questions of the command line: the positional words as one question, or each --question. */
export function questionsOf(positionals: string[], options: string[]): string[] {
  const positional = positionals.join(' ').trim();
  if (positional && options.length > 0) {
    throw new UserError('give the question either as words or with --question, not both. Usage: klc ask --question Q1 --question Q2');
  }
  const questions = positional ? [positional] : options.map((q) => q.trim());
  if (questions.length === 0) throw new UserError('no question given. Usage: klc ask "how does X reach Y?"');
  const empty = questions.findIndex((q) => !q);
  if (empty >= 0) throw new UserError(`--question number ${empty + 1} is empty; give each --question some text`);
  return questions;
}

/**
 * Hands answers that end in any order to `print` in question order: an answer waits until the
 * answers before it were printed, so the output reads like the questions asked.
 */
export function inOrder(count: number, print: (index: number, result: AskResult) => void): (index: number, result: AskResult) => void {
  const ready = new Map<number, AskResult>();
  let next = 0;
  return (index, result) => {
    ready.set(index, result);
    while (next < count && ready.has(next)) {
      print(next, ready.get(next)!);
      ready.delete(next);
      next++;
    }
  };
}
