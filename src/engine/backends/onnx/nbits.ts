/**
 * INT4 weights of a compressed-tensors checkpoint run through ONNX Runtime's com.microsoft
 * MatMulNBits (y = x · dequant(B)ᵀ with B packed 4-bit along K in power-of-two blocks, one scale
 * and optional zero point per block) instead of an fp32 Gemm. Graph builders take weights as the
 * fp32 arrays the checkpoint reader returns; the packed form of such an array is attached to it
 * here at load (a weak map keyed by the array, so nothing outlives the array), and `linear`
 * emits MatMulNBits for an attached array. Every other use of the array, and every weight whose
 * scheme MatMulNBits cannot express (activation reordering, groups that are not a multiple of 16,
 * 8-bit and FP8), stays on the dequantized fp32 values, which are the same numbers.
 */
import type { WeightSource } from '../../model/weight-source';
import type { QuantizedMatrix } from '../../model/quant/matrix';

export interface NBitsWeight {
  /** Output features (rows of the PyTorch weight). */
  N: number;
  /** Input features. */
  K: number;
  blockSize: number;
  /** [N, ceil(K / blockSize), blockSize / 2]: unsigned codes, two per byte, the lower K index in the low nibble. */
  packed: Uint8Array;
  /** [N, ceil(K / blockSize)]. */
  scales: Float32Array;
  /** [N, ceil(ceil(K / blockSize) / 2)] unsigned zero points, two per byte; null = 8 (symmetric). */
  zeroPoints: Uint8Array | null;
}

const attached = new WeakMap<Float32Array, NBitsWeight>();

export function nbitsOf(w: Float32Array): NBitsWeight | undefined {
  return attached.get(w);
}

/** The MatMulNBits block size for `m`'s scales, or null when its layout cannot be expressed. */
function blockSizeOf(m: QuantizedMatrix): number | null {
  const a = m.args;
  if (a.type !== 'int' || a.numBits !== 4 || m.gIdx !== null) return null;
  if (a.strategy === 'tensor' || a.strategy === 'channel') return 32;
  if (a.strategy !== 'group') return null;
  const gs = a.groupSize as number;
  if (gs >= m.cols) return 32;
  for (let b = 128; b >= 16; b /= 2) if (gs % b === 0) return b;
  return null;
}

/** The MatMulNBits form of a 4-bit matrix, or null when it has none. */
export function toNBits(m: QuantizedMatrix): NBitsWeight | null {
  const bs = blockSizeOf(m);
  if (bs === null) return null;
  const { rows: N, cols: K } = m;
  const blocks = Math.ceil(K / bs);
  const a = m.args;
  const scaleAt =
    a.strategy === 'tensor' ? () => 0 : a.strategy === 'channel' ? (n: number) => n : (n: number, k: number) => n * Math.ceil(K / (a.groupSize as number)) + Math.floor(k / (a.groupSize as number));
  const packed = new Uint8Array(N * blocks * (bs / 2)).fill(0x88);
  const scales = new Float32Array(N * blocks);
  const zbytes = Math.ceil(blocks / 2);
  const zeroPoints = m.zeroPoint ? new Uint8Array(N * zbytes) : null;
  for (let n = 0; n < N; n++) {
    for (let b = 0; b < blocks; b++) {
      const j = scaleAt(n, b * bs);
      scales[n * blocks + b] = m.scale[j];
      if (zeroPoints && m.zeroPoint) {
        const at = n * zbytes + (b >> 1);
        zeroPoints[at] = (zeroPoints[at] & (b & 1 ? 0x0f : 0xf0)) | ((m.zeroPoint[j] + 8) << (4 * (b & 1)));
      }
    }
    for (let k = 0; k < K; k++) {
      const at = n * blocks * (bs / 2) + (k >> 1);
      const u = (m.codes[n * K + k] + 8) & 0xf;
      packed[at] = k & 1 ? (packed[at] & 0x0f) | (u << 4) : (packed[at] & 0xf0) | u;
    }
  }
  return { N, K, blockSize: bs, packed, scales, zeroPoints };
}

/** Attaches the packed form of `m` to `w`, its dequantized values; false when MatMulNBits cannot run `m`. */
export function attachPacked(w: Float32Array, m: QuantizedMatrix): boolean {
  const nb = toNBits(m);
  if (nb) attached.set(w, nb);
  return nb !== null;
}

/**
 * Attaches the packed form to every array of `arrays` whose tensor in `from` (the name at the same
 * place in `names`) is a stored 4-bit weight MatMulNBits can run; returns how many. `names` and
 * `arrays` are records of the same keys (weight-names.ts and reference/weights.ts), nested in
 * arrays and objects.
 */
export async function attachNBits(from: WeightSource, names: unknown, arrays: unknown): Promise<number> {
  if (typeof names === 'string' && arrays instanceof Float32Array) {
    const stored = from.quantized?.(names) ?? null;
    if (!stored || stored.scheme.weights.type !== 'int' || stored.scheme.weights.numBits !== 4) return 0;
    return attachPacked(arrays, await stored.readQuantized()) ? 1 : 0;
  }
  if (typeof names !== 'object' || names === null || typeof arrays !== 'object' || arrays === null) return 0;
  let n = 0;
  for (const [key, value] of Object.entries(names)) n += await attachNBits(from, value, (arrays as Record<string, unknown>)[key]);
  return n;
}

/** Attaches to `whole` (the rows of `parts` stacked) the stacked packed forms, when every part has a compatible one. */
export function attachStacked(parts: Float32Array[], whole: Float32Array): void {
  const nbs = parts.map((p) => attached.get(p));
  const first = nbs[0];
  if (!first || !nbs.every((nb) => nb && nb.K === first.K && nb.blockSize === first.blockSize && (nb.zeroPoints === null) === (first.zeroPoints === null))) return;
  const all = nbs as NBitsWeight[];
  const join = (arrays: Uint8Array[]) => {
    const out = new Uint8Array(arrays.reduce((n, x) => n + x.length, 0));
    let o = 0;
    for (const x of arrays) {
      out.set(x, o);
      o += x.length;
    }
    return out;
  };
  const scales = new Float32Array(all.reduce((n, x) => n + x.scales.length, 0));
  let o = 0;
  for (const x of all) {
    scales.set(x.scales, o);
    o += x.scales.length;
  }
  attached.set(whole, {
    N: all.reduce((n, x) => n + x.N, 0),
    K: first.K,
    blockSize: first.blockSize,
    packed: join(all.map((x) => x.packed)),
    scales,
    zeroPoints: first.zeroPoints ? join(all.map((x) => x.zeroPoints as Uint8Array)) : null,
  });
}
