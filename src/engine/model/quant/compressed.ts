/**
 * Reading compressed-tensors weights. Each quantized module `m` is stored as parameters beside
 * each other: pack-quantized as `m.weight_packed` (int32), `m.weight_scale`, `m.weight_shape`,
 * `m.weight_zero_point` (int32 packed along rows, asymmetric group/channel schemes) and optional
 * `m.weight_g_idx`; float-, int- and naive-quantized as `m.weight` (FP8 E4M3 or int8 values),
 * `m.weight_scale` and `m.weight_zero_point` (int8, asymmetric). A module's parameters are
 * collected from whatever shard holds them, checked against its scheme and the shape the config
 * implies, and exposed as one source of `m.weight` that dequantizes on read.
 */
import { UserError } from '../../../common/errors';
import { numel, type ReadBuffer, type SafetensorsFile } from '../safetensors';
import type { TensorSource } from '../tensor-source';
import { dequantize, scaleShape, type QuantizedMatrix, type RowPackedMatrix } from './matrix';
import { packedShape, unpack } from './pack';
import { schemeFor, type QuantizationConfig, type QuantScheme } from './scheme';

const PARAMS = ['weight', 'weight_packed', 'weight_scale', 'weight_zero_point', 'weight_shape', 'weight_g_idx', 'input_scale'] as const;
type Param = (typeof PARAMS)[number];

/** A quantized weight: reads as fp32 like any source, and as its stored codes and scales. */
export interface QuantizedSource extends TensorSource {
  readonly scheme: QuantScheme;
  readQuantized(): Promise<QuantizedMatrix>;
  /**
   * The same matrix with its codes packed along the rows, where the stored layout gives them so
   * cheaply (4 and 8 bits); the words may be in `into`'s memory, valid until its next use.
   */
  readRowPacked?(into?: ReadBuffer): Promise<RowPackedMatrix>;
}

export function isQuantizedSource(s: TensorSource): s is QuantizedSource {
  return 'readQuantized' in s;
}

type Parts = Partial<Record<Param, SafetensorsFile>>;

/**
 * Collects the stored tensors of a checkpoint's quantized modules while its shards are opened,
 * then yields one source per quantized weight (`m.weight`).
 */
export interface QuantLayout {
  /** Whether stored tensor `name` (published spelling) belongs to a quantized module. */
  claims(name: string): boolean;
  add(name: string, file: SafetensorsFile, stored: string): void;
  /** A source per quantized module's weight, after checking every part. */
  sources(): Promise<Map<string, QuantizedSource>>;
}

export class CompressedLayout implements QuantLayout {
  private readonly schemes = new Map<string, QuantScheme>();
  private readonly tensors = new ModuleTensors<Param>();

  /** `linear`: module → weight [rows, cols] of every Linear module of the model. */
  constructor(
    private readonly qc: QuantizationConfig,
    private readonly linear: Map<string, [number, number]>,
  ) {
    for (const m of linear.keys()) {
      const s = schemeFor(qc, m, true);
      if (s) this.schemes.set(m, s);
    }
    for (const t of qc.schemes.flatMap((s) => s.targets)) {
      if (!t.startsWith('re:') && t !== 'Linear' && !t.includes('.') && t !== 'lm_head') {
        throw new UserError(`${qc.file}: quantization_config targets the class "${t}"; only "Linear", module names and "re:" patterns are understood.`, qc.file);
      }
    }
  }

  claims(name: string): boolean {
    const [module, param] = split(name);
    return module !== null && this.schemes.has(module) && (PARAMS as readonly string[]).includes(param);
  }

  add(name: string, file: SafetensorsFile, stored: string): void {
    this.tensors.add(name, file, stored);
  }

  async sources(): Promise<Map<string, QuantizedSource>> {
    const out = new Map<string, QuantizedSource>();
    for (const [module, parts] of this.tensors.modules) {
      const scheme = this.schemes.get(module) as QuantScheme;
      const [rows, cols] = this.linear.get(module) as [number, number];
      out.set(`${module}.weight`, await this.source(module, parts, scheme, rows, cols));
    }
    return out;
  }

  private async source(m: string, parts: Parts, scheme: QuantScheme, rows: number, cols: number): Promise<QuantizedSource> {
    const w = scheme.weights;
    const where = (p: Param) => parts[p]?.path ?? this.qc.file;
    const fail = (p: Param, what: string): never => {
      throw new UserError(`${where(p)}: "${m}.${p}" ${what} (config_groups.${scheme.name}: ${describeScheme(scheme)}).`, where(p));
    };
    const info = (p: Param) => (parts[p] as SafetensorsFile).info(this.stored(m, p));
    const packed = scheme.format === 'pack-quantized';
    const valuesParam: Param = packed ? 'weight_packed' : 'weight';
    const asymPacked = packed && !w.symmetric && (w.strategy === 'group' || w.strategy === 'channel');
    const required: Param[] = [valuesParam, 'weight_scale', ...(packed ? (['weight_shape'] as Param[]) : []), ...(!w.symmetric ? (['weight_zero_point'] as Param[]) : [])];
    for (const p of Object.keys(parts) as Param[]) {
      if (p === 'input_scale') fail(p, 'is a static activation scale, which this engine does not apply');
      if (!required.includes(p) && p !== 'weight_g_idx') fail(p, `does not belong to a ${scheme.format} module${p === 'weight' ? '; it is stored unquantized although a config group targets it' : ''}`);
    }
    for (const p of required) if (!parts[p]) fail(p, `is missing: the module is quantized as ${scheme.format}, which stores ${required.map((r) => `${m}.${r}`).join(', ')}`);

    const values = info(valuesParam);
    if (packed) {
      const want = packedShape(rows, cols, w.numBits, 1);
      if (values.dtype !== 'I32' || !sameShape(values.shape, want)) fail(valuesParam, `is ${values.dtype} ${JSON.stringify(values.shape)}, expected I32 ${JSON.stringify(want)} for a [${rows}, ${cols}] weight`);
      const shapeInfo = info('weight_shape');
      if (numel(shapeInfo.shape) !== 2) fail('weight_shape', `has shape ${JSON.stringify(shapeInfo.shape)}, expected [2]`);
      const stored = Array.from(await (parts.weight_shape as SafetensorsFile).readInts(this.stored(m, 'weight_shape')));
      if (!sameShape(stored, [rows, cols])) fail('weight_shape', `says ${JSON.stringify(stored)}, but config.json implies [${rows}, ${cols}]`);
    } else {
      const dtype = w.type === 'float' ? 'F8_E4M3' : 'I8';
      if (values.dtype !== dtype || !sameShape(values.shape, [rows, cols])) fail(valuesParam, `is ${values.dtype} ${JSON.stringify(values.shape)}, expected ${dtype} [${rows}, ${cols}]`);
    }
    const sShape = scaleShape(w, rows, cols);
    const scale = info('weight_scale');
    if (!['BF16', 'F16', 'F32'].includes(scale.dtype) || numel(scale.shape) !== numel(sShape)) fail('weight_scale', `is ${scale.dtype} ${JSON.stringify(scale.shape)}, expected a float tensor ${JSON.stringify(sShape)}`);
    if (parts.weight_zero_point) {
      const z = info('weight_zero_point');
      const want = asymPacked ? packedShape(sShape[0], sShape[1], w.numBits, 0) : sShape;
      const dtypes = asymPacked ? ['I32'] : ['I8', 'I32'];
      if (!dtypes.includes(z.dtype) || numel(z.shape) !== numel(want)) fail('weight_zero_point', `is ${z.dtype} ${JSON.stringify(z.shape)}, expected ${dtypes[0]} ${JSON.stringify(want)}`);
    }
    if (parts.weight_g_idx) {
      const g = info('weight_g_idx');
      if (!['I32', 'I64'].includes(g.dtype) || numel(g.shape) !== cols) fail('weight_g_idx', `is ${g.dtype} ${JSON.stringify(g.shape)}, expected I32 [${cols}]`);
    }

    const file = (p: Param) => parts[p] as SafetensorsFile;
    const name = (p: Param) => this.stored(m, p);
    /** Everything but the codes and scales: zero points, g_idx. */
    const rest = async (): Promise<Omit<QuantizedMatrix, 'codes' | 'scale'>> => {
      let zeroPoint: Int8Array | null = null;
      if (parts.weight_zero_point) {
        const z = file('weight_zero_point');
        const zi = z.info(name('weight_zero_point'));
        if (asymPacked) zeroPoint = unpack(await z.readInts(name('weight_zero_point')), sShape[0], sShape[1], w.numBits, 0);
        else zeroPoint = zi.dtype === 'I8' ? (bytes(await z.readRaw(name('weight_zero_point')), false) as Int8Array) : Int8Array.from(await z.readInts(name('weight_zero_point')));
      }
      let gIdx: Int32Array | null = null;
      if (parts.weight_g_idx) {
        const g = await file('weight_g_idx').readInts(name('weight_g_idx'));
        const groups = sShape[1];
        // An all -1 g_idx is the placeholder compressed-tensors writes when activations were not reordered.
        if (!g.includes(-1)) {
          for (const x of g) if (x < 0 || x >= groups) fail('weight_g_idx', `holds group ${x}, outside 0..${groups - 1}`);
          gIdx = g;
        }
      }
      return { rows, cols, args: w, zeroPoint, gIdx };
    };
    const read = async (): Promise<QuantizedMatrix> => {
      const codes = packed
        ? unpack(await file(valuesParam).readInts(name(valuesParam)), rows, cols, w.numBits, 1)
        : bytes(await file(valuesParam).readRaw(name(valuesParam)), w.type === 'float');
      return { ...(await rest()), scale: await file('weight_scale').readF32(name('weight_scale')), codes };
    };
    // bf16 scales stay the bits they are stored in: converting a 48B model's to fp32 and back cost seconds.
    const rowScales = async (): Promise<Float32Array | Uint16Array> => {
      if (scale.dtype !== 'BF16') return file('weight_scale').readF32(name('weight_scale'));
      const raw = await file('weight_scale').readRaw(name('weight_scale'));
      return new Uint16Array(raw.buffer, raw.byteOffset, raw.length / 2);
    };
    // Stored words are already rows packed as RowPackedMatrix describes when no row ends mid-word.
    const rowPacked = packed && (w.numBits === 4 || w.numBits === 8) && (cols * w.numBits) % 32 === 0;
    return {
      dtype: scale.dtype,
      shape: [rows, cols],
      file: where(valuesParam),
      scheme,
      readQuantized: read,
      ...(rowPacked ? { readRowPacked: async (into?: ReadBuffer) => ({ ...(await rest()), scale: await rowScales(), words: await file(valuesParam).readInts(name(valuesParam), into) }) } : {}),
      read: async () => dequantize(await read()),
    };
  }

  private stored(module: string, param: Param): string {
    return this.tensors.stored(module, param);
  }
}

/** Each quantized module's stored tensors by parameter, from whatever shard holds them, and the names they are stored under. */
export class ModuleTensors<P extends string> {
  readonly modules = new Map<string, Partial<Record<P, SafetensorsFile>>>();
  /** `module.param` (published spelling) → the name it is stored under. */
  private readonly names = new Map<string, string>();

  add(name: string, file: SafetensorsFile, stored: string): void {
    const [module, param] = split(name) as [string, P];
    const parts: Partial<Record<P, SafetensorsFile>> = this.modules.get(module) ?? {};
    parts[param] = file;
    this.modules.set(module, parts);
    this.names.set(`${module}.${param}`, stored);
  }

  stored(module: string, param: P): string {
    return this.names.get(`${module}.${param}`) as string;
  }
}

/** A tensor name split into module and parameter at the last dot. */
export function split(name: string): [string | null, string] {
  const dot = name.lastIndexOf('.');
  return dot < 0 ? [null, name] : [name.slice(0, dot), name.slice(dot + 1)];
}

function bytes(raw: Buffer, unsigned: boolean): Int8Array | Uint8Array {
  const copy = unsigned ? new Uint8Array(raw.length) : new Int8Array(raw.length);
  copy.set(unsigned ? raw : new Int8Array(raw.buffer, raw.byteOffset, raw.length));
  return copy;
}

export const sameShape = (a: readonly number[], b: readonly number[]) => a.length === b.length && a.every((x, i) => x === b[i]);

/** A scheme in words: "INT4 symmetric, group 128, pack-quantized". */
export function describeScheme(s: QuantScheme): string {
  const w = s.weights;
  const grain = w.strategy === 'group' ? `group ${w.groupSize}` : w.strategy === 'block' ? `block ${w.blockStructure?.join('×')}` : `per ${w.strategy}`;
  return `${w.type === 'float' ? 'FP8 E4M3' : `INT${w.numBits}`} ${w.symmetric ? 'symmetric' : 'asymmetric'}, ${grain}, ${s.format}`;
}
