/**
 * `npm run bench:load-48b`: the CPU side of loading the whole 48B model from a stored INT4
 * checkpoint onto a GPU, as the CUDA backend does it (Checkpoint.open, the weight-byte plan,
 * uploadWeights), with a device that only counts what it is given. The checkpoint is
 * compressed-tensors W4A16 group 32 (the layout of the community AWQ 4-bit export), every Linear
 * but lm_head quantized, written as a sparse file: its codes and scales read as zeros from the
 * page cache (or, where the page cache is smaller, as zeroed pages), so disk and PCIe speed are
 * not in the figure; the time spent reading is printed apart from the rest. Prints one JSON line.
 *
 *   npm run bench:load-48b [-- --keep DIR]
 */
import { promises as fs } from 'node:fs';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { deviceWeightBytes, uploadWeights } from '../../src/engine/backends/cuda/device-weights';
import type { DevicePtr, NativeContext, NativeKlc } from '../../src/engine/backends/cuda/loader';
import { Checkpoint, expectedTensors } from '../../src/engine/model/checkpoint';
import { loadConfigFile } from '../../src/engine/model/config';
import { linearModules } from '../../src/engine/model/quant/linear-modules';
import { quantizationConfigJson } from '../../src/engine/model/quant/presets';
import { DTYPE_BYTES, encodeHeader, SafetensorsFile, type HeaderEntry, type ReadBuffer } from '../../src/engine/model/safetensors';

const { values } = parseArgs({ options: { keep: { type: 'string' } } });
const CONFIG = join(__dirname, '..', '..', 'assets', 'configs', 'kimi-linear-48b-a3b-instruct.json');
const GROUP = 32;

/** Writes the checkpoint: the header, each weight_shape's two int64 values, the rest a hole. */
async function writeSparseCheckpoint(dir: string): Promise<number> {
  const cfg = await loadConfigFile(CONFIG);
  const expected = expectedTensors(cfg);
  const linear = linearModules(cfg, expected);
  const entries: HeaderEntry[] = [];
  const shapes: { name: string; rows: number; cols: number }[] = [];
  for (const [name, options] of expected) {
    const module = name.replace(/\.weight$/, '');
    const quantized = name.endsWith('.weight') && linear.has(module) && module !== 'lm_head';
    if (!quantized) {
      entries.push({ name, dtype: name.endsWith('A_log') || name.endsWith('dt_bias') || name.endsWith('e_score_correction_bias') ? 'F32' : 'BF16', shape: options[0] });
      continue;
    }
    const [rows, cols] = options[0];
    entries.push({ name: `${module}.weight_packed`, dtype: 'I32', shape: [rows, cols / 8] });
    entries.push({ name: `${module}.weight_scale`, dtype: 'BF16', shape: [rows, cols / GROUP] });
    entries.push({ name: `${module}.weight_shape`, dtype: 'I64', shape: [2] });
    shapes.push({ name: `${module}.weight_shape`, rows, cols });
  }
  const [len, header] = encodeHeader(entries);
  const dataStart = len.length + header.length;
  const offsets = new Map<string, number>();
  let offset = 0;
  for (const e of entries) {
    offsets.set(e.name, offset);
    offset += e.shape.reduce((a, b) => a * b, 1) * DTYPE_BYTES[e.dtype];
  }
  const file = await fs.open(join(dir, 'model.safetensors'), 'w');
  try {
    await file.write(len, 0, len.length, 0);
    await file.write(header, 0, header.length, len.length);
    for (const s of shapes) {
      const v = Buffer.alloc(16);
      v.writeBigInt64LE(BigInt(s.rows), 0);
      v.writeBigInt64LE(BigInt(s.cols), 8);
      await file.write(v, 0, 16, dataStart + (offsets.get(s.name) as number));
    }
    await file.truncate(dataStart + offset);
  } finally {
    await file.close();
  }
  const config = JSON.parse(await fs.readFile(CONFIG, 'utf8')) as Record<string, unknown>;
  const quantization = quantizationConfigJson('w4a16-g128', ['lm_head']);
  const group0 = (quantization.config_groups as Record<string, { weights: Record<string, unknown> }>).group_0;
  group0.weights.group_size = GROUP;
  await fs.writeFile(join(dir, 'config.json'), JSON.stringify({ ...config, quantization_config: quantization }));
  return dataStart + offset;
}

/** A device that hands out addresses and counts bytes, keeping nothing. */
function countingDevice(): { native: NativeKlc; uploaded: () => number } {
  let next = 1n << 32n;
  let uploaded = 0;
  const native = {
    alloc: (_ctx: NativeContext, bytes: number): DevicePtr => {
      const p = next;
      next += BigInt(Math.ceil(bytes / 256) * 256 + 256);
      return p;
    },
    free: () => {},
    upload: (_ctx: NativeContext, _dst: DevicePtr, src: ArrayBufferView) => {
      uploaded += src.byteLength;
    },
  } as unknown as NativeKlc;
  return { native, uploaded: () => uploaded };
}

const seconds = (t: bigint) => Number((Number(process.hrtime.bigint() - t) / 1e9).toFixed(2));

/**
 * Time spent reading tensors, apart from the rest: on a machine whose page cache is smaller than
 * the checkpoint, the sparse file's pages are zeroed and evicted as they are read, which says
 * nothing about the engine.
 */
function timeReads(): () => number {
  const read = SafetensorsFile.prototype.readRaw;
  let ns = 0n;
  SafetensorsFile.prototype.readRaw = async function (this: SafetensorsFile, name: string, into?: ReadBuffer) {
    const t = process.hrtime.bigint();
    try {
      return await read.call(this, name, into);
    } finally {
      ns += process.hrtime.bigint() - t;
    }
  };
  return () => Number((Number(ns) / 1e9).toFixed(2));
}

async function main(): Promise<void> {
  const dir = values.keep ?? mkdtempSync(join(tmpdir(), 'klc-load-48b-'));
  mkdirSync(dir, { recursive: true });
  try {
    const bytes = await writeSparseCheckpoint(dir);
    const cfg = await loadConfigFile(join(dir, 'config.json'));
    let t = process.hrtime.bigint();
    const ckpt = await Checkpoint.open(dir, cfg);
    const open = seconds(t);
    try {
      t = process.hrtime.bigint();
      const planned = await deviceWeightBytes(cfg, ckpt, null, false);
      const plan = seconds(t);
      const device = countingDevice();
      const reading = timeReads();
      t = process.hrtime.bigint();
      await uploadWeights(device.native, {} as NativeContext, cfg, ckpt);
      const upload = seconds(t);
      const weights = planned.weights.resident + planned.weights.experts.reduce((a, b) => a + b, 0);
      process.stdout.write(`${JSON.stringify({ checkpoint: 'compressed-tensors W4A16 g32, 48B', checkpointGB: Number((bytes / 1e9).toFixed(2)), deviceWeightsGB: Number((weights / 1e9).toFixed(2)), uploadedGB: Number((device.uploaded() / 1e9).toFixed(2)), openS: open, planS: plan, uploadS: upload, ofWhichReadingS: reading(), restS: Number((upload - reading()).toFixed(2)) })}\n`);
    } finally {
      await ckpt.close();
    }
  } finally {
    if (!values.keep) rmSync(dir, { recursive: true, force: true });
  }
}

void main();
