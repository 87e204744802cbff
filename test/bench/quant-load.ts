/**
 * `npm run bench:quant-load`: what the CUDA backend's upload spends on the CPU per quantized
 * matrix of a stored checkpoint, at the 48B model's expert shapes (w1/w3 [1024, 2304], w2
 * [2304, 1024]), for a compressed-tensors INT4 g32, a GPTQ INT4 g128 and an AWQ INT4 g128 export:
 * the codes path (unpack every code, pack again for the device) against the words path (the stored
 * words as the device reads them: a copy for compressed-tensors, a word transpose for GPTQ, a nibble
 * shuffle for AWQ). Reads from a file in the page cache, so disk speed is not part of it. Prints one
 * JSON line per format with milliseconds per matrix and the total for the 48B model's 19,968 routed
 * expert matrices (26 MoE layers × 256 experts × 3).
 *
 *   npm run bench:quant-load [-- --matrices N]
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { AwqFormat } from '../../src/engine/model/quant/awq';
import { CompressedLayout, type QuantLayout, type QuantizedSource } from '../../src/engine/model/quant/compressed';
import { GptqFormat } from '../../src/engine/model/quant/gptq';
import { InputMajorLayout } from '../../src/engine/model/quant/input-major';
import { pack } from '../../src/engine/model/quant/pack';
import { parseQuantizationConfig } from '../../src/engine/model/quant/scheme';
import { SafetensorsFile, writeSafetensors, type TensorToWrite } from '../../src/engine/model/safetensors';

const { values } = parseArgs({ options: { matrices: { type: 'string', default: '12' } } });
const count = Number(values.matrices);
const EXPERT_MATRICES_48B = 26 * 256 * 3;
const SHAPES: [number, number][] = [
  [1024, 2304],
  [2304, 1024],
];

/** Deterministic pseudo-random int32 words: every 4-bit field is a valid code. */
const words = (n: number, seed: number) => Int32Array.from({ length: n }, (_, i) => Math.imul(i + seed, 2654435761) ^ (i >>> 3));
/** fp16 bits of scales around 0.01 (exponent −7). */
const halfScales = (n: number) => new Uint8Array(Uint16Array.from({ length: n }, (_, i) => 0x2000 | (i * 37) % 1024).buffer);

interface Format {
  name: string;
  layout: (linear: Map<string, [number, number]>) => QuantLayout;
  tensors: (m: string, rows: number, cols: number, seed: number) => TensorToWrite[];
}

const FORMATS: Format[] = [
  {
    name: 'compressed-tensors INT4 g32 sym',
    layout: (linear) => {
      const qc = parseQuantizationConfig({ quantization_config: { quant_method: 'compressed-tensors', format: 'pack-quantized', config_groups: { g: { targets: ['Linear'], weights: { num_bits: 4, type: 'int', symmetric: true, strategy: 'group', group_size: 32 } } } } }, 'bench');
      return new CompressedLayout(qc as NonNullable<typeof qc>, linear);
    },
    tensors: (m, rows, cols, seed) => [
      { name: `${m}.weight_packed`, dtype: 'I32', shape: [rows, cols / 8], data: words((rows * cols) / 8, seed) },
      { name: `${m}.weight_scale`, dtype: 'F16', shape: [rows, cols / 32], data: halfScales((rows * cols) / 32) },
      { name: `${m}.weight_shape`, dtype: 'I32', shape: [2], data: Int32Array.of(rows, cols) },
    ],
  },
  {
    name: 'GPTQ v1 INT4 g128 sym',
    layout: (linear) => new InputMajorLayout(GptqFormat.parse({ quant_method: 'gptq', bits: 4, group_size: 128, sym: true, desc_act: false }, 'bench'), linear),
    tensors: (m, rows, cols, seed) => [
      { name: `${m}.qweight`, dtype: 'I32', shape: [cols / 8, rows], data: words((rows * cols) / 8, seed) },
      { name: `${m}.qzeros`, dtype: 'I32', shape: [cols / 128, rows / 8], data: new Int32Array((cols / 128) * (rows / 8)).fill(0x77777777) },
      { name: `${m}.scales`, dtype: 'F16', shape: [cols / 128, rows], data: halfScales((rows * cols) / 128) },
      { name: `${m}.g_idx`, dtype: 'I32', shape: [cols], data: Int32Array.from({ length: cols }, (_, k) => Math.floor(k / 128)) },
    ],
  },
  {
    name: 'AWQ INT4 g128',
    layout: (linear) => new InputMajorLayout(AwqFormat.parse({ quant_method: 'awq', bits: 4, group_size: 128, zero_point: true, version: 'gemm' }, 'bench'), linear),
    tensors: (m, rows, cols, seed) => [
      { name: `${m}.qweight`, dtype: 'I32', shape: [cols, rows / 8], data: words((rows * cols) / 8, seed) },
      { name: `${m}.qzeros`, dtype: 'I32', shape: [cols / 128, rows / 8], data: words((cols / 128) * (rows / 8), seed + 1) },
      { name: `${m}.scales`, dtype: 'F16', shape: [cols / 128, rows], data: halfScales((rows * cols) / 128) },
    ],
  },
];

async function sourcesOf(f: Format, dir: string): Promise<{ sources: QuantizedSource[]; close: () => Promise<void> }> {
  const linear = new Map<string, [number, number]>();
  const tensors: TensorToWrite[] = [];
  for (let i = 0; i < count; i++) {
    const [rows, cols] = SHAPES[i % SHAPES.length];
    linear.set(`m${i}`, [rows, cols]);
    tensors.push(...f.tensors(`m${i}`, rows, cols, i * 7919));
  }
  const path = join(dir, 'model.safetensors');
  await writeSafetensors(path, tensors);
  const file = await SafetensorsFile.open(path);
  const layout = f.layout(linear);
  for (const name of file.names) layout.add(name, file, name);
  return { sources: [...(await layout.sources()).values()], close: () => file.close() };
}

async function msPerMatrix(sources: QuantizedSource[], body: (s: QuantizedSource) => Promise<unknown>): Promise<number> {
  for (const s of sources.slice(0, 2)) await body(s);
  const t = process.hrtime.bigint();
  for (const s of sources) await body(s);
  return Number(process.hrtime.bigint() - t) / 1e6 / sources.length;
}

async function main(): Promise<void> {
  for (const f of FORMATS) {
    const dir = mkdtempSync(join(tmpdir(), 'klc-quant-load-'));
    try {
      const { sources, close } = await sourcesOf(f, dir);
      try {
        const codes = await msPerMatrix(sources, async (s) => {
          const m = await s.readQuantized();
          return pack(m.codes as Int8Array, m.rows, m.cols, 4, 1);
        });
        const rowPacked = await msPerMatrix(sources, (s) => (s.readRowPacked as NonNullable<typeof s.readRowPacked>)());
        const total = (ms: number) => Number(((ms * EXPERT_MATRICES_48B) / 1000).toFixed(1));
        process.stdout.write(
          `${JSON.stringify({ format: f.name, matrices: sources.length, codesPathMs: Number(codes.toFixed(2)), wordsPathMs: Number(rowPacked.toFixed(2)), experts48bCodesPathS: total(codes), experts48bWordsPathS: total(rowPacked) })}\n`,
        );
      } finally {
        await close();
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }
}

void main();
