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
import { describeScheme } from './compressed';
import { dequantize, quantize, type QuantizedMatrix } from './matrix';
import { presetScheme, SCHEME_OF, type LoadQuantization } from './presets';
import { rounderFor, scaleDtypeFor } from './round';
import type { QuantScheme } from './scheme';

class QuantizedAtLoad implements WeightSource {
  constructor(
    private readonly inner: WeightSource,
    readonly loadQuantization: Exclude<LoadQuantization, 'none'>,
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
    return dequantize(quantizeWeight(w, this.inner.info(name), this.scheme));
  }

  /** Only untouched tensors may be generated on the device: the others must go through tensor(). */
  deviceFill(name: string) {
    return this.targets.has(name) ? null : (this.inner.deviceFill?.(name) ?? null);
  }

  close(): Promise<void> {
    return this.inner.close();
  }
}

/** Whether any weight of `source` is stored quantized (a compressed-tensors checkpoint). */
export function storedQuantized(source: WeightSource): boolean {
  return source.quantized !== undefined && source.names.some((n) => source.quantized?.(n));
}

/** The error for quantizing an already quantized checkpoint at load. */
export function alreadyQuantized(source: WeightSource, quantization: LoadQuantization): UserError {
  return new UserError(`${source.dir} is already quantized (its config.json has a quantization_config); quantization at load (${quantization}) needs a bf16 or fp32 checkpoint. Drop --quantization (or set kimiLinear.quantization to auto or none).`, source.dir);
}

/** Names of the weights quantization at load quantizes: every Linear weight but those keptInFullPrecision. */
export function atLoadTargets(config: KimiConfig): Set<string> {
  const kept = new Set(keptInFullPrecision(config));
  return new Set([...linearModules(config, expectedTensors(config)).keys()].filter((m) => !kept.has(m)).map((m) => `${m}.weight`));
}

/** The quantization at load of one weight, as every backend applies it: scales rounded to the dtype `klc quantize` would store them in. */
export function quantizeWeight(w: Float32Array, info: WeightInfo, scheme: QuantScheme): QuantizedMatrix {
  return quantize(w, info.shape[0], info.shape[1], scheme.weights, rounderFor(scaleDtypeFor(info.dtype)));
}

/** `source` with its Linear weights quantized at load per `quantization`; `source` itself for 'none'. Closes `source` when it refuses. */
export async function quantizeAtLoad(source: WeightSource, config: KimiConfig, quantization: LoadQuantization): Promise<WeightSource> {
  if (quantization === 'none') return source;
  if (storedQuantized(source)) {
    await source.close();
    throw alreadyQuantized(source, quantization);
  }
  return new QuantizedAtLoad(source, quantization, presetScheme(SCHEME_OF[quantization]), atLoadTargets(config));
}

/**
 * How the weights of `source` are quantized, for state keys and logs: 'none'; "at load: int4
 * (w4a16-g128)"; or the schemes a compressed-tensors checkpoint stores them in.
 */
export function weightQuantization(source: WeightSource): string {
  if (source.loadQuantization) return atLoadDescription(source.loadQuantization);
  const stored = new Set<string>();
  if (source.quantized) {
    for (const n of source.names) {
      const q = source.quantized(n);
      if (q) stored.add(describeScheme(q.scheme));
    }
  }
  return stored.size === 0 ? 'none' : `stored: ${[...stored].sort().join('; ')}`;
}

export function atLoadDescription(quantization: LoadQuantization): string {
  return quantization === 'none' ? 'none' : `at load: ${quantization} (${SCHEME_OF[quantization]})`;
}
