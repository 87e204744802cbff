/**
 * Weights for any config without a checkpoint (`--load-format dummy`, as vLLM calls it): for
 * speed and memory runs at the real sizes, where a 98 GB download is not an option.
 *
 * Every value is a pure function of (seed, tensor name, element index), so each backend can make
 * it where it lives (the CUDA backend fills device memory with the same arithmetic, native/src/
 * dummy.cu) and dummy models compare across backends:
 *   - matrices: N(0, 0.02) approximated by the centred sum of eight 16-bit uniforms (Irwin–Hall,
 *     8 terms: within 0.3% of a normal's quantiles up to 3σ). Integer sums and one double product
 *     round identically on the CPU and the GPU, which a Box–Muller draw's log and cos would not;
 *   - norms 1, the router's score-correction bias 0;
 *   - A_log = log(U(1, 16)) and dt_bias = softplus⁻¹(dt) with log dt ~ U(log 1e-3, log 1e-1),
 *     dt ≥ 1e-4: fla's initialisation of the KDA gates (computed on the host for every backend);
 * and every value is rounded to bf16, as if the weights had been stored as a bf16 checkpoint.
 */
import { basename } from 'node:path';
import type { KimiConfig } from './config';
import { expectedTensors } from './checkpoint';
import type { TensorInfo } from './safetensors';
import type { DeviceFill, WeightSource } from './weight-source';

export const DUMMY_STD = 0.02;
/** Uniforms summed per normal draw, and their range. */
const TERMS = 8;
const U16 = 65536;
const MEAN = (TERMS * (U16 - 1)) / 2;
/** Standard deviation of the sum of TERMS discrete uniforms on [0, 65535]. */
const SUM_STD = Math.sqrt((TERMS * (U16 * U16 - 1)) / 12);
const GOLDEN = 0x9e3779b9;

/** The 32-bit finaliser both sides use (lowbias32): a bijection with full avalanche. */
export function mix32(x: number): number {
  x ^= x >>> 16;
  x = Math.imul(x, 0x7feb352d);
  x ^= x >>> 15;
  x = Math.imul(x, 0x846ca68b);
  x ^= x >>> 16;
  return x >>> 0;
}

function fnv1a(text: string): number {
  let h = 0x811c9dc5;
  for (const b of Buffer.from(text, 'utf8')) h = Math.imul(h ^ b, 0x01000193) >>> 0;
  return h;
}

/** The two keys of a tensor's stream: different names give unrelated streams. */
export function tensorKeys(seed: number, name: string): { key: number; key2: number } {
  const key = mix32(fnv1a(name) ^ mix32((seed ^ 0x5bd1e995) >>> 0));
  return { key, key2: mix32((key + GOLDEN) >>> 0) };
}

/** The centred uniform sum of element i (an integer in [−MEAN, MEAN]). */
function centredSum(key: number, key2: number, i: number): number {
  const base = mix32((i ^ key) >>> 0);
  let s = 0;
  for (let j = 0; j < TERMS / 2; j++) {
    const r = mix32((base ^ ((key2 + j * GOLDEN) >>> 0)) >>> 0);
    s += (r & 0xffff) + (r >>> 16);
  }
  return s - MEAN;
}

/** fp32 → bf16 → fp32, rounding to nearest even (the same rule as the CUDA side's). */
const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);
export function roundBf16(x: number): number {
  f32[0] = x;
  const v = u32[0];
  u32[0] = ((v + 0x7fff + ((v >>> 16) & 1)) >>> 16) << 16;
  return f32[0];
}

/** Element i of a normal tensor: what native/src/dummy.cu computes for the same keys. */
export function normalValue(fill: DeviceFill, i: number): number {
  return roundBf16(Math.fround(centredSum(fill.key, fill.key2, i) * fill.scale));
}

function uniform01(key: number, key2: number, i: number): number {
  return mix32((mix32((i ^ key) >>> 0) ^ key2) >>> 0) / 2 ** 32;
}

type Init = 'normal' | 'one' | 'zero' | 'aLog' | 'dtBias';

function initOf(name: string): Init {
  if (/(layernorm|\.norm|o_norm)\.weight$/.test(name)) return 'one';
  if (name.endsWith('.e_score_correction_bias')) return 'zero';
  if (name.endsWith('.A_log')) return 'aLog';
  if (name.endsWith('.dt_bias')) return 'dtBias';
  return 'normal';
}

export class DummyWeights implements WeightSource {
  private readonly shapes: Map<string, number[]>;

  /** `configFile` names where the config came from (messages and the model's identity). */
  constructor(
    readonly config: KimiConfig,
    readonly seed: number,
    readonly configFile: string,
  ) {
    if (!Number.isInteger(seed) || seed < 0 || seed > 0xffffffff) throw new Error(`dummy weights: the seed must be an integer in [0, 2^32), got ${seed}`);
    this.shapes = new Map([...expectedTensors(config)].map(([name, options]) => [name, options[0]]));
  }

  get dir(): string {
    return `dummy weights for ${basename(this.configFile)} (seed ${this.seed})`;
  }

  get names(): string[] {
    return [...this.shapes.keys()];
  }

  get parameters(): number {
    let n = 0;
    for (const s of this.shapes.values()) n += s.reduce((a, b) => a * b, 1);
    return n;
  }

  has(name: string): boolean {
    return this.shapes.has(name);
  }

  info(name: string): TensorInfo {
    const shape = this.shapes.get(name);
    if (!shape) throw new Error(`dummy weights: the config implies no tensor "${name}"`);
    return { name, dtype: 'BF16', shape, begin: 0, end: 0 };
  }

  deviceFill(name: string): DeviceFill | null {
    if (initOf(name) !== 'normal') return null;
    return { ...tensorKeys(this.seed, name), scale: DUMMY_STD / SUM_STD };
  }

  async tensor(name: string): Promise<Float32Array> {
    const n = this.info(name).shape.reduce((a, b) => a * b, 1);
    const out = new Float32Array(n);
    const init = initOf(name);
    const fill = this.deviceFill(name);
    if (fill) for (let i = 0; i < n; i++) out[i] = normalValue(fill, i);
    else if (init === 'one') out.fill(1);
    else if (init === 'aLog' || init === 'dtBias') {
      const { key, key2 } = tensorKeys(this.seed, name);
      for (let i = 0; i < n; i++) out[i] = roundBf16(init === 'aLog' ? aLog(uniform01(key, key2, i)) : dtBias(uniform01(key, key2, i)));
    }
    return out;
  }

  async close(): Promise<void> {}
}

function aLog(u: number): number {
  return Math.log(1 + 15 * u);
}

function dtBias(u: number): number {
  const dt = Math.max(1e-4, Math.exp(Math.log(1e-3) + u * (Math.log(1e-1) - Math.log(1e-3))));
  return dt + Math.log(-Math.expm1(-dt));
}
