/** Option parsing shared by the klc subcommands: node's parseArgs with errors a user can act on. */
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { UserError } from '../common/errors';
import { resolve } from 'node:path';
import type { BackendName } from '../engine/api';
import type { DummySpec } from '../engine/model/model';
import { LOAD_QUANTIZATIONS } from '../engine/model/quant/presets';
import type { QuantizationChoice } from '../engine/plan/memory-plan';

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

/** Where the weights come from: `--load-format dummy --model-config FILE [--seed N]` generates them. */
export const weightOptions = {
  'load-format': { type: 'string' },
  'model-config': { type: 'string' },
  seed: { type: 'string' },
} as const;

export const weightUsage = `  --load-format F     safetensors (default: the checkpoint in --model) | dummy (weights generated from
                      --model-config's config and --seed, no checkpoint; for speed and memory runs)
  --model-config FILE config.json for dummy weights, e.g. assets/configs/kimi-linear-48b-a3b-instruct.json
  --seed N            seed of the dummy weights (default 0)
`;

/** The dummy-weight request of the command line, or undefined for a checkpoint. */
export function dummyOption(values: Parsed['values']): DummySpec | undefined {
  const format = (values['load-format'] as string | undefined) ?? 'safetensors';
  if (format !== 'safetensors' && format !== 'dummy') throw new UserError(`--load-format must be safetensors or dummy, got '${format}'`);
  if (format === 'safetensors') {
    if (values['model-config'] !== undefined) throw new UserError('--model-config goes with --load-format dummy; a checkpoint brings its own config.json');
    return undefined;
  }
  const configFile = values['model-config'] as string | undefined;
  if (!configFile) throw new UserError('--load-format dummy needs --model-config FILE (a config.json, e.g. assets/configs/kimi-linear-48b-a3b-instruct.json)');
  return { configFile: resolve(configFile), seed: intOption(values, 'seed', 0) ?? 0 };
}

const QUANTIZATION_CHOICES: readonly QuantizationChoice[] = ['auto', ...LOAD_QUANTIZATIONS];

/** --quantization, or undefined when not given. */
export function quantizationOption(values: Parsed['values']): QuantizationChoice | undefined {
  const v = values.quantization as string | undefined;
  if (v === undefined) return undefined;
  if (!(QUANTIZATION_CHOICES as readonly string[]).includes(v)) throw new UserError(`--quantization must be one of ${QUANTIZATION_CHOICES.join(', ')}, got '${v}'`);
  return v as QuantizationChoice;
}

export const quantizationUsage = `  --quantization Q    none | int4 | int8 | fp8: quantize a bf16 checkpoint's weights at load; auto: the CUDA
                      backend quantizes only when its memory plan needs it (none elsewhere). Default none
`;
