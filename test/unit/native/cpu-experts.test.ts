/**
 * The offloaded experts' CPU kernels (native/src/cpu_experts.cpp) against a float64 computation
 * from the weights the reference backend dequantizes to (quant/matrix.ts): random INT4/INT8 codes,
 * scales (bf16 or fp32), symmetric and asymmetric, several group sizes and shapes, routed tokens,
 * packed as compressed-tensors stores them (klc_wq); and FP8 E4M3 bytes (every finite byte,
 * subnormals and both zeros included), whose decoding is also checked on its own against values
 * written out from the format's definition. Every kernel set this machine's CPU runs (AVX-512, AVX2,
 * each forced with KLC_CPU_ISA and required to report itself) and the portable one run, with one and
 * several threads.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { cpuFlags } from './cpu-flags';
import { join } from 'node:path';
import { toBf16 } from '../../../src/engine/model/bf16';
import { FP8_E4M3_VALUES } from '../../../src/engine/model/quant/fp8';
import { dequantize, type QuantizedMatrix } from '../../../src/engine/model/quant/matrix';
import { pack } from '../../../src/engine/model/quant/pack';
import { buildCpuDriver } from './cpu-driver';

const dir = mkdtempSync(join(tmpdir(), 'klc-cpu-experts-'));
const driver = buildCpuDriver(dir);
process.on('exit', () => rmSync(dir, { recursive: true, force: true }));

/** The bytes of typed arrays one after another. */
const bytesOf = (...arrays: ArrayBufferView[]): Buffer[] => arrays.map((a) => Buffer.from(a.buffer, a.byteOffset, a.byteLength));

/** Deterministic uniform numbers in [0, 1). */
function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

interface Case {
  T: number;
  d: number;
  I: number;
  E: number;
  k: number;
  /** 'fp8': E4M3 bytes (bits 8, symmetric), every finite byte; 'fp8-small': only zeros, subnormals and the smallest binade. */
  bits: 4 | 8 | 'fp8' | 'fp8-small';
  group13: number;
  group2: number;
  scalesF32: boolean;
  symmetric: boolean;
  accumulate: boolean;
  threads: number;
}

interface Quant {
  m: QuantizedMatrix;
  /** The file bytes: packed codes, scales, packed zero points. */
  bytes: Buffer[];
}

/** E4M3 bytes without the NaN bytes 0x7f and 0xff: no quantizer writes them. */
const E4M3_FINITE = Array.from({ length: 256 }, (_, b) => b).filter((b) => (b & 0x7f) !== 0x7f);
/** Exponent field 0 (zeros and subnormals) and 1: weights that a decoding error of the small codes would dominate. */
const E4M3_SMALL = E4M3_FINITE.filter((b) => ((b >> 3) & 15) <= 1);

/** Random E4M3 bytes [N, K] from `pool` with per-group scales; the bytes are the file's codes as they are. */
function fp8Matrix(r: () => number, N: number, K: number, group: number, scalesF32: boolean, pool: number[]): Quant {
  const codes = Uint8Array.from({ length: N * K }, () => pool[Math.floor(r() * pool.length)]);
  const groups = K / group;
  // Scales bring the weights near the INT cases' size: codes reach ±448, or ±2^-5 for the small pool.
  const unit = pool === E4M3_SMALL ? 8 : 1 / 512;
  let scale = Float32Array.from({ length: N * groups }, () => (0.2 + r()) * unit);
  const scaleBytes = scalesF32 ? Buffer.from(scale.buffer) : Buffer.from(toBf16(scale).buffer);
  if (!scalesF32) scale = new Float32Array(new Uint32Array(Array.from(toBf16(scale), (b) => b << 16)).buffer);
  const m: QuantizedMatrix = {
    rows: N,
    cols: K,
    args: { numBits: 8, type: 'float', symmetric: true, strategy: 'group', groupSize: group, blockStructure: null },
    codes,
    scale,
    zeroPoint: null,
    gIdx: null,
  };
  return { m, bytes: [Buffer.from(codes.buffer), scaleBytes] };
}

function quantMatrix(r: () => number, N: number, K: number, bits: Case['bits'], group: number, scalesF32: boolean, symmetric: boolean): Quant {
  if (bits === 'fp8' || bits === 'fp8-small') return fp8Matrix(r, N, K, group, scalesF32, bits === 'fp8' ? E4M3_FINITE : E4M3_SMALL);
  const lo = -(2 ** (bits - 1));
  const span = 2 ** bits;
  const codes = Int8Array.from({ length: N * K }, () => lo + Math.floor(r() * span));
  const groups = K / group;
  let scale = Float32Array.from({ length: N * groups }, () => (0.2 + r()) / (bits === 4 ? 8 : 128));
  const scaleBytes = scalesF32 ? Buffer.from(scale.buffer) : Buffer.from(toBf16(scale).buffer);
  // A bf16 scale is the fp32 of its top 16 bits: what the kernels and the reference both read.
  if (!scalesF32) scale = new Float32Array(new Uint32Array(Array.from(toBf16(scale), (b) => b << 16)).buffer);
  const zeroPoint = symmetric ? null : Int8Array.from({ length: N * groups }, () => lo + Math.floor(r() * span));
  const m: QuantizedMatrix = {
    rows: N,
    cols: K,
    args: { numBits: bits, type: 'int', symmetric, strategy: 'group', groupSize: group, blockStructure: null },
    codes,
    scale,
    zeroPoint,
    gIdx: null,
  };
  const bytes = [Buffer.from(pack(codes, N, K, bits, 1).buffer), scaleBytes];
  if (zeroPoint) bytes.push(Buffer.from(pack(zeroPoint, N, groups, bits, 0).buffer));
  return { m, bytes };
}

/** out[t] (+)= sum_s w * W2_e (SiLU(W1_e x) * (W3_e x)) in float64 from the dequantized fp32 weights. */
function expected(c: Case, x: Float32Array, idx: Int32Array, w: Float32Array, w13: Float32Array, w2: Float32Array, before: Float32Array): Float64Array {
  const { T, d, I, k } = c;
  const out = Float64Array.from(c.accumulate ? before : new Float32Array(T * d));
  const h = new Float64Array(I);
  for (let t = 0; t < T; t++) {
    for (let s = 0; s < k; s++) {
      const e = idx[t * k + s];
      for (let i = 0; i < I; i++) {
        let g = 0;
        let u = 0;
        const gate = (e * 2 * I + i) * d;
        const up = (e * 2 * I + I + i) * d;
        for (let j = 0; j < d; j++) {
          g += w13[gate + j] * x[t * d + j];
          u += w13[up + j] * x[t * d + j];
        }
        h[i] = (g / (1 + Math.exp(-g))) * u;
      }
      for (let col = 0; col < d; col++) {
        let y = 0;
        const row = (e * d + col) * I;
        for (let i = 0; i < I; i++) y += w2[row + i] * h[i];
        out[t * d + col] += w[t * k + s] * y;
      }
    }
  }
  return out;
}

type Isa = 'avx512' | 'avx2' | 'scalar';

/** The kernel sets this CPU runs, widest first: the driver must pick each when KLC_CPU_ISA names it. */
function isas(): Isa[] {
  const flags = cpuFlags();
  const avx2 = ['avx2', 'fma', 'f16c'].every((f) => flags.has(f));
  return [...(avx2 && flags.has('avx512f') ? ['avx512' as const] : []), ...(avx2 ? ['avx2' as const] : []), 'scalar'];
}

/** c on the driver (repeat > 1: that many calls on one pool, which must all give the first one's bits). */
function runCase(c: Case, seed: number, isa: Isa, repeat = 1): void {
  const r = rng(seed);
  const { T, d, I, E, k } = c;
  const x = Float32Array.from({ length: T * d }, () => r() * 2 - 1);
  const idx = new Int32Array(T * k);
  for (let t = 0; t < T; t++) {
    const pool = Array.from({ length: E }, (_, e) => e);
    for (let s = 0; s < k; s++) idx[t * k + s] = pool.splice(Math.floor(r() * pool.length), 1)[0];
    idx.subarray(t * k, (t + 1) * k).sort();
  }
  const w = Float32Array.from({ length: T * k }, () => 0.05 + r() * 0.3);
  const q13 = quantMatrix(r, E * 2 * I, d, c.bits, c.group13, c.scalesF32, c.symmetric);
  const q2 = quantMatrix(r, E * d, I, c.bits, c.group2, c.scalesF32, c.symmetric);
  const before = Float32Array.from({ length: T * d }, () => r() - 0.5);
  const fp8 = c.bits === 'fp8' || c.bits === 'fp8-small';
  const header = Int32Array.from([T, d, I, E, k, fp8 ? 8 : c.bits, c.group13, c.group2, c.scalesF32 ? 1 : 0, c.symmetric ? 0 : 1, c.accumulate ? 1 : 0, c.threads, fp8 ? 1 : 0]);
  const input = join(dir, `in-${seed}-${isa}.bin`);
  const output = join(dir, `out-${seed}-${isa}.bin`);
  writeFileSync(input, Buffer.concat([...bytesOf(header, x, idx, w), ...q13.bytes, ...q2.bytes, ...bytesOf(before)]));
  const env = { ...process.env, KLC_CPU_ISA: isa };
  const p = spawnSync(driver, ['run', input, output, String(repeat)], { encoding: 'utf8', env });
  assert.equal(p.status, 0, `driver failed: ${p.stdout}${p.stderr}`);
  assert.equal(p.stdout.trim(), isa, `KLC_CPU_ISA=${isa} ran the ${p.stdout.trim()} kernels`);
  const buf = readFileSync(output);
  const got = new Float32Array(buf.buffer, buf.byteOffset, T * d);
  const want = expected(c, x, idx, w, dequantize(q13.m), dequantize(q2.m), before);
  let scale = 0;
  for (const v of want) scale = Math.max(scale, Math.abs(v));
  assert.ok(scale > 1e-3, 'the reference output is not trivially zero');
  let worst = 0;
  for (let i = 0; i < want.length; i++) worst = Math.max(worst, Math.abs(got[i] - want[i]));
  // fp32 accumulation over d and I terms: a few ulps of the output's scale.
  assert.ok(worst <= 2e-5 * scale, `${JSON.stringify(c)} ${isa}: max |cpu − float64| = ${worst} (output scale ${scale})`);
}

const cases: Case[] = [
  { T: 1, d: 64, I: 32, E: 8, k: 2, bits: 4, group13: 32, group2: 32, scalesF32: false, symmetric: true, accumulate: true, threads: 2 },
  { T: 3, d: 128, I: 64, E: 6, k: 3, bits: 4, group13: 64, group2: 16, scalesF32: true, symmetric: false, accumulate: false, threads: 3 },
  { T: 7, d: 96, I: 48, E: 5, k: 4, bits: 8, group13: 96, group2: 48, scalesF32: false, symmetric: false, accumulate: true, threads: 1 },
  { T: 2, d: 256, I: 40, E: 16, k: 8, bits: 8, group13: 128, group2: 8, scalesF32: true, symmetric: true, accumulate: false, threads: 4 },
  // The group sizes the AVX2 kernel unrolls (32 and 128 codes) with zero points, several tokens an expert.
  { T: 4, d: 256, I: 128, E: 4, k: 3, bits: 4, group13: 128, group2: 32, scalesF32: false, symmetric: false, accumulate: false, threads: 2 },
  // Six tokens choosing among three experts: more pairs per expert than one pass over a row serves.
  { T: 6, d: 64, I: 24, E: 3, k: 2, bits: 4, group13: 16, group2: 24, scalesF32: false, symmetric: false, accumulate: true, threads: 2 },
  // FP8 per channel (one scale per row, as offloaded FP8 experts are), and grouped.
  { T: 1, d: 128, I: 64, E: 8, k: 2, bits: 'fp8', group13: 128, group2: 64, scalesF32: false, symmetric: true, accumulate: true, threads: 2 },
  { T: 5, d: 96, I: 40, E: 6, k: 3, bits: 'fp8', group13: 96, group2: 40, scalesF32: true, symmetric: true, accumulate: false, threads: 3 },
  { T: 6, d: 64, I: 24, E: 3, k: 2, bits: 'fp8', group13: 16, group2: 8, scalesF32: false, symmetric: true, accumulate: true, threads: 1 },
  { T: 2, d: 64, I: 32, E: 4, k: 2, bits: 'fp8-small', group13: 64, group2: 32, scalesF32: true, symmetric: true, accumulate: false, threads: 2 },
];

test('the E4M3 values the FP8 cases are checked with are the format\'s (float8_e4m3fn)', () => {
  // Written out from the definition: sign, exponent bias 7, 3 mantissa bits, exponent 0 subnormal.
  const known: [number, number][] = [
    [0x00, 0], [0x01, 2 ** -9], [0x07, 7 * 2 ** -9], [0x08, 2 ** -6], [0x0f, 1.875 * 2 ** -6], [0x38, 1], [0x39, 1.125],
    [0x40, 2], [0x70, 128], [0x78, 256], [0x7e, 448], [0x80, -0], [0x81, -(2 ** -9)], [0xb8, -1], [0xfe, -448],
  ];
  for (const [b, v] of known) assert.ok(Object.is(FP8_E4M3_VALUES[b], v), `byte 0x${b.toString(16)}: ${FP8_E4M3_VALUES[b]}, expected ${v}`);
  for (const b of E4M3_FINITE.filter((x) => x > 0 && x < 0x7f)) assert.ok(FP8_E4M3_VALUES[b] > FP8_E4M3_VALUES[b - 1], `byte 0x${b.toString(16)} is not above the byte below`);
  for (const b of E4M3_FINITE.filter((x) => x < 0x80)) assert.ok(Object.is(FP8_E4M3_VALUES[b | 0x80], -FP8_E4M3_VALUES[b]));
});

for (const [i, c] of cases.entries()) {
  for (const isa of isas()) {
    test(`cpu experts ${isa}: T ${c.T}, d ${c.d}, I ${c.I}, E ${c.E}, top-${c.k}, ${typeof c.bits === 'string' ? c.bits : `int${c.bits}`} g${c.group13}/${c.group2}, ${c.symmetric ? 'sym' : 'asym'}, ${c.scalesF32 ? 'fp32' : 'bf16'} scales, ${c.threads} threads`, () => {
      runCase(c, 1000 + i, isa);
    });
  }
}

// The pool's workers spin for a while between phases and calls and sleep after: many calls in a row, with more
// threads than this machine may have cores, must neither hang nor change a bit.
test('cpu experts: 400 calls on one pool of 4 threads give the first call\'s bits and float64\'s values', () => {
  runCase({ ...cases[1], threads: 4 }, 2000, isas()[0], 400);
});

test('cpu experts: an expert index outside the layer is a clear error, not a read past the weights', () => {
  const c: Case = { T: 1, d: 16, I: 8, E: 2, k: 1, bits: 4, group13: 16, group2: 8, scalesF32: true, symmetric: true, accumulate: false, threads: 1 };
  const r = rng(5);
  const q13 = quantMatrix(r, 2 * 2 * 8, 16, 4, 16, true, true);
  const q2 = quantMatrix(r, 2 * 16, 8, 4, 8, true, true);
  const header = Int32Array.from([c.T, c.d, c.I, c.E, c.k, 4, 16, 8, 1, 0, 0, 1, 0]);
  const input = join(dir, 'bad.bin');
  writeFileSync(input, Buffer.concat([...bytesOf(header, new Float32Array(16), Int32Array.from([2]), Float32Array.from([1])), ...q13.bytes, ...q2.bytes, ...bytesOf(new Float32Array(16))]));
  const p = spawnSync(driver, ['run', input, join(dir, 'bad.out')], { encoding: 'utf8' });
  assert.equal(p.status, 1);
  assert.match(p.stdout, /expert index 2 of pair 0 is outside 0\.\.1/);
});
