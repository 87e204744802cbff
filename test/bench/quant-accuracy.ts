/**
 * `npm run bench:quant`: how far each quantization scheme moves the model from its unquantized
 * self. For the golden tiny checkpoint and the ≈178M-parameter synthetic one (generated into
 * .cache/ on first use), the next-token distributions of every position of a few sequences are
 * computed unquantized and with each scheme applied at load (the same quantize/dequantize code as
 * `klc quantize`), and compared: mean and 99th-percentile KL(P_unquantized ‖ P_scheme) in nats,
 * and how often the most likely token agrees, beside the relative RMS error the scheme makes in the
 * quantized weights. Random-weight models have nearly flat next-token distributions (entropy close
 * to ln V, small top-1 margins) and amplify weight noise through MoE routing flips, so the figures
 * measure the quantization noise at these shapes, not a language model's quality. Prints a table.
 *
 *   npm run bench:quant [-- --backend onnx|reference --sequences N --length T]
 */
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { Checkpoint } from '../../src/engine/model/checkpoint';
import { loadConfig } from '../../src/engine/model/config';
import { loadModel } from '../../src/engine/model/model';
import { quantizeAtLoad } from '../../src/engine/model/quant/at-load';
import type { LoadQuantization } from '../../src/engine/model/quant/presets';
import { SCHEME_OF } from '../../src/engine/model/quant/presets';
import { comparePositions, summarizeDivergence } from '../../src/engine/logit-divergence';
import { argmax } from '../../src/engine/sampler';
import { makeSyntheticCheckpoint, SYNTHETIC_DIR } from '../../tools/make-synthetic-checkpoint';

const root = resolve(__dirname, '..', '..');

/** Token ids of sequence `s`, spread over the vocabulary, the same for every scheme. */
function sequence(s: number, length: number, vocab: number): Int32Array {
  return Int32Array.from({ length }, (_, i) => ((i + 1) * 7919 + s * 104729 + ((i * i) % 97)) % Math.min(vocab, 3000));
}

/** Log-softmax of each row of logits [T, V], in place. */
function logSoftmax(logits: Float32Array, V: number): Float32Array {
  for (let r = 0; r < logits.length / V; r++) {
    const row = logits.subarray(r * V, (r + 1) * V);
    let max = -Infinity;
    for (const x of row) max = Math.max(max, x);
    let sum = 0;
    for (const x of row) sum += Math.exp(x - max);
    const lse = max + Math.log(sum);
    for (let i = 0; i < V; i++) row[i] -= lse;
  }
  return logits;
}

async function logProbs(dir: string, backend: 'onnx' | 'reference', quantization: LoadQuantization, sequences: number, length: number): Promise<Float32Array[]> {
  const model = await loadModel(dir, { backend, quantization, log: () => {} });
  try {
    const V = model.config.vocabSize;
    const out: Float32Array[] = [];
    for (let s = 0; s < sequences; s++) out.push(logSoftmax(await model.prefill(model.newState(), sequence(s, length, V), { logits: 'all' }), V));
    return out;
  } finally {
    await model.dispose();
  }
}

/** ‖W − dequant(quant(W))‖ / ‖W‖ over the weights the scheme quantizes. */
async function weightError(dir: string, quantization: LoadQuantization): Promise<number> {
  const cfg = await loadConfig(dir);
  const plain = await Checkpoint.open(dir, cfg);
  const quantized = await quantizeAtLoad(await Checkpoint.open(dir, cfg), cfg, quantization);
  let num = 0;
  let den = 0;
  try {
    for (const name of plain.names) {
      const [a, b] = [await plain.tensor(name), await quantized.tensor(name)];
      // Tensors the scheme leaves alone read back identical; a quantized matrix never does.
      if (a.every((x, i) => x === b[i])) continue;
      for (let i = 0; i < a.length; i++) {
        num += (a[i] - b[i]) ** 2;
        den += a[i] ** 2;
      }
    }
  } finally {
    await Promise.all([plain.close(), quantized.close()]);
  }
  return Math.sqrt(num / den);
}

interface Row {
  model: string;
  scheme: string;
  positions: number;
  weightError: number;
  /** Mean entropy of the unquantized distributions (nats): near ln V, they are nearly flat. */
  entropy: number;
  /** Median gap between the unquantized top-1 and top-2 log-probabilities. */
  medianGap: number;
  meanKl: number;
  p99Kl: number;
  top1: number;
}

function compare(model: string, scheme: string, weightErr: number, ref: Float32Array[], got: Float32Array[], V: number): Row {
  const parts = ref.map((p, s) => comparePositions(p, got[s], V));
  const summary = summarizeDivergence(parts);
  const kls = Float64Array.from(parts.flatMap((d) => Array.from(d.kl))).sort();
  // The unquantized distributions' entropy and top-1 margin say how flat they are (see above).
  const gaps: number[] = [];
  let entropy = 0;
  for (const p of ref) {
    for (let t = 0; t < p.length / V; t++) {
      const pr = p.subarray(t * V, (t + 1) * V);
      const top = argmax(pr);
      let second = -Infinity;
      for (let i = 0; i < V; i++) {
        entropy -= Math.exp(pr[i]) * pr[i];
        if (i !== top) second = Math.max(second, pr[i]);
      }
      gaps.push(pr[top] - second);
    }
  }
  gaps.sort((a, b) => a - b);
  return {
    model,
    scheme,
    positions: summary.positions,
    weightError: weightErr,
    entropy: entropy / summary.positions,
    medianGap: gaps[Math.floor(gaps.length / 2)],
    meanKl: summary.meanKl,
    p99Kl: kls[Math.min(kls.length - 1, Math.floor(0.99 * kls.length))],
    top1: summary.top1Agreement,
  };
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { backend: { type: 'string', default: 'onnx' }, sequences: { type: 'string', default: '4' }, length: { type: 'string', default: '512' } } });
  const backend = values.backend as 'onnx' | 'reference';
  const sequences = Number(values.sequences);
  const length = Number(values.length);
  await makeSyntheticCheckpoint();
  const models: [string, string, number][] = [
    ['golden tiny (fp32, 2.7M)', join(root, 'test', 'fixtures', 'golden', 'tiny-kimi-public'), 1024],
    ['synthetic (bf16, 178M)', SYNTHETIC_DIR, 16384],
  ];
  const rows: Row[] = [];
  for (const [name, dir, V] of models) {
    const t0 = performance.now();
    const ref = await logProbs(dir, backend, 'none', sequences, length);
    for (const q of ['int8', 'fp8', 'int4'] as const) {
      rows.push(compare(name, `${q} (${SCHEME_OF[q]})`, await weightError(dir, q), ref, await logProbs(dir, backend, q, sequences, length), V));
    }
    process.stderr.write(`${name}: ${((performance.now() - t0) / 1000).toFixed(0)} s\n`);
  }
  const header = ['model', 'scheme', 'weight error', 'positions', 'mean KL (nats)', 'p99 KL', 'top-1 agreement', 'unquantized entropy', 'median top-1/2 gap'];
  const body = rows.map((r) => [
    r.model,
    r.scheme,
    `${(100 * r.weightError).toFixed(2)}%`,
    String(r.positions),
    r.meanKl.toExponential(2),
    r.p99Kl.toExponential(2),
    `${(100 * r.top1).toFixed(2)}%`,
    r.entropy.toFixed(2),
    r.medianGap.toExponential(2),
  ]);
  const line = (cells: string[]) => `| ${cells.join(' | ')} |`;
  console.log(`backend ${backend}, ${sequences} sequences × ${length} tokens, each scheme applied at load against the unquantized checkpoint\n`);
  console.log([line(header), line(header.map(() => '---')), ...body.map(line)].join('\n'));
}

main().catch((e) => {
  console.error(e);
  process.exitCode = 1;
});
