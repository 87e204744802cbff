/**
 * `klc bench --contexts 4096,131072,1048576`: the engine at the sizes users run, through the
 * product's own path. For each context a synthetic workspace of that many tokens is ingested (pack,
 * slices, checkpoints, state save) and the figures a user feels are measured on it: ingest time,
 * state save and restore, time to first token of a 100-token question on the cached state, fork
 * time and memory, time per output token for one answer and for eight together, re-ingest after an
 * edit near the end, peak GPU memory, each against its floor on the measured card. Figures are
 * written to --json as they come, so a run cut short still leaves what it measured.
 */
import { promises as fs } from 'node:fs';
import { join } from 'node:path';
import { CudaBackend } from '../engine/backends/cuda/backend';
import { questionTokens } from '../engine/chat-template';
import { generate, generateBatch, type Generated } from '../engine/generate';
import type { IngestProgress } from '../engine/api';
import { decodeStepBytes, prefillFlops } from '../engine/plan/floors';
import { ASK_BATCH_LIMIT, type EngineSession } from '../engine/session';
import { OP_KINDS, describeOpTimes, timeOps, type OpKind } from '../engine/model/op-times';
import type { SequenceState } from '../engine/state/types';
import { writeFileAtomic } from '../common/atomic';

/** Tokens of the question whose time to first token is measured (the "100-token question"). */
const QUESTION_TOKENS = 100;

export interface ScaleOptions {
  contexts: number[];
  /** Contexts up to this also time one raw prefill of the same tokens (the ingest overhead's yardstick). */
  rawPrefillUpTo: number;
  json?: string;
  decodeTokens: number;
  /** Also time each kind of layer op in synchronised passes at every context (profileAt). */
  profile?: boolean;
}

type Figures = Record<string, number | string | boolean>;

/** A workspace of about `tokens` tokens: source-like files of ~550 tokens each, deterministic. */
async function synthesize(dir: string, tokens: number): Promise<void> {
  await fs.rm(dir, { recursive: true, force: true });
  // The bundled tokenizer reads this text at about 2.8 bytes per token; a tenth more than needed, the packer cuts.
  const bytes = tokens * 3.1 + 20000;
  let made = 0;
  for (let f = 0; made < bytes; f++) {
    const lines: string[] = [`// module ${f}: synthetic source for klc bench`, `import { helper${f % 17} } from './m${Math.max(0, f - 1)}';`];
    for (let i = 0; i < 10; i++) {
      const n = f * 10 + i;
      lines.push(`export function handle${n % 97}Request${n}(input: Item${n % 13}, options = { retries: ${n % 7}, label: 'queue-${n % 31}' }): number {`,
        `  return helper${f % 17}(input.weight${n % 5} * ${n}) + options.retries;`, '}');
    }
    const text = lines.join('\n') + '\n';
    const sub = join(dir, `pkg${Math.floor(f / 100)}`);
    await fs.mkdir(sub, { recursive: true });
    await fs.writeFile(join(sub, `m${f}.ts`), text);
    made += text.length;
  }
}

/** A question of exactly `n` tokens after the chat template: words until the template's count reaches it. */
function questionOf(session: EngineSession, n: number, salt: string): number[] {
  const words: string[] = [`Question ${salt}: which modules call`];
  let ids = questionTokens(session.tokenizer, words.join(' '));
  for (let i = 0; ids.length < n; i++) {
    words.push(`handle${i}Request`);
    ids = questionTokens(session.tokenizer, words.join(' '));
  }
  return ids;
}

export async function benchScale(session: EngineSession, scratch: string, opts: ScaleOptions, out: (line: string) => void): Promise<void> {
  const model = session.model;
  const cfg = model.config;
  const cuda = model.backend instanceof CudaBackend ? model.backend : null;
  const report: { card: string; backend: string; model: string; copyBandwidth?: number; gemmRate?: number; contexts: Figures[] } = {
    card: model.backend.device,
    backend: model.backend.name,
    model: session.modelDir,
    contexts: [],
  };
  const save = async () => {
    if (opts.json) await writeFileAtomic(opts.json, JSON.stringify(report, null, 2) + '\n');
  };
  const sync = () => cuda?.synchronize();
  let minFree = Infinity;
  const sample = () => {
    if (cuda) minFree = Math.min(minFree, cuda.memoryInfo().free);
  };
  if (cuda) {
    report.copyBandwidth = cuda.measureCopyBandwidth();
    report.gemmRate = cuda.measureGemmRate();
    out(`card ${cuda.device}: copy ${(report.copyBandwidth / 1e12).toFixed(2)} TB/s (read + write), dense bf16 GEMM ${(report.gemmRate / 1e12).toFixed(0)} TFLOP/s (${cuda.engine})`);
  }
  await save();
  const sampling = { temperature: 0, topP: 1, topK: 0, maxNewTokens: opts.decodeTokens };

  // The first forward pays one-time costs (kernel loading, cuBLAS's heuristics, workspace growth)
  // that neither the first ingest nor the raw prefill it is compared with should carry.
  const warm = model.newState();
  const w0 = performance.now();
  await model.prefill(warm, Int32Array.from({ length: model.prefillTokens }, (_, i) => (i * 7919) % cfg.vocabSize), { logits: 'none', slice: model.prefillTokens });
  sync();
  model.releaseState(warm);
  out(`first forward (${model.prefillTokens} tokens, untimed in the figures): ${((performance.now() - w0) / 1000).toFixed(2)} s`);

  for (const context of opts.contexts) {
    const row: Figures = { context };
    report.contexts.push(row);
    const put = async (key: string, value: number | string | boolean, text?: string) => {
      row[key] = value;
      if (text) out(`[${context}] ${text}`);
      await save();
    };
    const ws = join(scratch, `ws-${context}`);
    await synthesize(ws, context);
    const settings = { roots: [ws], maxTokens: context };

    // Ingest through the product path, split into its phases by the progress events.
    const marks: Partial<Record<IngestProgress['phase'], number>> = {};
    const t0 = performance.now();
    const ingest = await session.ingest(settings, (p) => {
      marks[p.phase] ??= performance.now();
    });
    sync();
    const end = performance.now();
    sample();
    const prefillS = ((marks.save ?? end) - (marks.prefill ?? marks.restore ?? t0)) / 1000;
    const saveS = (end - (marks.save ?? end)) / 1000;
    const tokens = ingest.tokens;
    await put('tokens', tokens);
    await put('files', ingest.files);
    await put('ingestSeconds', ingest.seconds, `ingest ${tokens} tokens (${ingest.files} files) in ${ingest.seconds.toFixed(2)} s: pack+tokenize ${(((marks.restore ?? t0) - t0) / 1000).toFixed(2)} s, prefill ${prefillS.toFixed(2)} s = ${(tokens / prefillS).toFixed(0)} tok/s, save ${saveS.toFixed(2)} s`);
    await put('ingestTokensPerSecond', tokens / ingest.seconds);
    await put('prefillSeconds', prefillS);
    await put('saveSeconds', saveS);
    if (report.gemmRate) {
      const floor = prefillFlops(cfg, 0, tokens) / report.gemmRate;
      await put('prefillFloorSeconds', floor, `prefill floor ${floor.toFixed(2)} s (${(prefillFlops(cfg, 0, tokens) / 1e15).toFixed(2)} PFLOP ÷ GEMM rate): ingest ${(ingest.seconds / floor).toFixed(2)}x, prefill ${(prefillS / floor).toFixed(2)}x the floor`);
    }

    const ids = session.repoIds();
    if (!ids) throw new Error('bench: the ingest left no state');
    if (context <= opts.rawPrefillUpTo) {
      const s = model.newState();
      const r0 = performance.now();
      await model.prefill(s, ids, { logits: 'none', slice: model.prefillTokens });
      sync();
      const raw = (performance.now() - r0) / 1000;
      sample();
      model.releaseState(s);
      await put('rawPrefillSeconds', raw, `one raw prefill of the same ${ids.length} tokens: ${raw.toFixed(2)} s; ingest ÷ raw prefill = ${(ingest.seconds / raw).toFixed(2)}`);
    }

    // Restore: the saved state read back into a fresh session state.
    session.releaseRepo();
    const restored = await session.ingest(settings);
    sync();
    sample();
    await put('restoreSeconds', restored.seconds, `restore of the saved state: ${restored.seconds.toFixed(2)} s (up to date: ${restored.upToDate})`);

    // Fork: time and device memory of one question's copy of the repository state.
    // One fork first, untimed, so that first-call costs (JIT, driver) stay out of the figure.
    model.releaseState(session.forkRepoState()!.state);
    const free0 = cuda?.memoryInfo().free ?? 0;
    const f0 = performance.now();
    const probe = session.forkRepoState()!.state;
    sync();
    const forkMs = performance.now() - f0;
    const forkBytes = cuda ? free0 - cuda.memoryInfo().free : 0;
    model.releaseState(probe);
    await put('forkMs', forkMs);
    await put('forkBytes', forkBytes, `fork ${forkMs.toFixed(2)} ms, ${(forkBytes / 2 ** 20).toFixed(1)} MiB of device memory`);

    // Time to first token of a 100-token question on the cached state (the second of two: warm kernels).
    const question = questionOf(session, QUESTION_TOKENS, 'ttft');
    let ttft = 0;
    for (let i = 0; i < 2; i++) {
      const s = session.forkRepoState()!.state;
      const g = await generate(model, session.tokenizer, s, question, { sampling: { ...sampling, maxNewTokens: 1 }, stopIds: new Set() });
      model.releaseState(s);
      ttft = g.ttftMs;
    }
    await put('ttftMs', ttft, `time to first token, ${question.length}-token question on the cached state: ${ttft.toFixed(1)} ms`);

    // One answer, then eight together, each decoding `decodeTokens` tokens (no stop tokens).
    const replaysBefore = cuda?.decodeGraphReplays ?? 0;
    const one = session.forkRepoState()!.state;
    const single = await generate(model, session.tokenizer, one, question, { sampling, stopIds: new Set() });
    model.releaseState(one);
    sample();
    const tpot = 1000 / single.decodeTokensPerSecond;
    const prompts = Array.from({ length: ASK_BATCH_LIMIT }, (_, i) => questionOf(session, QUESTION_TOKENS, `b${i}`));
    const together: Generated[] = await generateBatch(model, session.tokenizer, () => session.forkRepoState()!.state, prompts,
      prompts.map(() => ({ sampling, stopIds: new Set<number>() })), ASK_BATCH_LIMIT);
    sample();
    const stepMs = 1000 / (together.reduce((n, g) => n + g.decodeTokensPerSecond, 0) / together.length);
    const replays = (cuda?.decodeGraphReplays ?? 0) - replaysBefore;
    await put('tpotMs', tpot);
    await put('batchStepMs', stepMs);
    await put('decodeGraphReplays', replays);
    await put('batchTokensPerSecond', (ASK_BATCH_LIMIT * 1000) / stepMs);
    let floors = '';
    if (report.copyBandwidth) {
      const bf16 = cuda?.bf16Caches ?? true;
      // The weights as quantized at load; a checkpoint stored quantized plans as 'none', so its floor is the bf16 one.
      const scheme = cuda?.plan.quantization ?? 'none';
      const f1 = (decodeStepBytes(cfg, tokens + QUESTION_TOKENS, 1, { tensorCores: bf16, quantization: scheme }) / report.copyBandwidth) * 1000;
      // The answers are forks of the repository state: its rows could be read once for all of them.
      const f8 = (decodeStepBytes(cfg, tokens + QUESTION_TOKENS, ASK_BATCH_LIMIT, { tensorCores: bf16, quantization: scheme, shared: tokens }) / report.copyBandwidth) * 1000;
      await put('tpotFloorMs', f1);
      await put('batchStepFloorMs', f8);
      // What answering together can gain at all: the step of N answers reads the experts their tokens route to.
      const ceiling = (ASK_BATCH_LIMIT * f1) / f8;
      floors = ` (floor ${f1.toFixed(2)} ms: ${(tpot / f1).toFixed(2)}x; ${ASK_BATCH_LIMIT} together floor ${f8.toFixed(2)} ms: ${(stepMs / f8).toFixed(2)}x, ` +
        `at most ${ceiling.toFixed(1)}x one answer's tokens/s at the floors)`;
    }
    out(`[${context}] time per output token: one answer ${tpot.toFixed(2)} ms, ${ASK_BATCH_LIMIT} together ${stepMs.toFixed(2)} ms per step = ` +
      `${((ASK_BATCH_LIMIT * 1000) / stepMs).toFixed(0)} tok/s, ${((ASK_BATCH_LIMIT * tpot) / stepMs).toFixed(2)}x one answer${floors}; ${replays} steps replayed from CUDA graphs`);

    if (opts.profile) {
      for (const [what, times] of Object.entries(await profileAt(session, sync))) {
        for (const k of OP_KINDS) row[`profile.${what}.${k}`] = times[k];
        out(`[${context}] where the time goes, ${PROFILED[what as keyof typeof PROFILED]} (synchronised): ${describeOpTimes(times)}`);
      }
      await save();
    }

    // An edit near the end: re-ingest recomputes from the last checkpoint before it.
    const files = session.packedFiles();
    if (files.length === 0) throw new Error(`bench: the ${context}-token workspace packed no file`);
    await fs.appendFile(files[files.length - 1], '\n// edited by klc bench\n');
    const again = await session.ingest(settings);
    sync();
    sample();
    await put('editResumedAt', again.resumedTokens);
    await put('editRecomputedTokens', again.tokens - again.resumedTokens);
    await put('editSeconds', again.seconds, `edit of the last file: re-ingest ${again.seconds.toFixed(2)} s, resumed at ${again.resumedTokens} of ${again.tokens}, recomputed ${again.tokens - again.resumedTokens} tokens`);
    if (cuda) {
      const { total } = cuda.memoryInfo();
      await put('peakGpuBytes', total - minFree, `peak GPU memory in use (sampled after each phase): ${((total - minFree) / 1e9).toFixed(1)} GB of ${(total / 1e9).toFixed(1)} GB`);
    }
    session.releaseRepo();
    // A 1M-token state file is 17 GB: keep one context's on disk at a time.
    await fs.rm(ws, { recursive: true, force: true });
    await fs.rm(join(scratch, 'cache'), { recursive: true, force: true });
  }
}

const PROFILED = {
  slice: 'one prefill slice over the cached state',
  decode1: 'one decode step of one answer',
  decode8: `one decode step of ${ASK_BATCH_LIMIT} answers together`,
} as const;

/** Decode steps averaged per profiled figure, after as many untimed ones. */
const PROFILE_STEPS = 4;

/**
 * Milliseconds per kind of layer op, each call between two synchronisations, on forks of the
 * repository state: one full prefill slice after the cached context (what every ingest slice at
 * this depth costs), and a decode step of one answer and of ASK_BATCH_LIMIT together.
 */
async function profileAt(session: EngineSession, sync: () => void): Promise<Record<keyof typeof PROFILED, Record<OpKind, number>>> {
  const model = session.model;
  const vocab = model.config.vocabSize;
  const timer = timeOps(model.backend, sync);
  const forks: SequenceState[] = [];
  const fork = () => {
    const s = session.forkRepoState()!.state;
    forks.push(s);
    return s;
  };
  const timed = async (run: () => Promise<unknown>, per = 1): Promise<Record<OpKind, number>> => {
    timer.reset();
    timer.on = true;
    await run();
    timer.on = false;
    return Object.fromEntries(OP_KINDS.map((k) => [k, timer.times[k] / per])) as Record<OpKind, number>;
  };
  const steps = async (states: SequenceState[]) => {
    const picks = states.map(() => ({ temperature: 0, topP: 1, topK: 0, uniform: 0, vocab }));
    let ids: Int32Array = Int32Array.from(states, (_, i) => (i * 7919 + 1) % vocab);
    for (let i = 0; i < PROFILE_STEPS; i++) ids = await model.decodeAndPick(states, ids, picks);
    return timed(async () => {
      for (let i = 0; i < PROFILE_STEPS; i++) ids = await model.decodeAndPick(states, ids, picks);
    }, PROFILE_STEPS);
  };
  try {
    const slice = Int32Array.from({ length: model.prefillTokens }, (_, i) => (i * 104729 + 3) % vocab);
    const sliceTimes = await timed(() => model.prefill(fork(), slice, { logits: 'none', slice: model.prefillTokens }));
    const decode1 = await steps([fork()]);
    const decode8 = await steps(Array.from({ length: ASK_BATCH_LIMIT }, fork));
    return { slice: sliceTimes, decode1, decode8 };
  } finally {
    timer.restore();
    for (const s of forks) model.releaseState(s);
  }
}
