/**
 * `klc accuracy`: what each quantization at load costs in accuracy. The unquantized model and
 * each scheme run the same real-text token sequences; per scheme it reports the KL divergence of
 * its next-token distributions from the unquantized model's and how often their top-1 tokens agree.
 */
import { resolve } from 'node:path';
import { writeFileAtomic } from '../common/atomic';
import { UserError } from '../common/errors';
import type { BackendName } from '../engine/api';
import { comparePositions, summarizeDivergence, type DivergenceSummary, type PositionDivergence } from '../engine/logit-divergence';
import { loadConfig, loadConfigFile } from '../engine/model/config';
import { loadModel, type DummySpec, type Model } from '../engine/model/model';
import { LOAD_QUANTIZATIONS, type LoadQuantization } from '../engine/model/quant/presets';
import { accuracyTokenizer, accuracyTokens, SEQUENCE_TOKENS, TEXT_SOURCE } from './accuracy-text';
import { backendOption, backendUsage, dummyOption, intOption, parseCommandArgs, weightOptions, weightUsage, type Parsed } from './args';

const DEFAULT_SCHEMES: LoadQuantization[] = ['int8', 'int4', 'fp8'];
const DEFAULT_POSITIONS = 2048;

const USAGE = `usage: klc accuracy (--model DIR | --load-format dummy --model-config FILE) [--backend B] [--schemes LIST] [--positions N] [--json FILE]

Runs the same tokens through the unquantized model and through each quantization at load, and
prints per scheme: positions, mean and max KL(p_unquantized ‖ p_scheme) of the next-token
distributions in nats, and the fraction of positions whose top-1 tokens agree.

The tokens are ${TEXT_SOURCE}, each file preceded by a line naming it, in
sequences of ${SEQUENCE_TOKENS} tokens, tokenized with the checkpoint's tokenizer (the bundled one when the
folder has none, and for dummy weights); ids beyond the model's vocabulary are taken mod its size.

  --model DIR         an unquantized (bf16 or fp32) checkpoint folder; with --load-format dummy, only
                      its tokenizer is used
  --schemes LIST      comma-separated, from ${LOAD_QUANTIZATIONS.join(', ')} (default ${DEFAULT_SCHEMES.join(',')}); none compares
                      the unquantized model with itself, a check of the backend's determinism
  --positions N       next-token distributions compared per scheme (default ${DEFAULT_POSITIONS})
  --json FILE         also write the figures as JSON
${backendUsage}${weightUsage}`;

export interface AccuracyOptions {
  /** The checkpoint folder, or with `dummy` the config file that names the model. */
  modelDir: string;
  dummy?: DummySpec;
  /** Whose tokenizer to use with dummy weights (default the bundled one). */
  tokenizerDir?: string;
  backend: BackendName;
  /** Default: int8, int4 and fp8, less those the backend does not quantize to at load. */
  schemes?: readonly LoadQuantization[];
  positions: number;
  log: (line: string) => void;
}

export interface SchemeAccuracy extends DivergenceSummary {
  scheme: LoadQuantization;
  /** How the loaded weights were quantized, as the engine describes it. */
  weights: string;
}

export interface AccuracyReport {
  model: string;
  backend: string;
  device: string;
  text: { source: string; files: string[]; tokenizer: string; sequences: number; sequenceTokens: number; digest: string };
  positions: number;
  schemes: SchemeAccuracy[];
}

/** Logits [T × vocab] for every position of each sequence, each from a fresh state. */
async function* sequenceLogits(model: Model, sequences: readonly Int32Array[]): AsyncGenerator<Float32Array> {
  for (const ids of sequences) {
    const state = model.newState();
    try {
      yield await model.prefill(state, ids, { logits: 'all' });
    } finally {
      model.releaseState(state);
    }
  }
}

/**
 * Loads the unquantized model, keeps its logits on the host and disposes it; then loads, measures
 * and disposes one scheme at a time, so that at most one model is in memory.
 */
export async function measureAccuracy(opts: AccuracyOptions): Promise<AccuracyReport> {
  const { modelDir, dummy, log } = opts;
  const config = dummy ? await loadConfigFile(dummy.configFile) : await loadConfig(modelDir);
  const { tokenizer, dir: tokenizerDir } = await accuracyTokenizer(dummy ? opts.tokenizerDir : modelDir);
  const { sequences, files, digest } = await accuracyTokens(tokenizer, config.vocabSize, opts.positions);
  // Only the sequences are ever in the state: the CUDA backend need not plan for a longer context.
  const load = (backend: BackendName, quantization: LoadQuantization) =>
    loadModel(modelDir, { backend, dummy, quantization, memory: { contextTokens: SEQUENCE_TOKENS, forks: 0 }, log });

  log(`unquantized: loading ${modelDir} on ${opts.backend}`);
  const baseline = await load(opts.backend, 'none');
  const { name: backend, device } = baseline.backend;
  // Every scheme runs on the backend 'auto' chose for the baseline, whose names are BackendNames.
  const sameBackend = backend as BackendName;
  const base: Float32Array[] = [];
  const wanted = opts.schemes ?? DEFAULT_SCHEMES;
  try {
    for await (const logits of sequenceLogits(baseline, sequences)) base.push(logits);
  } finally {
    await baseline.dispose();
  }

  const schemes: SchemeAccuracy[] = [];
  for (const scheme of wanted) {
    const started = performance.now();
    log(`${scheme}: loading`);
    const model = await load(sameBackend, scheme);
    const parts: PositionDivergence[] = [];
    try {
      let i = 0;
      for await (const logits of sequenceLogits(model, sequences)) parts.push(comparePositions(base[i++], logits, config.vocabSize));
    } finally {
      await model.dispose();
    }
    const row = { scheme, weights: model.weights, ...summarizeDivergence(parts) };
    log(`${scheme}: mean KL ${row.meanKl.toExponential(3)} nats, top-1 agreement ${row.top1Agreement.toFixed(4)} (${((performance.now() - started) / 1000).toFixed(1)} s)`);
    schemes.push(row);
  }
  return {
    model: modelDir,
    backend,
    device,
    text: { source: TEXT_SOURCE, files, tokenizer: tokenizerDir, sequences: sequences.length, sequenceTokens: SEQUENCE_TOKENS, digest },
    positions: opts.positions,
    schemes,
  };
}

const plural = (n: number, noun: string) => `${n} ${noun}${n === 1 ? '' : 's'}`;

export function formatAccuracyTable(r: AccuracyReport): string {
  const head = ['scheme', 'positions', 'mean KL (nats)', 'max KL (nats)', 'top-1 agreement'];
  const rows = r.schemes.map((s) => [s.scheme, String(s.positions), s.meanKl.toExponential(3), s.maxKl.toExponential(3), `${(100 * s.top1Agreement).toFixed(2)}%`]);
  const widths = head.map((h, c) => Math.max(h.length, ...rows.map((row) => row[c].length)));
  const line = (cells: string[]) => cells.map((cell, c) => cell.padEnd(widths[c])).join('  ').trimEnd();
  return [
    `klc accuracy — ${r.backend} on ${r.device}, model ${r.model}, each scheme against the unquantized weights`,
    `${r.positions} positions: ${plural(r.text.sequences, 'sequence')} of up to ${r.text.sequenceTokens} tokens of ${r.text.source} (${plural(r.text.files.length, 'file')}, tokens sha256 ${r.text.digest.slice(0, 12)})`,
    line(head),
    ...rows.map(line),
  ].join('\n');
}

function schemesOption(values: Parsed['values']): LoadQuantization[] | undefined {
  const v = values.schemes as string | undefined;
  if (v === undefined) return undefined;
  const list = v.split(',').map((s) => s.trim());
  const bad = list.find((s) => !(LOAD_QUANTIZATIONS as readonly string[]).includes(s));
  if (bad !== undefined) throw new UserError(`--schemes takes a comma-separated list of ${LOAD_QUANTIZATIONS.join(', ')}, got '${bad}' in '${v}'`);
  return [...new Set(list as LoadQuantization[])];
}

export async function run(argv: string[]): Promise<void> {
  const { values } = parseCommandArgs(
    argv,
    { model: { type: 'string' }, backend: { type: 'string' }, schemes: { type: 'string' }, positions: { type: 'string' }, json: { type: 'string' }, ...weightOptions },
    USAGE,
    false,
  );
  const dummy = dummyOption(values);
  if (!dummy && !values.model) throw new UserError(`--model DIR is required (or --load-format dummy --model-config FILE). Run 'klc accuracy --help' for the options.`);
  const report = await measureAccuracy({
    modelDir: dummy ? dummy.configFile : resolve(values.model as string),
    dummy,
    tokenizerDir: dummy && values.model ? resolve(values.model as string) : undefined,
    backend: backendOption(values),
    schemes: schemesOption(values),
    positions: intOption(values, 'positions', 1) ?? DEFAULT_POSITIONS,
    log: (line) => process.stderr.write(`${line}\n`),
  });
  process.stdout.write(`${formatAccuracyTable(report)}\n`);
  if (values.json) await writeFileAtomic(resolve(values.json as string), `${JSON.stringify(report, null, 2)}\n`);
}
