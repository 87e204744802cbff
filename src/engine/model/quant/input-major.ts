/**
 * Quantized Linear modules stored input-major, as AutoGPTQ, GPTQModel and AutoAWQ write them:
 * `m.qweight` (codes in int32 words, the weight transposed to [in, out]), `m.qzeros` (zero points
 * in int32 words packed along the output dimension), `m.scales` ([groups, out], fp16 as a rule)
 * and, for GPTQ, `m.g_idx` (each input column's group). A module is quantized exactly when its
 * `m.qweight` is stored: writers leave routers, norms and embeddings in full precision and skip
 * modules by rules (`dynamic`, `modules_to_not_convert`) that the stored tensors already reflect.
 * Each module becomes the engine's own QuantizedMatrix ([out, in], signed codes), so every backend
 * runs these checkpoints as it runs compressed-tensors ones.
 */
import { UserError } from '../../../common/errors';
import { numel, type ReadBuffer, type SafetensorsFile } from '../safetensors';
import { describeScheme, ModuleTensors, sameShape, split, type QuantizedSource, type QuantLayout } from './compressed';
import { dequantize, type QuantizedMatrix } from './matrix';
import type { QuantScheme } from './scheme';

const PARAMS = ['qweight', 'qzeros', 'scales', 'g_idx'] as const;
type Param = (typeof PARAMS)[number];
type Parts = Partial<Record<Param, SafetensorsFile>>;

/** How one storage format (GPTQ v1/v2, AWQ GEMM) lays out and decodes its tensors. */
export interface InputMajorFormat {
  /** The config file, for messages. */
  file: string;
  /** The weight scheme of module `m` per the config, or a sentence why the config says it is not quantized. */
  schemeOf(m: string): QuantScheme | string;
  /** Shape of `m.qweight` for a weight of `inputs` × `outputs`. */
  qweightShape(inputs: number, outputs: number, bits: number): [number, number];
  /** Unsigned codes [inputs, outputs], input-major, from the qweight words. */
  codes(words: Int32Array, inputs: number, outputs: number, bits: number): Uint8Array;
  /** The true zero points [groups, outputs] from the qzeros words (what a reader subtracts). */
  zeros(words: Int32Array, groups: number, outputs: number, bits: number): Uint8Array;
  /** Whether `m.g_idx` belongs to the format. */
  groupIndex: boolean;
  /**
   * The qweight words as rows of the [out, in] weight packed along each row (RowPackedMatrix), for
   * 4- and 8-bit codes: a word transpose for GPTQ, a nibble shuffle for AWQ.
   */
  rowWords?(words: Int32Array, inputs: number, outputs: number, bits: number): Int32Array;
}

/** Words per column of `count` values of `bits` bits packed as one little-endian bit stream. */
export const packedLength = (count: number, bits: number): number => Math.ceil((count * bits) / 32);

/**
 * Value `i` of a bit stream of `bits`-bit fields spread over int32 words, `word(j)` giving the j-th
 * word: field i occupies bits [i·bits, (i+1)·bits) of the stream, lowest first. For 2, 4 and 8 bits
 * that is field i % (32/bits) of word i / (32/bits); 3-bit fields cross word boundaries.
 */
export function streamField(word: (j: number) => number, i: number, bits: number): number {
  const at = i * bits;
  const j = at >>> 5;
  const shift = at & 31;
  let v = word(j) >>> shift;
  if (shift + bits > 32) v |= word(j + 1) << (32 - shift);
  return v & ((1 << bits) - 1);
}

/** Unsigned fields [rows, cols] packed down the rows: word (r·bits / 32, c) of a [ceil(rows·bits/32), cols] tensor. */
export function unpackRows(words: Int32Array, rows: number, cols: number, bits: number): Uint8Array {
  const out = new Uint8Array(rows * cols);
  for (let c = 0; c < cols; c++) {
    const word = (j: number) => words[j * cols + c];
    for (let r = 0; r < rows; r++) out[r * cols + c] = streamField(word, r, bits);
  }
  return out;
}

export class InputMajorLayout implements QuantLayout {
  private readonly tensors = new ModuleTensors<Param>();

  /** `linear`: module → weight [rows, cols] (= [out, in]) of every Linear module of the model. */
  constructor(
    private readonly format: InputMajorFormat,
    private readonly linear: Map<string, [number, number]>,
  ) {}

  claims(name: string): boolean {
    const [module, param] = split(name);
    return module !== null && this.linear.has(module) && (PARAMS as readonly string[]).includes(param) && (param !== 'g_idx' || this.format.groupIndex);
  }

  add(name: string, file: SafetensorsFile, stored: string): void {
    this.tensors.add(name, file, stored);
  }

  async sources(): Promise<Map<string, QuantizedSource>> {
    const out = new Map<string, QuantizedSource>();
    for (const [module, parts] of this.tensors.modules) {
      const [rows, cols] = this.linear.get(module) as [number, number];
      out.set(`${module}.weight`, this.source(module, parts, rows, cols));
    }
    return out;
  }

  private source(m: string, parts: Parts, outputs: number, inputs: number): QuantizedSource {
    const where = (p: Param) => parts[p]?.path ?? this.format.file;
    const scheme = this.format.schemeOf(m);
    if (typeof scheme === 'string') throw new UserError(`${where('qweight')}: "${m}.qweight" is stored, but ${scheme}.`, where('qweight'));
    const fail = (p: Param, what: string): never => {
      throw new UserError(`${where(p)}: "${m}.${p}" ${what} (${describeScheme(scheme)}, per ${this.format.file}).`, where(p));
    };
    const w = scheme.weights;
    const bits = w.numBits;
    const group = w.strategy === 'channel' ? inputs : (w.groupSize as number);
    const groups = Math.ceil(inputs / group);
    // Symmetric schemes have every zero point 2^(bits − 1); their qzeros, when stored, are not read.
    const required: Param[] = w.symmetric ? ['qweight', 'scales'] : ['qweight', 'qzeros', 'scales'];
    for (const p of required) if (!parts[p]) fail(p, `is missing: the module is quantized (${m}.qweight is stored), which needs ${required.map((r) => `${m}.${r}`).join(', ')}`);
    const info = (p: Param) => (parts[p] as SafetensorsFile).info(this.stored(m, p));
    const expectInts = (p: Param, shape: [number, number]) => {
      const t = info(p);
      if (t.dtype !== 'I32' || !sameShape(t.shape, shape)) fail(p, `is ${t.dtype} ${JSON.stringify(t.shape)}, expected I32 ${JSON.stringify(shape)} for a [${outputs}, ${inputs}] weight`);
    };
    expectInts('qweight', this.format.qweightShape(inputs, outputs, bits));
    if (parts.qzeros) expectInts('qzeros', [groups, packedLength(outputs, bits)]);
    const scale = info('scales');
    if (!['F16', 'BF16', 'F32'].includes(scale.dtype) || !sameShape(scale.shape, [groups, outputs])) fail('scales', `is ${scale.dtype} ${JSON.stringify(scale.shape)}, expected F16 [${groups}, ${outputs}]`);
    if (parts.g_idx) {
      const g = info('g_idx');
      if (!['I32', 'I64'].includes(g.dtype) || numel(g.shape) !== inputs) fail('g_idx', `is ${g.dtype} ${JSON.stringify(g.shape)}, expected I32 [${inputs}]`);
    }

    const file = (p: Param) => parts[p] as SafetensorsFile;
    const ints = (p: Param) => file(p).readInts(this.stored(m, p));
    /** Scales [out, groups], signed zero points [out, groups] and g_idx: everything but the codes (`into` holds the stored scales while they are transposed). */
    const rest = async (into?: ReadBuffer): Promise<Omit<QuantizedMatrix, 'codes'>> => {
      const offset = 1 << (bits - 1);
      const stored = await file('scales').readF32(this.stored(m, 'scales'), into);
      const zeros = w.symmetric ? null : this.format.zeros(await ints('qzeros'), groups, outputs, bits);
      const scale = new Float32Array(outputs * groups);
      const zeroPoint = zeros ? new Int8Array(outputs * groups) : null;
      for (let g = 0; g < groups; g++) {
        for (let n = 0; n < outputs; n++) {
          scale[n * groups + g] = stored[g * outputs + n];
          if (zeroPoint && zeros) zeroPoint[n * groups + g] = zeros[g * outputs + n] - offset;
        }
      }
      let gIdx: Int32Array | null = null;
      if (parts.g_idx) {
        const g = await ints('g_idx');
        for (const x of g) if (x < 0 || x >= groups) fail('g_idx', `holds group ${x}, outside 0..${groups - 1}`);
        // GPTQ stores g_idx for every module; only activation order (desc_act) makes it differ from k / group.
        if (g.some((x, k) => x !== Math.floor(k / group))) gIdx = g;
      }
      return { rows: outputs, cols: inputs, args: w, scale, zeroPoint, gIdx };
    };
    const read = async (): Promise<QuantizedMatrix> => {
      const codes = this.format.codes(await ints('qweight'), inputs, outputs, bits);
      const offset = 1 << (bits - 1);
      const signed = new Int8Array(outputs * inputs);
      for (let k = 0; k < inputs; k++) for (let n = 0; n < outputs; n++) signed[n * inputs + k] = codes[k * outputs + n] - offset;
      return { ...(await rest()), codes: signed };
    };
    const rowWords = this.format.rowWords;
    const rowPacked = rowWords !== undefined && (bits === 4 || bits === 8) && (inputs * bits) % 32 === 0;
    return {
      dtype: scale.dtype,
      shape: [outputs, inputs],
      file: where('qweight'),
      scheme,
      readQuantized: read,
      ...(rowPacked ? { readRowPacked: async (into?: ReadBuffer) => ({ ...(await rest(into)), words: rowWords.call(this.format, await file('qweight').readInts(this.stored(m, 'qweight'), into), inputs, outputs, bits) }) } : {}),
      read: async () => dequantize(await read()),
    };
  }

  private stored(module: string, param: Param): string {
    return this.tensors.stored(module, param);
  }
}


