/**
 * An independent GPTQ / AWQ writer for tests, written from the formats' descriptions (AutoGPTQ's
 * and GPTQModel's pack, AutoAWQ's WQLinear_GEMM.from_linear), not from src/: each quantized Linear
 * module of the golden checkpoint becomes qweight / qzeros / scales (/ g_idx), and the fp32 weight
 * they stand for is computed here in float64. Fields are packed as one BigInt bit stream per column
 * (GPTQ) or by spelling each word's hex digits in AWQ's nibble order; v1 zero points are stored the
 * way GPTQModel writes them, by subtracting 0x11111111 (4 bit) from each whole word; scales are
 * stored as fp16 bits encoded here.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { TensorToWrite } from '../../../../src/engine/model/safetensors';
import { GOLDEN, writeGoldenPair, type Written } from './ct-writer';

export interface GptqSpec {
  kind: 'gptq';
  bits: 2 | 3 | 4 | 8;
  /** Input columns per scale; -1 for one per output row. */
  group: number;
  symmetric: boolean;
  /** Zero points stored as z ("gptq_v2") rather than z − 1 ("gptq"). */
  v2: boolean;
  /** Activation order: groups formed over a scrambled column order, g_idx not k / group. */
  actorder?: boolean;
  /** Leave out g_idx (older AutoGPTQ exports without act-order). */
  noGIdx?: boolean;
}

export interface AwqSpec {
  kind: 'awq';
  group: number;
  /** zero_point: true (asymmetric); false stores every zero point as 8. */
  zeroPoint: boolean;
}

export type InputMajorSpec = GptqSpec | AwqSpec;

/** The fp16 bits of the fp16 value nearest x (normal range only, as scales are) and that value. */
export function f16(x: number): { bits: number; value: number } {
  if (x === 0) return { bits: 0, value: 0 };
  const sign = x < 0 ? 0x8000 : 0;
  let e = Math.floor(Math.log2(Math.abs(x)));
  let m = Math.round((Math.abs(x) / 2 ** e) * 1024);
  if (m === 2048) {
    m = 1024;
    e += 1;
  }
  if (e < -14 || e > 15) throw new Error(`f16: ${x} is outside the normal range`);
  return { bits: sign | ((e + 15) << 10) | (m - 1024), value: Math.sign(x) * (m / 1024) * 2 ** e };
}

function f16Bytes(bits: number[]): Uint8Array {
  return new Uint8Array(Uint16Array.from(bits).buffer);
}

/** Words of a stream of `bits`-bit unsigned fields, field i at bit i·bits, as int32. */
function streamWords(fields: number[], bits: number): number[] {
  let stream = 0n;
  fields.forEach((v, i) => {
    stream |= BigInt(v) << BigInt(i * bits);
  });
  return Array.from({ length: Math.ceil((fields.length * bits) / 32) }, (_, j) => Number(BigInt.asIntN(32, stream >> BigInt(32 * j))));
}

/** AWQ word of eight 4-bit fields for columns 8c … 8c + 7: the nibble at bits 4j holds column 8c + [0,2,4,6,1,3,5,7][j]. */
export function awqWord(columns: number[]): number {
  const order = [0, 2, 4, 6, 1, 3, 5, 7];
  const hex = order.map((col) => (columns[col] ?? 0).toString(16)).reverse().join('');
  return Number.parseInt(hex, 16) | 0;
}

interface Grid {
  /** Group of each input column. */
  groupOf: number[];
  groups: number;
  /** [groups][outputs] scales (fp16 values and bits) and unsigned zero points. */
  scale: number[][];
  scaleBits: number[][];
  zero: number[][];
}

/** Min-max grids per output row and group, in fp16 scales; some asymmetric groups get zero point 0 on purpose. */
function grid(w: Float32Array, outputs: number, inputs: number, bits: number, group: number, symmetric: boolean, actorder: boolean): Grid {
  const per = group === -1 ? inputs : group;
  const groups = Math.ceil(inputs / per);
  // Act-order: column k is the position (7k + 3) mod inputs of a scrambled order; groups are runs of that order.
  const groupOf = Array.from({ length: inputs }, (_, k) => Math.floor((actorder ? (7 * k + 3) % inputs : k) / per));
  const maxq = 2 ** bits - 1;
  const scale = Array.from({ length: groups }, () => new Array<number>(outputs));
  const scaleBits = Array.from({ length: groups }, () => new Array<number>(outputs));
  const zero = Array.from({ length: groups }, () => new Array<number>(outputs));
  for (let n = 0; n < outputs; n++) {
    for (let g = 0; g < groups; g++) {
      const vals = groupOf.flatMap((gg, k) => (gg === g ? [w[n * inputs + k]] : []));
      let s: { bits: number; value: number };
      let z: number;
      if (symmetric) {
        s = f16((2 * Math.max(...vals.map(Math.abs))) / maxq || 1e-3);
        z = 2 ** (bits - 1);
      } else {
        // Every seventh group keeps its range from 0 up, so its zero point is 0 (the v1 borrow case).
        const lo = (n + g) % 7 === 0 ? 0 : Math.min(0, ...vals);
        const hi = Math.max(0, ...vals);
        s = f16((hi - lo) / maxq || 1e-3);
        z = Math.max(0, Math.min(maxq, Math.round(-lo / s.value)));
      }
      scale[g][n] = s.value;
      scaleBits[g][n] = s.bits;
      zero[g][n] = z;
    }
  }
  return { groupOf, groups, scale, scaleBits, zero };
}

/** The tensors of one module ([outputs, inputs] weight `w`) and the weight they stand for. */
export function inputMajorModule(module: string, w: Float32Array, outputs: number, inputs: number, spec: InputMajorSpec): { tensors: TensorToWrite[]; dequantized: Float32Array } {
  const bits = spec.kind === 'awq' ? 4 : spec.bits;
  const symmetric = spec.kind === 'awq' ? !spec.zeroPoint : spec.symmetric;
  const gr = grid(w, outputs, inputs, bits, spec.group, symmetric, spec.kind === 'gptq' && spec.actorder === true);
  const maxq = 2 ** bits - 1;
  // codes[k][n], unsigned
  const codes = Array.from({ length: inputs }, () => new Array<number>(outputs));
  const dequantized = new Float32Array(outputs * inputs);
  for (let n = 0; n < outputs; n++) {
    for (let k = 0; k < inputs; k++) {
      const g = gr.groupOf[k];
      const q = Math.max(0, Math.min(maxq, Math.round(w[n * inputs + k] / gr.scale[g][n]) + gr.zero[g][n]));
      codes[k][n] = q;
      dequantized[n * inputs + k] = gr.scale[g][n] * (q - gr.zero[g][n]);
    }
  }
  const scales: TensorToWrite = { name: `${module}.scales`, dtype: 'F16', shape: [gr.groups, outputs], data: f16Bytes(gr.scaleBits.flat()) };
  if (spec.kind === 'awq') {
    const words = Math.ceil(outputs / 8);
    const qweight = Int32Array.from({ length: inputs * words }, (_, i) => awqWord(codes[Math.floor(i / words)].slice((i % words) * 8, (i % words) * 8 + 8)));
    const qzeros = Int32Array.from({ length: gr.groups * words }, (_, i) => awqWord(gr.zero[Math.floor(i / words)].slice((i % words) * 8, (i % words) * 8 + 8)));
    return {
      tensors: [
        { name: `${module}.qweight`, dtype: 'I32', shape: [inputs, words], data: qweight },
        { name: `${module}.qzeros`, dtype: 'I32', shape: [gr.groups, words], data: qzeros },
        scales,
      ],
      dequantized,
    };
  }
  // qweight: column n's codes down the input dimension as one bit stream, word j in row j.
  const columns = Array.from({ length: outputs }, (_, n) => streamWords(codes.map((row) => row[n]), bits));
  const rowsOfWords = columns[0].length;
  const qweight = Int32Array.from({ length: rowsOfWords * outputs }, (_, i) => columns[i % outputs][Math.floor(i / outputs)]);
  // qzeros: group g's zero points along the output dimension; v1 stores z − 1, word by word.
  const zeroRows = gr.zero.map((row) => {
    const words = streamWords(row, bits);
    if (spec.v2) return words;
    if (bits === 3) return streamWords(row.map((z) => (z - 1) & 7), 3);
    const one = { 2: 0x55555555, 4: 0x11111111, 8: 0x01010101 }[bits];
    return words.map((word) => (word - one) | 0);
  });
  const tensors: TensorToWrite[] = [
    { name: `${module}.qweight`, dtype: 'I32', shape: [rowsOfWords, outputs], data: qweight },
    { name: `${module}.qzeros`, dtype: 'I32', shape: [gr.groups, zeroRows[0].length], data: Int32Array.from(zeroRows.flat()) },
    scales,
  ];
  if (!spec.noGIdx) tensors.push({ name: `${module}.g_idx`, dtype: 'I32', shape: [inputs], data: Int32Array.from(gr.groupOf) });
  return { tensors, dequantized };
}

/**
 * Writes the golden checkpoint (or the one in `source`) quantized: `specFor(module)` picks each
 * Linear module's scheme (null keeps it unquantized). `quantization` goes into config.json's
 * quantization_config, or into the file `sidecar` (quantize_config.json) with config.json left
 * without one.
 */
export function writeInputMajorGolden(specFor: (module: string) => InputMajorSpec | null, quantization: Record<string, unknown>, sidecar?: string, source = GOLDEN): Promise<Written> {
  return writeGoldenPair(
    (m, w, rows, cols) => {
      const spec = specFor(m);
      return spec ? inputMajorModule(m, w, rows, cols, spec) : null;
    },
    (dir, config) => {
      if (sidecar) writeFileSync(join(dir, sidecar), JSON.stringify(quantization, null, 2));
      writeFileSync(join(dir, 'config.json'), JSON.stringify(sidecar ? config : { ...config, quantization_config: quantization }, null, 2));
    },
    source,
  );
}

/** config.json's quantization_config as GPTQModel writes it. */
export function gptqConfig(bits: number, group: number, sym: boolean, descAct: boolean, format: 'gptq' | 'gptq_v2', extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    bits,
    checkpoint_format: format,
    desc_act: descAct,
    format,
    group_size: group,
    lm_head: false,
    meta: { damp_percent: 0.05, quantizer: ['gptqmodel:4.2.5'], static_groups: false, true_sequential: true },
    method: 'gptq',
    pack_dtype: 'int32',
    quant_method: 'gptq',
    sym,
    ...extra,
  };
}

/** config.json's quantization_config as AutoAWQ writes it. */
export function awqConfig(group: number, zeroPoint: boolean, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { bits: 4, group_size: group, modules_to_not_convert: null, quant_method: 'awq', version: 'gemm', zero_point: zeroPoint, ...extra };
}
