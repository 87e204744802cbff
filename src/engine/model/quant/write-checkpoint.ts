/**
 * `klc quantize`: a full-precision checkpoint folder rewritten as a compressed-tensors checkpoint
 * (what llm-compressor saves, loadable by vLLM): every Linear weight but those keptInFullPrecision
 * names is replaced by its quantized parameters, everything else is copied byte for
 * byte, and config.json gains the `quantization_config`. Shard by shard and tensor by tensor: each
 * output header is planned from the input header, then tensors are quantized and streamed out one
 * at a time, so memory holds one tensor. The folder is built beside OUT and renamed into place.
 */
import { promises as fs } from 'node:fs';
import { basename, join } from 'node:path';
import { UserError } from '../../../common/errors';
import { tempPathFor } from '../../../common/atomic';
import { canonicalName, Checkpoint, expectedTensors } from '../checkpoint';
import { loadConfig } from '../config';
import { DTYPE_BYTES, encodeHeader, numel, SafetensorsFile, toFloat32, type Dtype, type HeaderEntry } from '../safetensors';
import { keptInFullPrecision, linearModules } from './linear-modules';
import { quantize, scaleShape, type QuantizedMatrix } from './matrix';
import { pack, packedShape } from './pack';
import { presetScheme, quantizationConfigJson, type SchemeName } from './presets';
import { rounderFor, scaleDtypeFor } from './round';
import { loadCheckpointQuantization } from './checkpoint-quantization';
import type { QuantScheme } from './scheme';

export interface QuantizeSummary {
  modules: number;
  bytesIn: number;
  bytesOut: number;
}

/** The tensors that replace module `m`'s weight, in the order they are written. */
function plannedEntries(m: string, rows: number, cols: number, scheme: QuantScheme, scaleDtype: Dtype): HeaderEntry[] {
  const w = scheme.weights;
  const scale = { name: `${m}.weight_scale`, dtype: scaleDtype, shape: scaleShape(w, rows, cols) };
  if (scheme.format === 'float-quantized') return [{ name: `${m}.weight`, dtype: 'F8_E4M3', shape: [rows, cols] }, scale];
  return [{ name: `${m}.weight_packed`, dtype: 'I32', shape: packedShape(rows, cols, w.numBits, 1) }, scale, { name: `${m}.weight_shape`, dtype: 'I64', shape: [2] }];
}

function scaleBytes(scale: Float32Array, dtype: Dtype): Uint8Array {
  const f32 = new Uint8Array(scale.buffer, scale.byteOffset, scale.byteLength);
  if (dtype === 'F32') return f32;
  // The scales were rounded to bf16 already: their upper halves are exact.
  const out = new Uint8Array(scale.length * 2);
  for (let i = 0; i < scale.length; i++) {
    out[2 * i] = f32[4 * i + 2];
    out[2 * i + 1] = f32[4 * i + 3];
  }
  return out;
}

/** Bytes of each planned entry of a quantized module. */
function encodedModule(m: string, q: QuantizedMatrix, scheme: QuantScheme, scaleDtype: Dtype): Map<string, Uint8Array> {
  const out = new Map<string, Uint8Array>([[`${m}.weight_scale`, scaleBytes(q.scale, scaleDtype)]]);
  if (scheme.format === 'float-quantized') {
    out.set(`${m}.weight`, q.codes as Uint8Array);
  } else {
    const packed = pack(q.codes as Int8Array, q.rows, q.cols, scheme.weights.numBits, 1);
    out.set(`${m}.weight_packed`, new Uint8Array(packed.buffer));
    out.set(`${m}.weight_shape`, new Uint8Array(BigInt64Array.of(BigInt(q.rows), BigInt(q.cols)).buffer));
  }
  return out;
}

async function shardsOf(dir: string): Promise<string[]> {
  try {
    const index = JSON.parse(await fs.readFile(join(dir, 'model.safetensors.index.json'), 'utf8')) as { weight_map: Record<string, string> };
    return [...new Set(Object.values(index.weight_map))].sort();
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    return ['model.safetensors'];
  }
}

/** Writes the quantized copy of `inDir` as `outDir`, which must not exist yet. */
export async function quantizeCheckpoint(inDir: string, outDir: string, schemeName: SchemeName, log: (line: string) => void): Promise<QuantizeSummary> {
  const config = await loadConfig(inDir);
  const stored = await loadCheckpointQuantization(inDir);
  if (stored) throw new UserError(`${inDir} is already quantized (${stored.method}, per ${stored.file}); quantize the bf16 checkpoint instead.`, inDir);
  // Opening validates every shard against the config before anything is written.
  await (await Checkpoint.open(inDir, config)).close();
  if (await fs.stat(outDir).then(() => true, () => false)) throw new UserError(`${outDir} already exists; name a new folder for the quantized checkpoint.`, outDir);

  const scheme = presetScheme(schemeName);
  const linear = linearModules(config, expectedTensors(config));
  const ignore = keptInFullPrecision(config);
  const skip = new Set(ignore);
  const tmp = tempPathFor(outDir);
  await fs.mkdir(tmp);
  const summary: QuantizeSummary = { modules: 0, bytesIn: 0, bytesOut: 0 };
  try {
    const shards = await shardsOf(inDir);
    const weightMap: Record<string, string> = {};
    for (const [n, shard] of shards.entries()) {
      const src = await SafetensorsFile.open(join(inDir, shard));
      try {
        const plan: { source: string; module: string | null; entries: HeaderEntry[] }[] = [];
        for (const t of src.header.tensors.values()) {
          const module = t.name.endsWith('.weight') ? t.name.slice(0, -'.weight'.length) : null;
          const published = canonicalName(t.name).slice(0, -'.weight'.length);
          const dims = module !== null && !skip.has(published) ? linear.get(published) : undefined;
          if (module !== null && dims) {
            const w = scheme.weights;
            if (w.strategy === 'group' && dims[1] > (w.groupSize as number) && dims[1] % (w.groupSize as number) !== 0) {
              throw new UserError(`${src.path}: "${t.name}" has ${dims[1]} columns, not a multiple of the group size ${w.groupSize} of ${schemeName}; choose another scheme.`, src.path);
            }
            plan.push({ source: t.name, module, entries: plannedEntries(module, dims[0], dims[1], scheme, scaleDtypeFor(t.dtype)) });
          } else {
            plan.push({ source: t.name, module: null, entries: [{ name: t.name, dtype: t.dtype, shape: t.shape }] });
          }
        }
        const entries = plan.flatMap((p) => p.entries);
        const handle = await fs.open(join(tmp, shard), 'w');
        try {
          for (const part of encodeHeader(entries, src.header.metadata)) await handle.write(part);
          for (const p of plan) {
            const raw = await src.readRaw(p.source);
            summary.bytesIn += raw.length;
            let bytes: Map<string, Uint8Array>;
            if (p.module === null) {
              bytes = new Map([[p.source, raw]]);
            } else {
              const info = src.info(p.source);
              const q = quantize(toFloat32(raw, info.dtype, p.source, src.path), info.shape[0], info.shape[1], scheme.weights, rounderFor(scaleDtypeFor(info.dtype)));
              bytes = encodedModule(p.module, q, scheme, scaleDtypeFor(info.dtype));
              summary.modules += 1;
            }
            for (const e of p.entries) {
              const data = bytes.get(e.name) as Uint8Array;
              if (data.length !== numel(e.shape) * DTYPE_BYTES[e.dtype]) throw new Error(`quantize: ${e.name} encoded to ${data.length} bytes, planned ${numel(e.shape) * DTYPE_BYTES[e.dtype]}`);
              await handle.write(data);
              summary.bytesOut += data.length;
              weightMap[e.name] = shard;
            }
          }
          await handle.sync();
        } finally {
          await handle.close();
        }
      } finally {
        await src.close();
      }
      log(`quantize: shard ${n + 1}/${shards.length} ${shard} written`);
    }
    if (shards.length > 1 || shards[0] !== 'model.safetensors') {
      const index = { metadata: { total_size: summary.bytesOut }, weight_map: weightMap };
      await fs.writeFile(join(tmp, 'model.safetensors.index.json'), `${JSON.stringify(index, null, 2)}\n`);
    }
    const json = JSON.parse(await fs.readFile(join(inDir, 'config.json'), 'utf8')) as Record<string, unknown>;
    json.quantization_config = quantizationConfigJson(schemeName, ignore);
    await fs.writeFile(join(tmp, 'config.json'), `${JSON.stringify(json, null, 2)}\n`);
    for (const entry of await fs.readdir(inDir, { withFileTypes: true })) {
      const name = entry.name;
      if (!entry.isFile() || name.endsWith('.safetensors') || name === 'model.safetensors.index.json' || name === 'config.json') continue;
      await fs.copyFile(join(inDir, name), join(tmp, basename(name)));
    }
    await fs.rename(tmp, outDir);
  } catch (e) {
    await fs.rm(tmp, { recursive: true, force: true });
    throw e;
  }
  return summary;
}
