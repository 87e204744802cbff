/**
 * Quantization at load: every Linear weight of a full-precision source (a checkpoint, or dummy
 * weights) except those keptInFullPrecision is read, quantized with a preset scheme and
 * dequantized again, through the same quantize/dequantize code as `klc quantize` and the
 * compressed-tensors reader, so the reference and ONNX backends compute exactly what the quantized
 * checkpoint would give. Everything else is passed through.
 */
import { UserError } from '../../../common/errors';
import type { KimiConfig } from '../config';
import { expectedTensors } from '../checkpoint';
import type { WeightInfo, WeightSource } from '../weight-source';
import { keptInFullPrecision, linearModules } from './linear-modules';
import { dequantize, quantize } from './matrix';
import { presetScheme, SCHEME_OF, type LoadQuantization } from './presets';
import { rounderFor, scaleDtypeFor } from './round';
import type { QuantScheme } from './scheme';

class QuantizedAtLoad implements WeightSource {
  constructor(
    private readonly inner: WeightSource,
    private readonly scheme: QuantScheme,
    /** Weight names that are quantized. */
    private readonly targets: Set<string>,
  ) {}

  get dir(): string {
    return this.inner.dir;
  }

  get names(): string[] {
    return this.inner.names;
  }

  get parameters(): number {
    return this.inner.parameters;
  }

  has(name: string): boolean {
    return this.inner.has(name);
  }

  info(name: string): WeightInfo {
    return this.inner.info(name);
  }

  async tensor(name: string): Promise<Float32Array> {
    const w = await this.inner.tensor(name);
    if (!this.targets.has(name)) return w;
    const { shape, dtype } = this.inner.info(name);
    return dequantize(quantize(w, shape[0], shape[1], this.scheme.weights, rounderFor(scaleDtypeFor(dtype))));
  }

  /** Only untouched tensors may be generated on the device: the others must go through tensor(). */
  deviceFill(name: string) {
    return this.targets.has(name) ? null : (this.inner.deviceFill?.(name) ?? null);
  }

  close(): Promise<void> {
    return this.inner.close();
  }
}

/** `source` with its Linear weights quantized at load per `quantization`; `source` itself for 'none'. Closes `source` when it refuses. */
export async function quantizeAtLoad(source: WeightSource, config: KimiConfig, quantization: LoadQuantization): Promise<WeightSource> {
  if (quantization === 'none') return source;
  if (source.quantized && source.names.some((n) => source.quantized?.(n))) {
    await source.close();
    throw new UserError(`${source.dir} is already quantized (its config.json has a quantization_config); quantization at load (${quantization}) needs a bf16 or fp32 checkpoint. Drop --quantization.`, source.dir);
  }
  const kept = new Set(keptInFullPrecision(config));
  const targets = new Set([...linearModules(config, expectedTensors(config)).keys()].filter((m) => !kept.has(m)).map((m) => `${m}.weight`));
  return new QuantizedAtLoad(source, presetScheme(SCHEME_OF[quantization]), targets);
}
