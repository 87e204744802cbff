/** `klc ask`: answer a question from the workspace's saved state (ingesting first if needed). */
import { UserError } from '../common/errors';
import type { SamplingOptions } from '../engine/api';
import { intOption, numberOption, parseCommandArgs } from './args';
import { openSession, progressPrinter, sessionOptions, sessionUsage, workspaceSettings } from './session-options';

const USAGE = `usage: klc ask "question" [--workspace DIR]… [options]

Streams the answer to stdout; time to first token and decode speed go to stderr.

  --workspace DIR     folder to ask about (repeatable; default: the current folder)
  --max-new-tokens N  longest answer (default 256)
  --temperature T     0 = greedy (default 0)
  --top-p P           nucleus sampling threshold (default 1)
  --top-k K           sample among the K most likely tokens (default 0 = all)
  --seed S            sampler seed
${sessionUsage}`;

export async function run(argv: string[]): Promise<void> {
  const { values, positionals } = parseCommandArgs(
    argv,
    {
      ...sessionOptions,
      workspace: { type: 'string', multiple: true },
      'max-new-tokens': { type: 'string' },
      temperature: { type: 'string' },
      'top-p': { type: 'string' },
      'top-k': { type: 'string' },
      seed: { type: 'string' },
    },
    USAGE,
  );
  const question = positionals.join(' ').trim();
  if (!question) throw new UserError('no question given. Usage: klc ask "how does X reach Y?"');
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

  const session = await openSession(values, workspace);
  const controller = new AbortController();
  const onSigint = () => controller.abort();
  process.once('SIGINT', onSigint);
  try {
    const ingest = await session.ingest(workspace, progressPrinter(), controller.signal);
    process.stderr.write(
      ingest.upToDate
        ? `using the saved state of ${ingest.tokens} tokens (${ingest.files} files)\n`
        : `ingested ${ingest.tokens} tokens (${ingest.files} files) at ${ingest.tokensPerSecond.toFixed(1)} tokens/s${ingest.resumedTokens > 0 ? `, resumed at ${ingest.resumedTokens}` : ''}\n`,
    );
    const r = await session.ask({ question, sampling }, (delta) => process.stdout.write(delta), controller.signal);
    process.stdout.write('\n');
    process.stderr.write(
      `time to first token ${r.ttftMs.toFixed(0)} ms, ${r.tokens} tokens at ${r.decodeTokensPerSecond.toFixed(1)} tokens/s (${r.stopReason}, ${session.model.backend.name})\n`,
    );
  } finally {
    process.off('SIGINT', onSigint);
    await session.dispose();
  }
}
