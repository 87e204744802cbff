/**
 * AWQ checkpoints in AutoAWQ's GEMM layout (`quant_method: "awq"`, `version: "gemm"`): 4-bit codes
 * packed along the output dimension (`qweight` [in, out/8]), zero points the same way (`qzeros`
 * [groups, out/8]), fp16 `scales` [groups, out]; a weight is (q − z) · s, zero points as stored.
 * Within a word the nibble at bits 4j holds column 8c + [0, 2, 4, 6, 1, 3, 5, 7][j] (AutoAWQ's
 * AWQ_ORDER). `zero_point: false` (GPTQModel's symmetric export) has every zero point 8.
 */
import { UserError } from '../../../common/errors';
import { type InputMajorFormat } from './input-major';
import type { QuantScheme } from './scheme';

type Json = Record<string, unknown>;

/** Column 8c + AWQ_ORDER[j] of word c is its nibble j. */
const AWQ_ORDER = [0, 2, 4, 6, 1, 3, 5, 7];
/** Nibble of column 8c + m within word c: the inverse of AWQ_ORDER. */
const NIBBLE_OF_COLUMN = [0, 4, 1, 5, 2, 6, 3, 7];

export class AwqFormat implements InputMajorFormat {
  readonly groupIndex = false;

  private constructor(
    readonly file: string,
    readonly scheme: QuantScheme,
  ) {}

  /** Parses config.json's `quantization_config` (or AutoAWQ's quant_config.json, with its w_bit / q_group_size names). */
  static parse(q: Json, file: string): AwqFormat {
    const fail = (where: string, what: string): never => {
      throw new UserError(`${file}: quantization_config${where} ${what}`, file);
    };
    const version = String(q.version ?? 'gemm').toLowerCase();
    if (version !== 'gemm') fail('.version', `is ${JSON.stringify(q.version)}; AWQ checkpoints are read in AutoAWQ's GEMM layout only (GEMV, GEMV_fast and Marlin store the codes differently). Use a GEMM export.`);
    if (q.backend === 'llm-awq') fail('.backend', 'is "llm-awq", whose packing differs from AutoAWQ\'s; use an AutoAWQ (GEMM) export.');
    const bits = q.bits ?? q.w_bit ?? 4;
    if (bits !== 4) fail(q.bits !== undefined ? '.bits' : '.w_bit', `is ${JSON.stringify(bits)}; AWQ's GEMM layout holds 4-bit codes only.`);
    const groupSize = q.group_size ?? q.q_group_size ?? 128;
    if (typeof groupSize !== 'number' || !Number.isInteger(groupSize) || (groupSize < 1 && groupSize !== -1)) fail('.group_size', `must be a positive integer or -1, got ${JSON.stringify(groupSize)}.`);
    const zeroPoint = q.zero_point ?? true;
    if (typeof zeroPoint !== 'boolean') fail('.zero_point', `must be true or false, got ${JSON.stringify(zeroPoint)}.`);
    const channel = groupSize === -1;
    return new AwqFormat(file, {
      name: 'awq',
      targets: [],
      weights: { numBits: 4, type: 'int', symmetric: !zeroPoint, strategy: channel ? 'channel' : 'group', groupSize: channel ? null : (groupSize as number), blockStructure: null },
      format: 'awq',
      dynamicActivations: false,
      activationOrder: false,
    });
  }

  schemeOf(): QuantScheme {
    return this.scheme;
  }

  qweightShape(inputs: number, outputs: number): [number, number] {
    return [inputs, Math.ceil(outputs / 8)];
  }

  codes(words: Int32Array, inputs: number, outputs: number): Uint8Array {
    return unpackInterleaved(words, inputs, outputs);
  }

  /**
   * Each code moved from its interleaved place along a row of qweight [in, out/8] to its place along
   * a row of the [out, in] weight: for 8 rows k and one word column c, an 8 × 8 transpose of nibbles.
   */
  rowWords(words: Int32Array, inputs: number, outputs: number): Int32Array {
    const stride = Math.ceil(outputs / 8);
    const perRow = inputs / 8;
    const out = new Int32Array(outputs * perRow);
    for (let col = 0; col < perRow; col++) {
      const base = 8 * col * stride;
      for (let c = 0; c < stride; c++) {
        for (let j = 0; j < 8; j++) {
          const n = 8 * c + AWQ_ORDER[j];
          if (n >= outputs) continue;
          const shift = 4 * j;
          let word = 0;
          for (let i = 0; i < 8; i++) word |= ((words[base + i * stride + c] >>> shift) & 15) << (4 * i);
          out[n * perRow + col] = word;
        }
      }
    }
    return out;
  }

  zeros(words: Int32Array, groups: number, outputs: number): Uint8Array {
    return unpackInterleaved(words, groups, outputs);
  }
}

function unpackInterleaved(words: Int32Array, rows: number, cols: number): Uint8Array {
  const stride = Math.ceil(cols / 8);
  const out = new Uint8Array(rows * cols);
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) out[r * cols + c] = (words[r * stride + (c >>> 3)] >>> (4 * NIBBLE_OF_COLUMN[c & 7])) & 15;
  }
  return out;
}
