/**
 * Where a model's weights come from: a checkpoint folder (checkpoint.ts) or weights generated from
 * a config and a seed (dummy-weights.ts). Backends read tensors through this and never care which.
 */
import type { QuantizedSource } from './quant/compressed';
import type { LoadQuantization } from './quant/presets';
import type { Dtype, ReadBuffer } from './safetensors';

/**
 * How a device backend may generate a tensor where it lives instead of uploading it: the
 * counter-based normal draw of dummy-weights.ts (same keys, same values on every backend).
 */
export interface DeviceFill {
  key: number;
  key2: number;
  /** Multiplies the centred sum of eight 16-bit uniforms (see dummy-weights.ts). */
  scale: number;
}

/** What a plain reader sees of one weight: a quantized one has its dequantized shape and its scales' dtype. */
export interface WeightInfo {
  name: string;
  dtype: Dtype;
  shape: number[];
}

export interface WeightSource {
  /** Folder (or config file) the weights belong to, for messages. */
  readonly dir: string;
  /** Published names of every tensor. */
  readonly names: string[];
  /** Total number of weights. */
  readonly parameters: number;
  has(name: string): boolean;
  info(name: string): WeightInfo;
  /** One tensor (published name) as fp32, flat, row-major. */
  tensor(name: string): Promise<Float32Array>;
  /** Set where a weight is stored quantized (compressed-tensors): its codes and scales as stored, else null. */
  quantized?(name: string): QuantizedSource | null;
  /** Set where Linear weights are quantized at load (quantize, then dequantize): the scheme applied. */
  readonly loadQuantization?: Exclude<LoadQuantization, 'none'>;
  /** Set where the tensor can be generated on the device instead of read (dummy weights). */
  deviceFill?(name: string): DeviceFill | null;
  /**
   * Set where tensors are read from files: a tensor's stored bytes, for a BF16 one the bf16 values
   * as they go to a GPU; in `into`'s memory when given.
   */
  readStored?(name: string, into?: ReadBuffer): Promise<Buffer>;
  close(): Promise<void>;
}
