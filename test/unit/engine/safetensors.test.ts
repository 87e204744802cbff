/**
 * safetensors as hostile input: every malformed header or truncated file is a UserError that
 * names the file and the tensor; valid files round-trip through our writer, in F32 and BF16.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ReadBuffer, SafetensorsFile, encodeSafetensors, toFloat32, writeSafetensors } from '../../../src/engine/model/safetensors';

const dir = mkdtempSync(join(tmpdir(), 'klc-st-'));

/** A file with the given header object and `dataBytes` bytes of data. */
function rawFile(name: string, header: unknown, dataBytes: number, headerLen?: number): string {
  const json = Buffer.from(JSON.stringify(header));
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(headerLen ?? json.length));
  const p = join(dir, name);
  writeFileSync(p, Buffer.concat([len, json, Buffer.alloc(dataBytes)]));
  return p;
}

async function rejects(path: string, message: RegExp): Promise<void> {
  await assert.rejects(SafetensorsFile.open(path), (e: Error) => {
    assert.equal(e.name, 'UserError');
    assert.match(e.message, message);
    assert.ok(e.message.includes(path), `message names the file: ${e.message}`);
    return true;
  });
}

test('writer and reader round-trip F32, BF16 and I32 tensors with metadata', async () => {
  const p = join(dir, 'ok.safetensors');
  const a = Float32Array.of(1.5, -2.25, 3e-3, 1e6, 0, -0);
  await writeSafetensors(
    p,
    [
      { name: 'a', dtype: 'F32', shape: [2, 3], data: a },
      { name: 'b', dtype: 'BF16', shape: [3], data: Float32Array.of(1, -0.5, 1.00390625) },
      { name: 'ids', dtype: 'I32', shape: [2], data: Int32Array.of(7, -1) },
    ],
    { format: 'pt' },
  );
  const f = await SafetensorsFile.open(p);
  try {
    assert.deepEqual(f.header.metadata, { format: 'pt' });
    assert.deepEqual(f.info('a').shape, [2, 3]);
    assert.deepEqual(Array.from(await f.readF32('a')), Array.from(a));
    // 1.00390625 = 1 + 2^-8 is halfway between two bf16 values and rounds to even (1).
    assert.deepEqual(Array.from(await f.readF32('b')), [1, -0.5, 1]);
    assert.deepEqual(Array.from(await f.readInts('ids')), [7, -1]);
    assert.equal(f.header.dataStart % 8, 0, 'data section is 8-byte aligned');
  } finally {
    await f.close();
  }
  assert.deepEqual(readdirSync(dir).filter((n) => n.endsWith('.tmp')), [], 'no temp file left behind');
});

test('F16 and BF16 decode to the exact fp32 values', () => {
  const f16 = Buffer.from(Uint16Array.of(0x3c00, 0xc000, 0x0001, 0x7bff, 0x7c00).buffer);
  assert.deepEqual(Array.from(toFloat32(f16, 'F16', 'x', 'f')), [1, -2, 2 ** -24, 65504, Infinity]);
  const bf16 = Buffer.from(Uint16Array.of(0x3f80, 0xc040, 0x3c23).buffer);
  assert.deepEqual(Array.from(toFloat32(bf16, 'BF16', 'x', 'f')), [1, -3, Math.fround(0.0099487304688)]);
});

test('a file shorter than the length field is rejected', async () => {
  const p = join(dir, 'tiny.safetensors');
  writeFileSync(p, Buffer.alloc(5));
  await rejects(p, /fewer than the 8-byte header length/);
});

test('a header length beyond the file is rejected', async () => {
  await rejects(rawFile('hlen.safetensors', { a: { dtype: 'F32', shape: [1], data_offsets: [0, 4] } }, 4, 1 << 20), /header length 1048576 exceeds the file/);
});

test('a header that is not JSON is rejected', async () => {
  const p = join(dir, 'json.safetensors');
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(5n);
  writeFileSync(p, Buffer.concat([len, Buffer.from('{nope')]));
  await rejects(p, /not valid UTF-8 JSON/);
});

test('dtype × shape must equal the byte span', async () => {
  await rejects(rawFile('span.safetensors', { w: { dtype: 'F32', shape: [2, 2], data_offsets: [0, 12] } }, 12), /tensor "w": F32 \[2,2\] needs 16 bytes but data_offsets span 12/);
});

test('an unknown dtype is rejected', async () => {
  await rejects(rawFile('dtype.safetensors', { w: { dtype: 'F8_Q', shape: [1], data_offsets: [0, 1] } }, 1), /tensor "w": unknown dtype "F8_Q"/);
});

test('overlapping tensors are rejected', async () => {
  const h = { a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] }, b: { dtype: 'F32', shape: [2], data_offsets: [4, 12] } };
  await rejects(rawFile('overlap.safetensors', h, 12), /tensors "a" and "b" overlap/);
});

test('offsets past the end of the data are rejected as truncation', async () => {
  await rejects(rawFile('oob.safetensors', { w: { dtype: 'F32', shape: [4], data_offsets: [0, 16] } }, 8), /tensor "w": data ends at byte .* but the file has .* bytes \(truncated\?\)/);
});

test('a valid file cut short is rejected when opened', async () => {
  const parts = encodeSafetensors([{ name: 'w', dtype: 'F32', shape: [64], data: new Float32Array(64) }]);
  const whole = Buffer.concat(parts);
  const p = join(dir, 'cut.safetensors');
  writeFileSync(p, whole.subarray(0, whole.length - 10));
  await rejects(p, /tensor "w".*truncated/);
});

test('negative or fractional shapes and reversed offsets are rejected', async () => {
  await rejects(rawFile('neg.safetensors', { w: { dtype: 'F32', shape: [-1], data_offsets: [0, 0] } }, 0), /shape \[-1\] is not a list of non-negative integers/);
  await rejects(rawFile('rev.safetensors', { w: { dtype: 'F32', shape: [0], data_offsets: [8, 4] } }, 8), /end 4 is before begin 8/);
});

test('reading an integer tensor as floats names the tensor', async () => {
  const p = join(dir, 'ints.safetensors');
  await writeSafetensors(p, [{ name: 'ids', dtype: 'I32', shape: [1], data: Int32Array.of(3) }]);
  const f = await SafetensorsFile.open(p);
  try {
    await assert.rejects(f.readF32('ids'), /tensor "ids" has dtype I32; expected a floating type/);
  } finally {
    await f.close();
  }
});

test('a header length one or two bytes short is refused, though the padded JSON still parses', async () => {
  const header = Buffer.from(`${JSON.stringify({ w: { dtype: 'F32', shape: [4], data_offsets: [0, 16] } })}    `);
  for (const short of [1, 2]) {
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(BigInt(header.length - short));
    const p = join(dir, `short-${short}.safetensors`);
    writeFileSync(p, Buffer.concat([len, header, Buffer.from(Float32Array.of(1, 2, 3, 4).buffer)]));
    await rejects(p, new RegExp(`${short} bytes after the last tensor belong to no tensor`));
  }
});

test('trailing bytes after the last tensor and holes between tensors are refused', async () => {
  await rejects(rawFile('trailing.safetensors', { w: { dtype: 'F32', shape: [2], data_offsets: [0, 8] } }, 11), /3 bytes after the last tensor belong to no tensor/);
  const h = { a: { dtype: 'F32', shape: [1], data_offsets: [0, 4] }, b: { dtype: 'F32', shape: [1], data_offsets: [8, 12] } };
  await rejects(rawFile('hole.safetensors', h, 12), /4 bytes before tensor "b" \(at byte \d+\) belong to no tensor/);
  await rejects(rawFile('gap-first.safetensors', { w: { dtype: 'F32', shape: [1], data_offsets: [4, 8] } }, 8), /4 bytes before tensor "w"/);
});

test('reads into a ReadBuffer reuse its memory and give the same bytes; I32 tensors read as aligned views', async () => {
  const p = join(dir, 'reuse.safetensors');
  const a = Int32Array.from({ length: 1000 }, (_, i) => i * 7919 - 3);
  const b = Int32Array.from({ length: 300 }, (_, i) => -i);
  await writeSafetensors(p, [
    { name: 'a', dtype: 'I32', shape: [1000], data: a },
    { name: 'b', dtype: 'I32', shape: [300], data: b },
  ]);
  const f = await SafetensorsFile.open(p);
  try {
    const into = new ReadBuffer();
    const first = await f.readInts('a', into);
    assert.deepEqual(first, a);
    assert.equal(first.byteOffset % 4, 0);
    const second = await f.readInts('b', into);
    assert.deepEqual(second, b);
    assert.equal(second.buffer, first.buffer, 'the second read reuses the first one\'s memory');
    assert.deepEqual(await f.readInts('a'), a, 'a read without a ReadBuffer has memory of its own');
  } finally {
    await f.close();
  }
});

test('reading many tensors lets the event loop turn: timers fire while a long load reads', async () => {
  const p = join(dir, 'many.safetensors');
  const tensors = Array.from({ length: 16 }, (_, i) => ({ name: `t${i}`, dtype: 'F32' as const, shape: [1 << 20], data: new Uint8Array(4 << 20).fill(i) }));
  await writeSafetensors(p, tensors);
  const f = await SafetensorsFile.open(p);
  let ticks = 0;
  const timer = setInterval(() => ticks++, 2);
  try {
    const into = new ReadBuffer();
    const start = performance.now();
    let rounds = 0;
    // Read the 64 MiB again and again until well past a few yield periods (20 ms each).
    while (performance.now() - start < 150) {
      for (const t of tensors) await f.readRaw(t.name, into);
      rounds++;
    }
    assert.ok(rounds > 0);
    assert.ok(ticks >= 3, `only ${ticks} timer ticks in ${Math.round(performance.now() - start)} ms of reading`);
  } finally {
    clearInterval(timer);
    await f.close();
  }
});
