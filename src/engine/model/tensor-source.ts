/**
 * One weight of a checkpoint as the engine sees it: its published shape, the dtype a plain reader
 * would get, and a read that yields fp32 values in row-major order. A stored tensor, a quantized
 * one (dequantized on read) or a bf16 one quantized at load all look the same to the backends.
 */
import type { Dtype, ReadBuffer, SafetensorsFile } from './safetensors';

export interface TensorSource {
  readonly dtype: Dtype;
  readonly shape: number[];
  /** The file that holds it (or its main part), for messages. */
  readonly file: string;
  read(): Promise<Float32Array>;
  /** The stored bytes, for a tensor stored as it is (in `into`'s memory when given). */
  readStored?(into?: ReadBuffer): Promise<Buffer>;
}

/** A tensor stored as is, converted to fp32 on read. */
export function storedSource(file: SafetensorsFile, name: string): TensorSource {
  const info = file.info(name);
  return { dtype: info.dtype, shape: info.shape, file: file.path, read: () => file.readF32(name), readStored: (into) => file.readRaw(name, into) };
}
