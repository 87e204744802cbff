/**
 * MLA rows as they are kept: fp32 values, or bf16 bits (a Uint16Array) where the cache or the
 * state file holds bf16. Passing the bits through as they are spares a widening and a rounding
 * pass over every row on each save and restore (at 1M tokens, 4 billion values each way).
 */
import { fromBf16, toBf16 } from '../model/bf16';

export type LatentRows = Float32Array | Uint16Array;

export function latentF32(rows: LatentRows): Float32Array {
  return rows instanceof Uint16Array ? fromBf16(rows) : rows;
}

/** bf16 bits of the rows: as they are when already bf16, else rounded to nearest even. */
export function latentBf16(rows: LatentRows): Uint16Array {
  return rows instanceof Uint16Array ? rows : toBf16(rows);
}
