/**
 * compressed-tensors' pack-quantized layout: signed b-bit codes are offset by 2^(b-1) to unsigned,
 * and floor(32 / b) of them share one int32, the k-th of a run in bits [k·b, (k+1)·b). Weights are
 * packed along a row (dim 1: [rows, ceil(cols / f)]); zero points along a column (dim 0:
 * [ceil(rows / f), cols]). Padding codes are zero bits.
 */

export const packFactor = (bits: number): number => Math.floor(32 / bits);

/** Shape of the packed tensor of codes [rows, cols] packed along `dim`. */
export function packedShape(rows: number, cols: number, bits: number, dim: 0 | 1): [number, number] {
  const f = packFactor(bits);
  return dim === 1 ? [rows, Math.ceil(cols / f)] : [Math.ceil(rows / f), cols];
}

/** Packs row-major codes [rows, cols] along `dim`. */
export function pack(codes: Int8Array, rows: number, cols: number, bits: number, dim: 0 | 1): Int32Array {
  const f = packFactor(bits);
  const offset = 1 << (bits - 1);
  const mask = (1 << bits) - 1;
  const [, outCols] = packedShape(rows, cols, bits, dim);
  const out = new Int32Array(packedShape(rows, cols, bits, dim).reduce((a, b) => a * b, 1));
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) {
      const u = (codes[r * cols + c] + offset) & mask;
      if (dim === 1) out[r * outCols + ((c / f) | 0)] |= u << ((c % f) * bits);
      else out[((r / f) | 0) * outCols + c] |= u << ((r % f) * bits);
    }
  }
  return out;
}

/** The codes [rows, cols] of a tensor packed along `dim`. */
export function unpack(packed: Int32Array, rows: number, cols: number, bits: number, dim: 0 | 1): Int8Array {
  const f = packFactor(bits);
  const offset = 1 << (bits - 1);
  const mask = (1 << bits) - 1;
  const [pRows, pCols] = packedShape(rows, cols, bits, dim);
  if (packed.length !== pRows * pCols) throw new Error(`unpack: ${packed.length} int32 for [${rows}, ${cols}] at ${bits} bits along dim ${dim}, expected ${pRows * pCols}`);
  const out = new Int8Array(rows * cols);
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) {
      const word = dim === 1 ? packed[r * pCols + ((c / f) | 0)] : packed[((r / f) | 0) * pCols + c];
      const k = dim === 1 ? c % f : r % f;
      out[r * cols + c] = ((word >>> (k * bits)) & mask) - offset;
    }
  }
  return out;
}
