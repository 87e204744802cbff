// Device-only speed table of the CUDA backend at the real Kimi-Linear-48B widths, on a synthetic
// checkpoint with fewer layers (test/gpu/make_synthetic.py). Prefill tokens/s and decode ms/token
// per context, measured through Model as the product runs it, then extrapolated to the full 27
// layers the way ../shared/research/hf-scale-anchor.md does: a pass with a synchronise around
// every backend call gives per-kind times; outside + 20 KDA + 7 MLA + 1 dense + 26 MoE + 27 norm
// sets over the same sum for this model's layers scales the plain timing. Decode is set beside
// the bytes a step must move at the measured copy bandwidth. Decode is also run with the
// library's small-batch paths off (KLC_SMALL_BATCH=0: sorted MoE GEMMs with a host wait, cuBLAS
// linears), on the same state, for a before/after in one run.
// Usage: node speed-table.cjs MODEL_DIR CONTEXTS(4096,32768) OUT.json [COPY_TB_PER_S]
import { writeFileSync } from 'node:fs';
import { CudaBackend } from '../../src/engine/backends/cuda/backend';
import { loadModel, type Model } from '../../src/engine/model/model';
import type { KimiConfig } from '../../src/engine/model/config';
import { OP_KINDS, timeOps, type OpKind, type OpTimer } from '../../src/engine/model/op-times';
import type { TokenPick } from '../../src/engine/sampler';
import type { SequenceState } from '../../src/engine/state/types';

const FULL = { kda: 20, mla: 7, dense: 1, moe: 26, norms: 27 };
/** Sequences in the batched decode row: the engine's answer batch (ASK_BATCH_LIMIT). */
const BATCH = 8;

const [dir, contextsArg = '4096,32768', outPath = 'speed.json', copyArg = '2.91'] = process.argv.slice(2);
const contexts = contextsArg.split(',').map(Number);
const copyBytesPerS = Number(copyArg) * 1e12;

function say(line: string): void {
  process.stdout.write(`${line}\n`);
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

function prompt(T: number, seed: number, vocab: number): Int32Array {
  let x = seed >>> 0;
  return Int32Array.from({ length: T }, () => {
    x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
    return x % vocab;
  });
}

function argmax(x: Float32Array): number {
  let best = 0;
  for (let i = 1; i < x.length; i++) if (x[i] > x[best]) best = i;
  return best;
}

function counts(c: KimiConfig): { kda: number; mla: number; dense: number; moe: number; norms: number } {
  return {
    kda: c.layers.filter((l) => l.attention === 'kda').length,
    mla: c.layers.filter((l) => l.attention === 'mla').length,
    dense: c.layers.filter((l) => l.ffn === 'dense').length,
    moe: c.layers.filter((l) => l.ffn === 'moe').length,
    norms: c.layers.length,
  };
}

/** Scale from this model to the full 27 layers, from per-kind times of one instrumented run. */
function fullRatio(times: Record<OpKind, number>, c: KimiConfig): { ratio: number; perLayer: Record<string, number> } {
  const n = counts(c);
  const per = {
    kda: times.kda / n.kda, mla: times.mla / n.mla, dense: times.dense / n.dense, moe: times.moe / n.moe, norms: times.norms / n.norms,
  };
  const sum = (m: typeof n) => times.outside + m.kda * per.kda + m.mla * per.mla + m.dense * per.dense + m.moe * per.moe + m.norms * per.norms;
  return { ratio: sum(FULL) / sum(n), perLayer: { ...per, outside: times.outside } };
}

/** Bytes a decode step of the full model moves at `T` tokens of context (bf16 weights, fp32 state). */
function decodeBytes(c: KimiConfig, T: number): number {
  const d = c.hiddenSize;
  const { numHeads: H, headDim: K } = c.kda;
  const P = H * K;
  const m = c.mla;
  const D = m.kvLoraRank + m.qkRopeHeadDim;
  const kdaW = (3 * P * d + 2 * K * d + H * d + 2 * P * K + d * P) * 2;
  const mlaW = (m.numHeads * (m.qkNopeHeadDim + m.qkRopeHeadDim) * d + D * d + m.numHeads * m.kvLoraRank * (m.qkNopeHeadDim + m.vHeadDim) + d * m.numHeads * m.vHeadDim) * 2;
  const e = c.moe;
  const moeW = (e.topK + e.numSharedExperts) * 3 * e.intermediateSize * d * 2 + e.numExperts * d * 4;
  const denseW = 3 * c.intermediateSize * d * 2;
  const weights = FULL.kda * kdaW + FULL.mla * mlaW + FULL.moe * moeW + FULL.dense * denseW + c.vocabSize * d * 2;
  const state = FULL.kda * 2 * H * K * K * 4 + FULL.mla * T * D * 4;
  return weights + state;
}

const GREEDY: Omit<TokenPick, 'vocab'> = { temperature: 0, topP: 1, topK: 0, uniform: 0 };

/**
 * Median ms of 16 decode steps of `states` together (one token each, picked greedily on the device as
 * generation does: only ids come back), then per-kind times of 8 instrumented steps; continues the states.
 */
async function decodeRun(m: Model, states: SequenceState[], first: Int32Array, probe: OpTimer): Promise<{ tpot: number; steps: number[]; ratio: number; perLayer: Record<string, number>; toks: Int32Array }> {
  const picks = states.map(() => ({ ...GREEDY, vocab: m.config.vocabSize }));
  const steps: number[] = [];
  let toks = first;
  for (let i = 0; i < 16; i++) {
    const t = performance.now();
    toks = await m.decodeAndPick(states, toks, picks);
    steps.push(performance.now() - t);
  }
  probe.on = true;
  probe.reset();
  const probeSteps = 8;
  for (let i = 0; i < probeSteps; i++) toks = await m.decodeAndPick(states, toks, picks);
  for (const k of OP_KINDS) probe.times[k] /= probeSteps;
  probe.on = false;
  const dec = fullRatio(probe.times, m.config);
  return { tpot: median(steps), steps, ratio: dec.ratio, perLayer: dec.perLayer, toks };
}

async function prefillMs(m: Model, ids: Int32Array): Promise<{ ms: number; state: ReturnType<Model['newState']>; logits: Float32Array }> {
  const state = m.newState();
  const t = performance.now();
  // The slice the product's ingest uses (the longest the memory plan fits), so the table is what users get.
  const logits = await m.prefill(state, ids, { slice: m.prefillTokens, logits: 'last' });
  return { ms: performance.now() - t, state, logits };
}

async function main(): Promise<void> {
  const t0 = performance.now();
  const m = await loadModel(dir, { backend: 'cuda' });
  const b = m.backend;
  if (!(b instanceof CudaBackend)) throw new Error(`expected the cuda backend, got ${b.name}`);
  const c = m.config;
  say(`model: ${c.layers.length} layers (${c.layers.map((l) => `${l.attention}+${l.ffn}`).join(', ')}), loaded in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  say(`device: ${b.device}`);
  const engine = b.engine;
  say(`engine: ${engine}; prefill slices of ${m.prefillTokens} tokens`);
  const probe = timeOps(b, () => b.synchronize());
  const rows: Record<string, unknown>[] = [];
  const V = c.vocabSize;
  const warm = await prefillMs(m, prompt(1024, 7, V)); // first-call costs: cuBLAS heuristics, workspace growth
  // Decode's first steps run JIT-cold (seen on H200: 4.7 ms falling to 2.5 ms over 16 steps), so some go first.
  let warmTok = argmax(warm.logits);
  for (let i = 0; i < 24; i++) warmTok = argmax(await m.decode(warm.state, warmTok));
  for (const T of contexts) {
    const reps = T <= 8192 ? 3 : T <= 40000 ? 2 : 1;
    const times: number[] = [];
    let last = await prefillMs(m, prompt(T, T, V));
    times.push(last.ms);
    for (let i = 1; i < reps; i++) {
      last = await prefillMs(m, prompt(T, T + i, V));
      times.push(last.ms);
    }
    const after = await decodeRun(m, [last.state], Int32Array.of(argmax(last.logits)), probe);
    process.env.KLC_SMALL_BATCH = '0';
    const general = await decodeRun(m, [last.state], after.toks, probe);
    delete process.env.KLC_SMALL_BATCH;
    // Eight answers from one context at once (Annotate File, klc ask --question ...): forks of the state.
    const batch = [last.state, ...Array.from({ length: BATCH - 1 }, () => m.forkState(last.state))];
    const together = await decodeRun(m, batch, Int32Array.from(batch, () => general.toks[0]), probe);
    probe.on = true;
    probe.reset();
    await prefillMs(m, prompt(T, T + 99, V));
    const pre = fullRatio(probe.times, c);
    probe.on = false;
    const prefill = median(times);
    const tpot = after.tpot;
    const floorMs = (decodeBytes(c, T) / copyBytesPerS) * 1000;
    const row = {
      context: T,
      prefill_ms: prefill,
      prefill_tok_s: (T / prefill) * 1000,
      prefill_ms_27L: prefill * pre.ratio,
      prefill_tok_s_27L: (T / (prefill * pre.ratio)) * 1000,
      tpot_ms: tpot,
      tpot_ms_27L: tpot * after.ratio,
      decode_floor_ms_27L: floorMs,
      prefill_ratio: pre.ratio,
      decode_ratio: after.ratio,
      prefill_per_layer_ms: pre.perLayer,
      decode_per_layer_ms: after.perLayer,
      prefill_runs_ms: times,
      decode_steps_ms: after.steps,
      general_paths_tpot_ms: general.tpot,
      general_paths_tpot_ms_27L: general.tpot * general.ratio,
      general_paths_decode_per_layer_ms: general.perLayer,
      batch: BATCH,
      batch_step_ms: together.tpot,
      batch_step_ms_27L: together.tpot * together.ratio,
      batch_decode_per_layer_ms: together.perLayer,
    };
    rows.push(row);
    say(`T=${T}: prefill ${prefill.toFixed(1)} ms (${(row.prefill_tok_s / 1000).toFixed(1)} k tok/s), 27 L ≈ ${row.prefill_ms_27L.toFixed(0)} ms (${(row.prefill_tok_s_27L / 1000).toFixed(1)} k tok/s); ` +
      `TPOT ${tpot.toFixed(2)} ms, 27 L ≈ ${row.tpot_ms_27L.toFixed(2)} ms, floor ${floorMs.toFixed(2)} ms`);
    say(`  per layer, prefill ms: ${JSON.stringify(pre.perLayer, (_, v: unknown) => (typeof v === 'number' ? Number(v.toFixed(2)) : v))}`);
    say(`  per layer, decode ms:  ${JSON.stringify(after.perLayer, (_, v: unknown) => (typeof v === 'number' ? Number(v.toFixed(3)) : v))}`);
    say(`  small-batch paths off (KLC_SMALL_BATCH=0): TPOT ${general.tpot.toFixed(2)} ms, 27 L ≈ ${(general.tpot * general.ratio).toFixed(2)} ms; ` +
      `per layer, decode ms: ${JSON.stringify(general.perLayer, (_, v: unknown) => (typeof v === 'number' ? Number(v.toFixed(3)) : v))}`);
    say(`  ${BATCH} sequences decoding together: ${together.tpot.toFixed(2)} ms per step, 27 L ≈ ${(together.tpot * together.ratio).toFixed(2)} ms ` +
      `(${((BATCH * 1000) / (together.tpot * together.ratio)).toFixed(0)} tok/s at 27 L); per layer, decode ms: ` +
      `${JSON.stringify(together.perLayer, (_, v: unknown) => (typeof v === 'number' ? Number(v.toFixed(3)) : v))}`);
  }
  const first = contexts[0];
  const before: Record<string, number> = {};
  if (first <= 8192) {
    say(`engine for comparison: ${b.setTensorCores(false)}`);
    const r = await prefillMs(m, prompt(first, first, V));
    before.prefill_ms = r.ms;
    const steps: number[] = [];
    let tok = argmax(r.logits);
    for (let i = 0; i < 8; i++) {
      const t = performance.now();
      tok = argmax(await m.decode(r.state, tok));
      steps.push(performance.now() - t);
    }
    before.tpot_ms = median(steps);
    say(`T=${first} with the fp32 CUDA-core kernels: prefill ${r.ms.toFixed(1)} ms, TPOT ${before.tpot_ms.toFixed(2)} ms (same model, same run)`);
  }
  writeFileSync(outPath, JSON.stringify({ device: b.device, engine, layers: c.layers, copy_tb_s: copyBytesPerS / 1e12, rows, fp32_kernels_at_first_context: before }, null, 1));
  await m.dispose();
}

main().catch((e: unknown) => {
  process.stderr.write(`${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
  process.exit(1);
});
