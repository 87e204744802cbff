/**
 * GPTQ checkpoints as AutoGPTQ and GPTQModel write them (`quant_method: "gptq"`): 2-, 3-, 4- or
 * 8-bit integer codes packed down the input dimension (`qweight` [in·bits/32, out]), zero points
 * packed along the output dimension (`qzeros` [groups, out·bits/32]), fp16 `scales` [groups, out]
 * and `g_idx` [in]. A weight is scales[g][n] · (q[k][n] − z[g][n]) with g = g_idx[k].
 *
 * Zero points: the "gptq" (v1) format stores z − 1, "gptq_v2" stores z. GPTQModel, today's writer,
 * writes v1 by subtracting 0x11…1 from whole int32 words (a borrow crosses fields where z = 0),
 * and reads it back by adding the same word; that is the inverse used here for 2, 4 and 8 bits, and
 * a per-field +1 for 3 bits, as GPTQModel does. Symmetric checkpoints have z = 2^(bits−1) for every
 * group, which is what vLLM's Marlin path assumes without reading qzeros, and so does this reader.
 *
 * `dynamic` overrides bits, group size and symmetry per module (first matching "+:" pattern, or a
 * bare one) or leaves modules unquantized ("-:"); patterns match at the start of the module name.
 */
import { UserError } from '../../../common/errors';
import { packedLength, streamField, unpackRows, type InputMajorFormat } from './input-major';
import { isObject, type Json, type QuantScheme } from './scheme';

interface GptqArgs {
  bits: number;
  /** Input columns per scale; -1 for one scale per output row. */
  groupSize: number;
  symmetric: boolean;
  /** desc_act without static groups: g_idx deals the columns to groups in activation order. */
  activationOrder: boolean;
}

interface DynamicRule {
  key: string;
  pattern: RegExp;
  /** Null for "-:" rules: the module is not quantized. */
  override: GptqArgs | null;
}

/** Adding this to a whole v1 qzeros word turns each stored z − 1 back into z. */
const V1_WORD_OFFSET: Record<number, number> = { 2: 0x55555555, 4: 0x11111111, 8: 0x01010101 };

export class GptqFormat implements InputMajorFormat {
  readonly groupIndex = true;
  private readonly schemes = new Map<string, QuantScheme>();

  private constructor(
    readonly file: string,
    private readonly base: GptqArgs,
    private readonly v2: boolean,
    private readonly rules: DynamicRule[],
  ) {}

  /** Parses config.json's `quantization_config` (or quantize_config.json) of a GPTQ checkpoint. */
  static parse(q: Json, file: string): GptqFormat {
    const fail = (where: string, what: string): never => {
      throw new UserError(`${file}: quantization_config${where} ${what}`, file);
    };
    if (q.is_marlin_format === true) fail('.is_marlin_format', 'is true: the weights are in Marlin\'s repacked layout, which only vLLM\'s Marlin kernels read. Use the checkpoint in GPTQ layout.');
    const format = q.format ?? q.checkpoint_format ?? 'gptq';
    if (format !== 'gptq' && format !== 'gptq_v2') {
      fail(q.format !== undefined ? '.format' : '.checkpoint_format', `is ${JSON.stringify(format)}; GPTQ checkpoints are read in the "gptq" and "gptq_v2" layouts (Marlin, BitBLAS and GPTQModel's planar "gptq_p" layouts are not).`);
    }
    const packDtype = q.pack_dtype ?? 'int32';
    if (packDtype !== 'int32' && packDtype !== 'torch.int32') fail('.pack_dtype', `is ${JSON.stringify(packDtype)}; only int32 words are read (as vLLM does).`);
    const base = gptqArgs(q, '', fail, null);
    const rules: DynamicRule[] = [];
    if (q.dynamic !== undefined && q.dynamic !== null) {
      if (!isObject(q.dynamic)) fail('.dynamic', 'must be an object of module patterns.');
      for (const [key, value] of Object.entries(q.dynamic)) {
        const where = `.dynamic[${JSON.stringify(key)}]`;
        if (!isObject(value)) fail(where, 'must be an object of overrides.');
        const negative = key.startsWith('-:');
        const raw = negative || key.startsWith('+:') ? key.slice(2) : key;
        let pattern: RegExp;
        try {
          pattern = new RegExp(`^(?:${raw})`);
        } catch (e) {
          return fail(where, `is not a pattern this engine can read (${(e as Error).message}); write it without Python-only syntax.`);
        }
        rules.push({ key, pattern, override: negative ? null : gptqArgs(value, where, fail, base) });
      }
    }
    return new GptqFormat(file, base, format === 'gptq_v2', rules);
  }

  /** Every scheme the config names, for labels. */
  get allSchemes(): QuantScheme[] {
    return [this.base, ...this.rules.flatMap((r) => (r.override ? [r.override] : []))].map((a) => this.scheme(a, 'gptq'));
  }

  schemeOf(m: string): QuantScheme | string {
    const rule = this.rules.find((r) => r.pattern.test(m));
    if (rule && !rule.override) return `quantization_config.dynamic["${rule.key}"] leaves it unquantized`;
    const args = rule?.override ?? this.base;
    const name = rule ? `gptq, dynamic["${rule.key}"]` : 'gptq';
    const key = `${name}|${args.bits}|${args.groupSize}|${args.symmetric}|${args.activationOrder}`;
    let s = this.schemes.get(key);
    if (!s) {
      s = this.scheme(args, name);
      this.schemes.set(key, s);
    }
    return s;
  }

  qweightShape(inputs: number, outputs: number, bits: number): [number, number] {
    return [packedLength(inputs, bits), outputs];
  }

  codes(words: Int32Array, inputs: number, outputs: number, bits: number): Uint8Array {
    return unpackRows(words, inputs, outputs, bits);
  }

  /** qweight [in·bits/32, out] packs each column's codes down the rows exactly as a row-packed [out, in] weight packs a row: a word transpose. */
  rowWords(words: Int32Array, inputs: number, outputs: number, bits: number): Int32Array {
    const perColumn = (inputs * bits) / 32;
    const out = new Int32Array(outputs * perColumn);
    for (let j = 0; j < perColumn; j++) for (let n = 0; n < outputs; n++) out[n * perColumn + j] = words[j * outputs + n];
    return out;
  }

  zeros(words: Int32Array, groups: number, outputs: number, bits: number): Uint8Array {
    const stride = packedLength(outputs, bits);
    const mask = (1 << bits) - 1;
    const wordOffset = this.v2 ? 0 : (V1_WORD_OFFSET[bits] ?? 0);
    const fieldOffset = this.v2 || wordOffset !== 0 ? 0 : 1;
    const out = new Uint8Array(groups * outputs);
    for (let g = 0; g < groups; g++) {
      const word = (j: number) => (words[g * stride + j] + wordOffset) | 0;
      for (let n = 0; n < outputs; n++) out[g * outputs + n] = (streamField(word, n, bits) + fieldOffset) & mask;
    }
    return out;
  }

  private scheme(a: GptqArgs, name: string): QuantScheme {
    const channel = a.groupSize === -1;
    return {
      name,
      targets: [],
      weights: { numBits: a.bits, type: 'int', symmetric: a.symmetric, strategy: channel ? 'channel' : 'group', groupSize: channel ? null : a.groupSize, blockStructure: null },
      format: this.v2 ? 'gptq_v2' : 'gptq',
      dynamicActivations: false,
      activationOrder: a.activationOrder,
    };
  }
}

function gptqArgs(o: Json, where: string, fail: (where: string, what: string) => never, base: GptqArgs | null): GptqArgs {
  const bits = o.bits ?? base?.bits;
  if (bits === undefined) fail(`${where}.bits`, 'is missing.');
  if (![2, 3, 4, 8].includes(bits as number)) {
    fail(`${where}.bits`, `is ${JSON.stringify(bits)}; GPTQ checkpoints of 2, 3, 4 and 8 bits are read (GPTQModel writes 5 to 7 bits in its planar layout, which is not).`);
  }
  const groupSize = o.group_size ?? base?.groupSize ?? 128;
  if (typeof groupSize !== 'number' || !Number.isInteger(groupSize) || (groupSize < 1 && groupSize !== -1)) fail(`${where}.group_size`, `must be a positive integer or -1, got ${JSON.stringify(groupSize)}.`);
  const sym = o.sym ?? base?.symmetric ?? true;
  if (typeof sym !== 'boolean') fail(`${where}.sym`, `must be true or false, got ${JSON.stringify(sym)}.`);
  // AutoGPTQ writes static_groups beside desc_act, GPTQModel under meta.
  const meta = isObject(o.meta) ? o.meta : {};
  const staticGroups = (o.static_groups ?? meta.static_groups) === true;
  const activationOrder = o.desc_act === undefined && base ? base.activationOrder : o.desc_act === true && !staticGroups && groupSize !== -1;
  return { bits: bits as number, groupSize: groupSize as number, symmetric: sym as boolean, activationOrder };
}
