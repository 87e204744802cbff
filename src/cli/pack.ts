/** `klc pack`: pack workspace folders into one context and report what was packed and left out. */
import { resolve } from 'node:path';
import { writeFileAtomic } from '../common/atomic';
import { loadTokenizer } from '../engine/model/tokenizer';
import { packWorkspace, type PackResult } from '../workspace';
import { intOption, parseCommandArgs } from './args';

const USAGE = `usage: klc pack [dir…] [options]

Packs the folders (default: the current one) into one context with the model's tokenizer and
prints what was packed, what was left out and why, the token count and the secrets redacted.

  --max-tokens N      token budget (default 1000000); the largest files are left out first
  --max-file-bytes N  files larger than this are left out (default 1000000)
  --include GLOB      only pack files matching this glob (repeatable)
  --exclude PATTERN   also ignore this .gitignore-style pattern (repeatable)
  --line-numbers      prefix every line with its number
  --out FILE          write the packed text
  --manifest FILE     write the manifest (JSON: token span, hash and size of every file; omitted files)
  --model DIR         checkpoint folder whose tokenizer counts tokens (default: the bundled tokenizer)
  --list-omitted      print every omitted file with its reason
`;

const options = {
  'max-tokens': { type: 'string' },
  'max-file-bytes': { type: 'string' },
  include: { type: 'string', multiple: true },
  exclude: { type: 'string', multiple: true },
  'line-numbers': { type: 'boolean' },
  out: { type: 'string' },
  manifest: { type: 'string' },
  model: { type: 'string' },
  'list-omitted': { type: 'boolean' },
} as const;

export async function run(argv: string[]): Promise<void> {
  const { values, positionals } = parseCommandArgs(argv, options, USAGE);
  const roots = (positionals.length > 0 ? positionals : ['.']).map((d) => resolve(d));
  const tokenizer = await loadTokenizer(typeof values.model === 'string' ? resolve(values.model) : undefined);
  const result = await packWorkspace({
    roots,
    tokenizer,
    maxTokens: intOption(values, 'max-tokens', 1),
    maxFileBytes: intOption(values, 'max-file-bytes', 1),
    include: values.include as unknown as string[] | undefined,
    exclude: values.exclude as unknown as string[] | undefined,
    lineNumbers: values['line-numbers'] === true,
  });
  if (typeof values.out === 'string') await writeFileAtomic(resolve(values.out), result.blocks.map((b) => b.text).join(''));
  if (typeof values.manifest === 'string') await writeFileAtomic(resolve(values.manifest), `${JSON.stringify(result.manifest, null, 1)}\n`);
  process.stdout.write(summary(result, values['list-omitted'] === true));
}

export function summary(result: PackResult, listOmitted: boolean): string {
  const { stats, manifest } = result;
  const omittedTotal = manifest.omitted.length;
  const byReason = Object.entries(stats.omitted)
    .sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1))
    .map(([reason, n]) => `${reason} ${n}`)
    .join(', ');
  const lines = [
    `files      ${stats.files} packed (${stats.bytes} bytes), ${omittedTotal} left out${byReason ? `: ${byReason}` : ''}`,
    `tokens     ${stats.tokens} of ${manifest.maxTokens} (tokenizer ${manifest.tokenizer})`,
    `secrets    ${stats.secretsRedacted} redacted`,
    `time       ${stats.seconds.toFixed(2)} s`,
  ];
  if (listOmitted) for (const o of manifest.omitted) lines.push(`  omitted  ${o.path}  ${o.reason}: ${o.detail}`);
  return `${lines.join('\n')}\n`;
}
