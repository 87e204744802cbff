/** `klc ingest`: pack the workspace, prefill it (resuming from saved checkpoints) and save the state. */
import { parseCommandArgs } from './args';
import { openRepoSession, remoteOptions, remoteUsage } from './remote-options';
import { progressPrinter, sessionOptions, sessionUsage, workspaceSettings } from './session-options';

const USAGE = `usage: klc ingest [dir…] [options]

Packs the folders (default: the current one), runs the model over them and saves the state, so that
'klc ask' answers from it at once. After files change, ingest resumes from the last checkpoint before
the first changed file.

${sessionUsage}${remoteUsage}`;

export async function run(argv: string[]): Promise<void> {
  const { values, positionals } = parseCommandArgs(argv, { ...sessionOptions, ...remoteOptions }, USAGE);
  const workspace = workspaceSettings(positionals, values);
  const session = await openRepoSession(values, workspace);
  try {
    const r = await session.ingest(workspace, progressPrinter());
    const how = r.upToDate
      ? 'saved state already up to date'
      : r.resumedTokens > 0
        ? `resumed from a checkpoint at token ${r.resumedTokens}, computed ${r.tokens - r.resumedTokens}`
        : 'computed from the start (no usable checkpoint)';
    process.stdout.write(
      [
        `files      ${r.files} packed, ${r.omitted} left out`,
        `tokens     ${r.tokens}`,
        `state      ${how}`,
        `speed      ${r.upToDate ? '-' : `${r.tokensPerSecond.toFixed(1)} tokens/s`} (${session.status().backend})`,
        `secrets    ${r.secretsRedacted} redacted`,
        `time       ${r.seconds.toFixed(2)} s`,
      ].join('\n') + '\n',
    );
  } finally {
    await session.dispose();
  }
}
