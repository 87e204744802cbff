/** Option parsing shared by the klc subcommands: node's parseArgs with errors a user can act on. */
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { UserError } from '../common/errors';
import type { BackendName } from '../engine/api';

type Options = NonNullable<ParseArgsConfig['options']>;

export interface Parsed {
  values: Record<string, string | boolean | undefined>;
  positionals: string[];
}

/**
 * Parses `argv`; prints `usage` and exits on --help. Unknown options and missing values are
 * UserErrors that name the option.
 */
export function parseCommandArgs(argv: string[], options: Options, usage: string, allowPositionals = true): Parsed {
  if (argv.includes('--help') || argv.includes('-h')) {
    process.stdout.write(usage);
    process.exit(0);
  }
  try {
    const { values, positionals } = parseArgs({ args: argv, options, allowPositionals, strict: true });
    return { values: values as Parsed['values'], positionals };
  } catch (e) {
    throw new UserError(`${(e as Error).message.replace(/\. To specify.*$/, '')}. Run with --help for the options.`);
  }
}

export function intOption(values: Parsed['values'], name: string, min = 0): number | undefined {
  const v = values[name];
  if (v === undefined) return undefined;
  const n = Number(v);
  if (typeof v !== 'string' || !Number.isSafeInteger(n) || n < min) throw new UserError(`--${name} must be an integer ≥ ${min}, got '${String(v)}'`);
  return n;
}

export function numberOption(values: Parsed['values'], name: string, min: number, max: number): number | undefined {
  const v = values[name];
  if (v === undefined) return undefined;
  const n = Number(v);
  if (typeof v !== 'string' || !Number.isFinite(n) || n < min || n > max) throw new UserError(`--${name} must be a number in [${min}, ${max}], got '${String(v)}'`);
  return n;
}

const BACKENDS: BackendName[] = ['auto', 'cuda', 'onnx', 'reference'];

export function backendOption(values: Parsed['values']): BackendName {
  const v = (values.backend as string | undefined) ?? 'auto';
  if (!BACKENDS.includes(v as BackendName)) throw new UserError(`--backend must be one of ${BACKENDS.join(', ')}, got '${v}'`);
  return v as BackendName;
}

export const backendUsage = '  --backend B         auto | cuda | onnx | reference (default auto)\n';
