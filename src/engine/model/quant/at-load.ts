/**
 * Quantization at load: a full-precision weight is read, quantized with a preset scheme and
 * dequantized again, through the same quantize/dequantize code as `klc quantize` and the
 * compressed-tensors reader, so the reference and ONNX backends compute exactly what the
 * quantized checkpoint would give.
 */
import type { TensorSource } from '../tensor-source';
import { dequantize, quantize } from './matrix';
import type { QuantScheme } from './scheme';
import { rounderFor } from './round';

export function roundTripSource(src: TensorSource, scheme: QuantScheme): TensorSource {
  const [rows, cols] = src.shape;
  return {
    dtype: src.dtype,
    shape: src.shape,
    file: src.file,
    read: async () => dequantize(quantize(await src.read(), rows, cols, scheme.weights, scaleRounder(src))),
  };
}

/** Scales are stored in the weight's own dtype, as llm-compressor does. */
export function scaleRounder(src: TensorSource): (x: number) => number {
  return rounderFor(src.dtype === 'F16' || src.dtype === 'F32' ? src.dtype : 'BF16');
}
