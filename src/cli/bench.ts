/**
 * `klc bench`: the figures that matter to a user of the engine, measured on a copy of a real
 * folder so that nothing of the user's is touched:
 *   ingest tokens/s · decode tokens/s · answers decoded together vs one after another · time to
 *   first token from the cached state vs prefilling the whole context again · re-ingest after
 *   editing one file vs a full ingest.
 */
import { promises as fs } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { packageRoot } from '../common/package-root';
import { UserError } from '../common/errors';
import { questionTokens } from '../engine/chat-template';
import { sampleToken, seededRandom } from '../engine/sampler';
import { generate, prefillChunked } from '../engine/generate';
import { loadModel } from '../engine/model/model';
import type { AskResult } from '../engine/api';
import { ASK_BATCH_LIMIT, EngineSession } from '../engine/session';
import { backendOption, dummyOption, intOption, parseCommandArgs, quantizationUsage, weightOptions, weightUsage } from './args';
import { benchScale } from './bench-scale';
import { memoryBudget } from './session-options';
import { MAX_CONTEXT_TOKENS } from '../engine/plan/memory-plan';
import { parseTokens } from '../common/sizes';

const USAGE = `usage: klc bench [dir] [options]

Copies dir (default: this project's src/) to a temporary folder and measures ingest, decode,
several answers decoded together against one after another, time to first token (cached state
vs re-prefill) and incremental re-ingest on that copy, the
peak resident memory against the weights, and (for a backend other than the reference) prefill
speed against the reference backend on the same tokens.

  --model DIR         checkpoint folder (default: the bundled tiny checkpoint)
  --backend B         auto | cuda | onnx | reference (default auto)
  --max-tokens N      token budget for the packed copy (default 16384)
  --decode-tokens N   tokens generated for the decode figure (default 64)
  --gpu-memory BYTES  GPU memory the CUDA backend may plan for (24GB, 24GiB or bytes)
${quantizationUsage}${weightUsage}
At scale: klc bench --contexts 4096,131072,1048576 [--json FILE] [--raw-prefill-up-to N] …
  ingests a synthetic workspace of each size through the product path and prints, per context,
  ingest (pack, prefill, save), restore, time to first token of a 100-token question, fork time
  and memory, time per output token for one answer and 8 together, re-ingest after an edit near
  the end and peak GPU memory, each against its floor on the measured card (cuda backend).
  --contexts LIST        token counts (4k, 128k and 1M are accepted)
  --prefill-slice N      tokens per prefill call (default the longest of the plan's choices that fits)
  --json FILE            the figures as JSON, written as they are measured
  --raw-prefill-up-to N  also time one raw prefill of the same tokens up to this context (default 131072)
  --profile              also where the time goes at each context, by kind of layer op (KDA, MLA, MoE,
                         dense MLP, norms, outside the layers), in synchronised passes: one prefill
                         slice over the cached state, one answer's decode step and 8 answers' step
`;

/** Tokens prefilled by both backends for the speed ratio: enough to time, short enough for the slow reference. */
const REFERENCE_TOKENS = 256;

const QUESTION = 'Which files call the function that packs the workspace, and what do they do with its result?';

/** Prefill speed of the session's backend against the reference backend on the same tokens, in this run. */
async function compareWithReference(session: EngineSession, ids: Int32Array, out: (label: string, value: string) => void): Promise<void> {
  const n = Math.min(REFERENCE_TOKENS, ids.length);
  const slice = ids.subarray(0, n);
  const rate = async (model: EngineSession['model']) => {
    const t0 = performance.now();
    await model.prefill(model.newState(), slice, { logits: 'none' });
    return n / ((performance.now() - t0) / 1000);
  };
  const tested = await rate(session.model);
  const reference = await loadModel(session.modelDir, { backend: 'reference', log: () => {} });
  try {
    const base = await rate(reference);
    out(`prefill vs reference (${n} tokens)`, `${tested.toFixed(1)} vs ${base.toFixed(1)} tokens/s = ${(tested / base).toFixed(1)}x`);
  } finally {
    await reference.dispose();
  }
}

/**
 * ASK_BATCH_LIMIT questions answered together (askBatch: one decode step for all) against the same
 * questions one after another (ask), greedy, each up to `tokens` tokens; the answers must be equal.
 */
async function answersTogether(session: EngineSession, tokens: number, out: (label: string, value: string) => void): Promise<void> {
  const requests = Array.from({ length: ASK_BATCH_LIMIT }, (_, i) => ({
    question: `${QUESTION} (${i + 1} of ${ASK_BATCH_LIMIT})`,
    sampling: { temperature: 0, maxNewTokens: tokens },
  }));
  const rate = (answers: AskResult[], ms: number) => answers.reduce((n, a) => n + a.tokens, 0) / (ms / 1000);
  let t0 = performance.now();
  const alone: AskResult[] = [];
  for (const r of requests) alone.push(await session.ask(r));
  const aloneRate = rate(alone, performance.now() - t0);
  t0 = performance.now();
  const together = await session.askBatch(requests);
  const togetherRate = rate(together, performance.now() - t0);
  const differs = together.findIndex((a, i) => a.text !== alone[i].text);
  if (differs >= 0) throw new Error(`answer ${differs + 1} differs between askBatch and ask: batched decoding is wrong`);
  out(`${ASK_BATCH_LIMIT} answers together`, `${togetherRate.toFixed(1)} vs ${aloneRate.toFixed(1)} tokens/s one after another = ${(togetherRate / aloneRate).toFixed(1)}x (same answers)`);
}

export async function run(argv: string[]): Promise<void> {
  const { values, positionals } = parseCommandArgs(
    argv,
    {
      model: { type: 'string' }, backend: { type: 'string' }, 'max-tokens': { type: 'string' }, 'decode-tokens': { type: 'string' },
      'gpu-memory': { type: 'string' }, contexts: { type: 'string' }, json: { type: 'string' }, 'raw-prefill-up-to': { type: 'string' }, quantization: { type: 'string' },
      profile: { type: 'boolean' }, 'prefill-slice': { type: 'string' }, ...weightOptions,
    },
    USAGE,
  );
  if (values.contexts !== undefined) return runAtScale(values);
  const source = resolve(positionals[0] ?? join(packageRoot(), 'src'));
  const stat = await fs.stat(source).catch(() => null);
  if (!stat?.isDirectory()) throw new UserError(`${source} is not a folder to benchmark on`, source);
  const maxTokens = intOption(values, 'max-tokens', 256) ?? 16384;
  const decodeTokens = intOption(values, 'decode-tokens', 2) ?? 64;

  const scratch = await fs.mkdtemp(join(tmpdir(), 'klc-bench-'));
  const ws = join(scratch, 'workspace');
  try {
    await fs.cp(source, ws, { recursive: true, preserveTimestamps: true, filter: (p) => !/[/\\](node_modules|\.git)([/\\]|$)/.test(p) });
    const session = await EngineSession.open({
      modelDir: values.model ? resolve(values.model as string) : undefined,
      dummy: dummyOption(values),
      backend: backendOption(values),
      cacheDir: join(scratch, 'cache'),
      log: () => {},
    });
    const settings = { roots: [ws], maxTokens };
    const rows: [string, string][] = [];
    const out = (label: string, value: string) => {
      rows.push([label, value]);
      process.stderr.write(`${label}: ${value}\n`);
    };

    const full = await session.ingest(settings);
    out('ingest (full)', `${full.tokens} tokens, ${full.files} files in ${full.seconds.toFixed(2)} s = ${full.tokensPerSecond.toFixed(1)} tokens/s`);

    const forked = session.forkRepoState()!;
    const prompt = questionTokens(session.tokenizer, QUESTION);
    const sampling = { temperature: 0, topP: 1, topK: 0, maxNewTokens: decodeTokens };
    const cached = await generate(session.model, session.tokenizer, forked.state, prompt, { sampling, stopIds: new Set() });
    out('decode', `${cached.tokens} tokens at ${cached.decodeTokensPerSecond.toFixed(1)} tokens/s`);
    out('time to first token, cached state', `${cached.ttftMs.toFixed(1)} ms (${prompt.length} question tokens)`);

    await answersTogether(session, decodeTokens, out);

    const t0 = performance.now();
    const fresh = session.model.newState();
    const logits = await prefillChunked(session.model, fresh, Int32Array.from([...forked.ids, ...prompt]));
    const first = sampleToken(logits!.subarray(0, session.tokenizer.vocabSize), sampling, seededRandom(0));
    const coldMs = performance.now() - t0;
    if (first !== cached.ids[0]) throw new Error(`re-prefill chose token ${first} but the cached state chose ${cached.ids[0]}: the cached state is wrong`);
    out('time to first token, re-prefill', `${coldMs.toFixed(1)} ms (${forked.ids.length + prompt.length} tokens) = ${(coldMs / cached.ttftMs).toFixed(1)}x the cached state`);

    const packed = session.packedFiles();
    if (packed.length < 2) throw new UserError(`${source} packs fewer than two files; the re-ingest figure needs a larger folder`, source);
    for (const [label, pick] of [
      ['re-ingest after editing the newest file', packed[packed.length - 1]],
      ['re-ingest after editing a file in the middle', packed[Math.floor(packed.length / 2)]],
    ] as const) {
      await fs.appendFile(pick, `\n// edited by klc bench\n`);
      const again = await session.ingest(settings);
      out(label, `${again.seconds.toFixed(2)} s, resumed at ${again.resumedTokens}/${again.tokens} = ${(full.seconds / again.seconds).toFixed(1)}x faster than full`);
    }
    const rssMiB = process.resourceUsage().maxRSS / 1024;
    const weightsMiB = (session.parameters * 4) / 2 ** 20;
    out('peak resident memory', `${rssMiB.toFixed(0)} MiB = ${(rssMiB / weightsMiB).toFixed(2)}x the weights as fp32 (${weightsMiB.toFixed(0)} MiB)`);
    if (session.model.backend.name !== 'reference') await compareWithReference(session, forked.ids, out);
    await session.dispose();

    const width = Math.max(...rows.map(([l]) => l.length));
    process.stdout.write(`klc bench — ${session.model.backend.name} on ${session.model.backend.device}, model ${session.modelDir}\n`);
    for (const [l, v] of rows) process.stdout.write(`${l.padEnd(width)}  ${v}\n`);
  } finally {
    await fs.rm(scratch, { recursive: true, force: true });
  }
}

/** `--contexts`: the figures at the given sizes on synthetic workspaces (bench-scale.ts). */
async function runAtScale(values: Record<string, string | boolean | undefined>): Promise<void> {
  const contexts = String(values.contexts).split(',').map((t) => {
    const n = parseTokens(t.trim());
    if (!n || n < 1024 || n > MAX_CONTEXT_TOKENS) throw new UserError(`--contexts takes token counts from 1024 to ${MAX_CONTEXT_TOKENS} (4k, 128k, 1M accepted), got '${t}'`);
    return n;
  });
  const decodeTokens = intOption(values, 'decode-tokens', 2) ?? 64;
  const rawPrefillUpTo = intOption(values, 'raw-prefill-up-to', 0) ?? 131072;
  const scratch = await fs.mkdtemp(join(tmpdir(), 'klc-bench-'));
  try {
    // One model serves every context: its memory is planned for the largest, with room for the question and answers.
    const contextTokens = Math.min(MAX_CONTEXT_TOKENS, Math.max(...contexts) + 8192);
    const session = await EngineSession.open({
      modelDir: values.model ? resolve(values.model as string) : undefined,
      dummy: dummyOption(values),
      backend: backendOption(values),
      cacheDir: join(scratch, 'cache'),
      memory: { ...memoryBudget(values, {}), contextTokens, forks: ASK_BATCH_LIMIT },
      log: (line) => process.stderr.write(`${line}\n`),
    });
    try {
      process.stdout.write(`klc bench — ${session.model.backend.name} on ${session.model.backend.device}, model ${session.modelDir}\n`);
      await benchScale(session, scratch, { contexts, rawPrefillUpTo, decodeTokens, profile: values.profile === true, json: values.json ? resolve(values.json as string) : undefined }, (line) => process.stdout.write(`${line}\n`));
    } finally {
      await session.dispose();
    }
  } finally {
    await fs.rm(scratch, { recursive: true, force: true });
  }
}
