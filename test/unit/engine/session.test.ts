/**
 * The engine session on the bundled tiny checkpoint (reference backend): ingest, resume from
 * saved states and checkpoints, ask from the forked state — each checked against computing the
 * same thing from scratch.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, mkdirSync, writeFileSync, appendFileSync, readFileSync, readdirSync, rmSync, utimesSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { EngineSession } from '../../../src/engine/session';
import { questionTokens } from '../../../src/engine/chat-template';
import { prefillChunked } from '../../../src/engine/generate';
import { CancelledError } from '../../../src/engine/generate';
import { openStateFile, writeStateFile } from '../../../src/engine/state/state-file';
import type { KdaLayerState } from '../../../src/engine/state/types';

function fixture(): string {
  const root = mkdtempSync(join(tmpdir(), 'klc-session-ws-'));
  mkdirSync(join(root, 'src'));
  const files: Record<string, string> = {
    'src/math.ts': 'export function add(a: number, b: number): number {\n  return a + b;\n}\n',
    'src/main.ts': "import { add } from './math';\nimport { greet } from './greet';\nconsole.log(greet('world'), add(2, 3));\n",
    'src/greet.ts': 'export function greet(name: string): string {\n  return `hello, ${name}`;\n}\n',
    'README.md': '# demo\nA tiny project: main.ts calls add() from math.ts and greet() from greet.ts.\n',
  };
  let t = 1_700_000_000;
  for (const [p, text] of Object.entries(files)) {
    writeFileSync(join(root, p), text);
    utimesSync(join(root, p), t, t);
    t += 100;
  }
  return root;
}

async function open(cacheDir: string, root: string, lines: string[] = []) {
  return EngineSession.open({ backend: 'reference', cacheDir, workspace: { roots: [root] }, checkpointEvery: 16, log: (l) => lines.push(l) });
}

const greedy = { temperature: 0, maxNewTokens: 6 };

/** Next-token logits after the question, computed from scratch over the same packed ids. */
async function scratchLogits(session: EngineSession, question: string): Promise<Float32Array> {
  const { ids } = session.forkRepoState()!;
  const state = session.model.newState();
  return (await prefillChunked(session.model, state, Int32Array.from([...ids, ...questionTokens(session.tokenizer, question)])))!;
}

async function cachedLogits(session: EngineSession, question: string): Promise<Float32Array> {
  const { state } = session.forkRepoState()!;
  return (await prefillChunked(session.model, state, questionTokens(session.tokenizer, question)))!;
}

function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  assert.equal(a.length, b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

test('ingest, reuse, ask from the cached state = ask from scratch', async () => {
  const root = fixture();
  const cache = mkdtempSync(join(tmpdir(), 'klc-session-cache-'));
  const s = await open(cache, root);
  const first = await s.ingest(undefined);
  assert.equal(first.files, 4);
  assert.equal(first.upToDate, false);
  assert.equal(first.resumedTokens, 0);
  assert.ok(first.tokens > 100);
  assert.equal(s.status().repo.state, 'ready');

  const a = await s.ask({ question: 'What does main.ts call?', sampling: greedy });
  const b = await s.ask({ question: 'What does main.ts call?', sampling: greedy });
  assert.equal(a.text, b.text, 'asking does not change the cached state');
  assert.ok(a.tokens > 0 || a.stopReason === 'eos');
  assert.ok(maxAbsDiff(await cachedLogits(s, 'Where is greet defined?'), await scratchLogits(s, 'Where is greet defined?')) < 1e-4);
  await s.dispose();

  const again = await open(cache, root);
  const second = await again.ingest(undefined);
  assert.equal(second.upToDate, true);
  assert.equal(second.tokens, first.tokens);
  const c = await again.ask({ question: 'What does main.ts call?', sampling: greedy });
  assert.equal(c.text, a.text, 'the state restored from disk answers like the one in memory');
  await again.dispose();
});

test('after an edit, ingest resumes from a checkpoint and equals a full ingest', async () => {
  const root = fixture();
  const cache = mkdtempSync(join(tmpdir(), 'klc-session-cache-'));
  const s = await open(cache, root);
  const first = await s.ingest(undefined);
  appendFileSync(join(root, 'src/greet.ts'), '// greet is used by main.ts\n');
  const second = await s.ingest(undefined);
  assert.ok(second.resumedTokens > 0, 'resumed from a checkpoint');
  assert.ok(second.resumedTokens < second.tokens);
  assert.notEqual(second.tokens, first.tokens);
  const resumedLogits = await cachedLogits(s, 'Who uses greet?');
  const fromScratch = await scratchLogits(s, 'Who uses greet?');
  assert.ok(maxAbsDiff(resumedLogits, fromScratch) < 1e-4);
  await s.dispose();
});

test('after an edit, a session that holds the state resumes from it (no cache read from disk) and equals one that reads the saved state', async () => {
  const root = fixture();
  const cache = mkdtempSync(join(tmpdir(), 'klc-session-cache-'));
  const heldLines: string[] = [];
  const held = await open(cache, root, heldLines);
  await held.ingest(undefined);
  appendFileSync(join(root, 'src/greet.ts'), '// greet is used by main.ts\n');
  const freshLines: string[] = [];
  const fresh = await open(cache, root, freshLines);
  const fromDisk = await fresh.ingest(undefined);
  assert.ok(fromDisk.resumedTokens > 0);
  await fresh.dispose();
  // The fresh session saved its result: put the snapshot of the held state's ingest back by ingesting the original again.
  writeFileSync(join(root, 'src/greet.ts'), readFileSync(join(root, 'src/greet.ts'), 'utf8').replace('// greet is used by main.ts\n', ''));
  await held.ingest(undefined);
  appendFileSync(join(root, 'src/greet.ts'), '// greet is used by main.ts\n');
  heldLines.length = 0;
  const fromMemory = await held.ingest(undefined);
  assert.match(heldLines.join('\n'), /resuming at token \d+ of \d+ from the saved checkpoint \(MLA rows shared with the state in memory/);
  assert.match(freshLines.join('\n'), /resuming at token \d+ of \d+ from the saved checkpoint$/m);
  assert.ok(fromMemory.resumedTokens > 0 && fromMemory.resumedTokens < fromMemory.tokens);
  const question = 'Who uses greet?';
  assert.ok(maxAbsDiff(await cachedLogits(held, question), await scratchLogits(held, question)) < 1e-4);
  await held.dispose();
});

test('after an edit in the last file, the new snapshot keeps the blocks of the unchanged rows and writes only the tail', async () => {
  // Six files of about 830 tokens: the context spans two blocks of 4096 rows per MLA layer, the last file in the second.
  const root = mkdtempSync(join(tmpdir(), 'klc-session-ws-'));
  mkdirSync(join(root, 'src'));
  for (let f = 0; f < 6; f++) writeFileSync(join(root, 'src', `m${f}.ts`), Array.from({ length: 60 }, (_, i) => `export const v${f}_${i} = ${i * 37 + f};\n`).join(''));
  const cache = mkdtempSync(join(tmpdir(), 'klc-session-cache-'));
  const lines: string[] = [];
  const s = await EngineSession.open({ backend: 'reference', cacheDir: cache, workspace: { roots: [root] }, checkpointEvery: 256, log: (l) => lines.push(l) });
  try {
    const first = await s.ingest(undefined);
    assert.equal(first.omitted, 0);
    appendFileSync(join(root, 'src', 'm5.ts'), '// edited\n');
    lines.length = 0;
    const reads: [number, number, number][] = [];
    const latentReader = s.model.latentReader.bind(s.model);
    s.model.latentReader = (state) => {
      const read = latentReader(state);
      return (layer, from, count) => {
        reads.push([layer, from, count]);
        return read(layer, from, count);
      };
    };
    const second = await s.ingest(undefined);
    const mlaLayers = s.forkRepoState()!.state.layers.flatMap((l, i) => (l.kind === 'mla' ? [i] : []));
    const mla = mlaLayers.length;
    assert.ok(second.resumedTokens >= 4096 && second.tokens > 4096 && second.tokens <= 8192, `${second.resumedTokens} of ${second.tokens}`);
    // Block 0 (rows below 4096) is resumed whole and kept, never read; block 1 is the tail, read once and written anew.
    assert.deepEqual(reads, mlaLayers.map((i) => [i, 4096, second.tokens - 4096]));
    assert.match(lines.join('\n'), new RegExp(`state: snapshot written: ${mla} blocks? \\([\\d.]+ MB\\) new, ${mla} reused, .*; ${mla} blocks? no longer used removed`));
    assert.ok(maxAbsDiff(await cachedLogits(s, 'What is v5_3?'), await scratchLogits(s, 'What is v5_3?')) < 1e-4);
  } finally {
    await s.dispose();
  }
  const t = await open(cache, root);
  try {
    const third = await t.ingest(undefined);
    assert.equal(third.upToDate, true, 'the snapshot with kept and new blocks restores');
    assert.ok(maxAbsDiff(await cachedLogits(t, 'What is v5_3?'), await scratchLogits(t, 'What is v5_3?')) < 1e-4);
  } finally {
    await t.dispose();
  }
});

/**
 * Ingests a fixture, damages the saved state in its store folder, then ingests again in a new
 * session: the damage must be reported (`reported` matches a log line) and the state rebuilt from the
 * start with the same answers.
 */
async function damagedStateIsRebuilt(damage: (storeDir: string) => void | Promise<void>, reported: (line: string) => boolean): Promise<void> {
  const root = fixture();
  const cache = mkdtempSync(join(tmpdir(), 'klc-session-cache-'));
  const s = await open(cache, root);
  const first = await s.ingest(undefined);
  const reference = await cachedLogits(s, 'What is add?');
  await s.dispose();
  const dir = join(cache, readdirSync(cache, { withFileTypes: true }).find((d) => d.isDirectory())!.name);
  await damage(dir);

  const lines: string[] = [];
  const t = await open(cache, root, lines);
  try {
    const second = await t.ingest(undefined);
    assert.ok(lines.some(reported), lines.join('\n'));
    assert.equal(second.upToDate, false);
    assert.equal(second.resumedTokens, 0);
    assert.equal(second.tokens, first.tokens);
    assert.ok(maxAbsDiff(await cachedLogits(t, 'What is add?'), reference) < 1e-5);
  } finally {
    await t.dispose();
  }
}

test('a corrupt saved state is reported and rebuilt, never used', async () => {
  await damagedStateIsRebuilt(
    (dir) => {
      const snap = join(dir, 'snapshot.klcs');
      const bytes = readFileSync(snap);
      bytes[bytes.length - 5] ^= 0x10;
      writeFileSync(snap, bytes);
    },
    (l) => /unusable \(checksum mismatch/.test(l),
  );
});

test('a missing block of the saved state is reported and rebuilt, never used', async () => {
  let removed = '';
  await damagedStateIsRebuilt(
    (d) => {
      const names = readdirSync(join(d, 'blocks'));
      assert.ok(names.length > 0 && names.every((n) => /^[0-9a-f]{64}\.blk$/.test(n)), names.join(', '));
      removed = join(d, 'blocks', names[0]);
      rmSync(removed);
    },
    (l) => l.includes(`unusable (block ${removed} of layer.`) && /latent\.0 is missing\)/.test(l),
  );
  assert.ok(existsSync(removed), 'the rebuilt snapshot stored the block again');
});

test('a cancelled ingest stops between slices and saves nothing', async () => {
  const root = fixture();
  const cache = mkdtempSync(join(tmpdir(), 'klc-session-cache-'));
  const s = await open(cache, root);
  const controller = new AbortController();
  await assert.rejects(
    s.ingest(undefined, (p) => {
      if (p.phase === 'prefill') controller.abort();
    }, controller.signal),
    (e: unknown) => e instanceof CancelledError,
  );
  const dirs = readdirSync(cache, { withFileTypes: true }).filter((d) => d.isDirectory()).map((d) => d.name);
  const saved = dirs.flatMap((d) => readdirSync(join(cache, d))).filter((f) => f === 'snapshot.klcs');
  assert.deepEqual(saved, []);
  assert.equal(s.status().repo.state, 'none');
  await s.dispose();
});

test('checkpoints are as dense as the disk budget allows, at every size', async () => {
  const { checkpointSpacing, CHECKPOINT_DISK_BUDGET } = await import('../../../src/engine/session');
  // 6000 tokens, 64 KiB checkpoints: 1024 of them fit the 2 GiB budget, so one every ceil(6000 / 1024) = 6 tokens.
  assert.equal(checkpointSpacing(6000, 64 * 1024), 6, 'a small workspace of a tiny model gets a checkpoint at every file boundary');
  assert.equal(checkpointSpacing(300, 64 * 1024), 1);
  const kimi48b = 20 * (32 * 128 * 128 + 3 * 4096 * 3) * 4;
  for (const tokens of [1_000, 50_000, 1_000_000]) {
    const spacing = checkpointSpacing(tokens, kimi48b);
    const count = Math.ceil(tokens / spacing);
    assert.ok(count * kimi48b <= CHECKPOINT_DISK_BUDGET + kimi48b, `${count} checkpoints of ${kimi48b} bytes fit the budget at ${tokens} tokens`);
  }
  // The 2 GiB budget holds floor(2^31 / 44,892,160) = 47 such checkpoints: one every ceil(1e6 / 47) = 21,277 tokens.
  assert.equal(checkpointSpacing(1_000_000, kimi48b), 21_277);
  assert.equal(checkpointSpacing(1_000, kimi48b), 22);
});

test('ingest slices end at a file boundary only where a checkpoint is due, else run the backend\'s full slice', async () => {
  const root = mkdtempSync(join(tmpdir(), 'klc-session-slices-'));
  mkdirSync(join(root, 'src'));
  for (let f = 0; f < 8; f++) {
    const body = Array.from({ length: 12 }, (_, i) => `export const value${f}_${i} = ${f * 100 + i} * ${i + 3};`).join('\n');
    writeFileSync(join(root, 'src', `part${f}.ts`), `${body}\n`);
  }
  const slicesOf = async (checkpointEvery: number): Promise<{ lengths: number[]; tokens: number; fileEnds: number[] }> => {
    const cache = mkdtempSync(join(tmpdir(), 'klc-session-cache-'));
    const s = await EngineSession.open({ backend: 'reference', cacheDir: cache, workspace: { roots: [root] }, checkpointEvery, log: () => undefined });
    const lengths: number[] = [];
    const prefill = s.model.prefill.bind(s.model);
    s.model.prefill = (state, ids, opts) => {
      lengths.push(ids.length);
      return prefill(state, ids, opts);
    };
    const result = await s.ingest(undefined);
    const fileEnds = s.manifest().map((f) => f.end);
    await s.dispose();
    return { lengths, tokens: result.tokens, fileEnds };
  };
  const rare = await slicesOf(1e9);
  assert.ok(rare.tokens > 2 * 512, `the workspace spans several slices (${rare.tokens} tokens)`);
  // One stop only, at the end of the last file, where new files are appended.
  const full = rare.lengths.slice(0, -2);
  assert.deepEqual(full, full.map(() => 512), `no stops at other file boundaries: ${rare.lengths.join(', ')}`);
  assert.equal(rare.lengths.length, Math.ceil((rare.tokens - rare.lengths[rare.lengths.length - 1]) / 512) + 1);
  assert.equal(rare.lengths.reduce((a, b) => a + b, 0), rare.tokens);
  // Checkpoints every 16 tokens (denser than a slice, as on the CPU backends): one at every file boundary.
  const often = await slicesOf(16);
  assert.equal(often.lengths.reduce((a, b) => a + b, 0), often.tokens);
  let end = 0;
  const ends = often.lengths.map((n) => (end += n));
  assert.deepEqual(ends.slice(0, often.fileEnds.length), often.fileEnds, `slices end at every file: ${often.lengths.join(', ')}`);
  // Checkpoints once per slice (the GPU default): each slice ends at its last file boundary.
  const perSlice = await slicesOf(512);
  assert.equal(perSlice.lengths.reduce((a, b) => a + b, 0), perSlice.tokens);
  assert.ok(perSlice.fileEnds.length === 8 && perSlice.fileEnds[7] - perSlice.fileEnds[0] > 512, `files span more than a slice: ${perSlice.fileEnds.join(', ')}`);
  let start = 0;
  for (const length of perSlice.lengths) {
    const within = perSlice.fileEnds.filter((b) => b > start && b <= start + 512);
    // The last slice runs to the end: a cut at the files' end would cost a slice and, a checkpoint having just been
    // made at `start`, save an append less than one.
    if (start + length === perSlice.tokens && perSlice.tokens - start <= 512) assert.ok(perSlice.fileEnds[7] - start < 512);
    else if (within.length > 0) assert.equal(start + length, within[within.length - 1], `slice at ${start}: ${perSlice.lengths.join(', ')}`);
    else assert.equal(length, Math.min(512, perSlice.tokens - start), `slice at ${start} without a boundary runs whole`);
    start += length;
  }
  assert.ok(perSlice.lengths.length < often.lengths.length, `fewer slices than files: ${perSlice.lengths.join(', ')}`);
});

test('the manifest names every packed file with the hash of its bytes and its span in the context', async () => {
  const root = fixture();
  const cache = mkdtempSync(join(tmpdir(), 'klc-session-cache-'));
  const s = await open(cache, root);
  try {
    assert.deepEqual(s.manifest(), []);
    const r = await s.ingest(undefined);
    const manifest = s.manifest();
    assert.deepEqual(manifest.map((f) => f.path).sort(), ['README.md', 'src/greet.ts', 'src/main.ts', 'src/math.ts'].map((p) => join(root, p)).sort());
    for (const f of manifest) assert.equal(f.sha256, createHash('sha256').update(readFileSync(f.path)).digest('hex'), f.path);
    const { ids } = s.forkRepoState()!;
    for (let i = 1; i < manifest.length; i++) assert.equal(manifest[i].start, manifest[i - 1].end);
    assert.ok(manifest[0].start > 0 && manifest[manifest.length - 1].end < r.tokens, 'the files lie between the preamble and the index');
    const text = s.tokenizer.decode(Array.from(ids.subarray(manifest[1].start, manifest[1].end)));
    assert.ok(text.startsWith(`<file path="${manifest[1].path.slice(root.length + 1)}">\n`), text);
  } finally {
    await s.dispose();
  }
});

test('change reports: stale only when a file differs from what was packed, also when reported during an ingest', async () => {
  const root = fixture();
  const cache = mkdtempSync(join(tmpdir(), 'klc-session-cache-'));
  const s = await open(cache, root);
  try {
    const math = join(root, 'src/math.ts');
    // Reported during the ingest, changed before it read the file: the ingest packed the change.
    let reported = false;
    await s.ingest(undefined, (p) => {
      if (p.phase === 'prefill' && !reported) {
        reported = true;
        void s.markStale([math]);
      }
    });
    assert.ok(reported);
    assert.equal(s.status().repo.state, 'ready', 'a late report of content the ingest already packed');
    await s.markStale([math, join(root, 'src/not-there.ts'), join(root, 'src/math.ts.swp')]);
    assert.equal(s.status().repo.state, 'ready', 'unchanged, or gone and never packed');
    mkdirSync(join(root, 'node_modules/dep'), { recursive: true });
    writeFileSync(join(root, 'node_modules/dep/index.js'), 'module.exports = 1;\n');
    writeFileSync(join(root, 'package-lock.json'), '{}\n');
    writeFileSync(join(root, '.env'), 'TOKEN=x\n');
    await s.markStale([join(root, 'node_modules'), join(root, 'node_modules/dep/index.js'), join(root, 'package-lock.json'), join(root, '.env'), join(root, 'src')]);
    assert.equal(s.status().repo.state, 'ready', 'files the pack leaves out by rule, and a folder whose files are all packed');

    // Changed while the ingest runs, after it read the files.
    let changed = false;
    appendFileSync(join(root, 'README.md'), 'more\n');
    await s.ingest(undefined, (p) => {
      if (p.phase === 'prefill' && !changed) {
        changed = true;
        appendFileSync(math, '// changed during the ingest\n');
        void s.markStale([math]);
      }
    });
    assert.ok(changed);
    assert.equal(s.status().repo.state, 'stale');
    await s.ingest(undefined);
    assert.equal(s.status().repo.state, 'ready');

    writeFileSync(join(root, 'src/new.ts'), 'export const fresh = 1;\n');
    await s.markStale([join(root, 'src/new.ts')]);
    assert.equal(s.status().repo.state, 'stale', 'a new file');
    await s.ingest(undefined);
    mkdirSync(join(root, 'moved-in/deep'), { recursive: true });
    writeFileSync(join(root, 'moved-in/deep/x.ts'), 'export const x = 1;\n');
    await s.markStale([join(root, 'moved-in')]);
    assert.equal(s.status().repo.state, 'stale', 'a folder reported alone, with a new file inside');
    await s.ingest(undefined);
    rmSync(join(root, 'src'), { recursive: true });
    await s.markStale([join(root, 'src')]);
    assert.equal(s.status().repo.state, 'stale', 'a deleted folder that held packed files');
    await s.ingest(undefined);
    await s.markStale([join(root, '.git', 'HEAD')]);
    assert.equal(s.status().repo.state, 'stale', 'a moved git HEAD');
  } finally {
    await s.dispose();
  }
});

test('each sampled question draws a fresh seed unless one is given', async () => {
  const root = fixture();
  const cache = mkdtempSync(join(tmpdir(), 'klc-session-cache-'));
  const s = await open(cache, root);
  try {
    await s.ingest(undefined);
    const hot = { temperature: 2, topP: 1, topK: 0, maxNewTokens: 24 };
    const a = await s.ask({ question: 'Say anything.', sampling: hot });
    const b = await s.ask({ question: 'Say anything.', sampling: hot });
    assert.notEqual(a.text, b.text, 'two unseeded answers at temperature 2 differ');
    const c = await s.ask({ question: 'Say anything.', sampling: { ...hot, seed: 77 } });
    const d = await s.ask({ question: 'Say anything.', sampling: { ...hot, seed: 77 } });
    assert.equal(c.text, d.text, 'the same seed repeats the answer');
  } finally {
    await s.dispose();
  }
});

test('a saved state that passes its checksums but does not fit the model is rebuilt, not used', async () => {
  let message = '';
  await damagedStateIsRebuilt(
    async (dir) => {
      const snap = join(dir, 'snapshot.klcs');
      const saved = await openStateFile(snap);
      const [key, ids, state] = [saved.header.key, await saved.readIds(), await saved.readState()];
      await saved.close();
      const kda = state.layers.findIndex((l) => l.kind === 'kda');
      const layer = state.layers[kda] as KdaLayerState;
      state.layers[kda] = { kind: 'kda', conv: layer.conv, S: layer.S.subarray(0, layer.S.length - 8) };
      await writeStateFile(snap, state, { key, ids });
      message = `does not fit this model (layer ${kda} has ${layer.S.length - 8} recurrent-state values, the model ${layer.S.length})`;
    },
    (l) => l.includes(message),
  );
});

test('over the budget, an edit that grows the last file keeps it and recomputes only the tail, in the same session and in a new one', async () => {
  // Twelve files of 60 to 170 tokens, oldest first; the budget holds about two thirds of them.
  const root = mkdtempSync(join(tmpdir(), 'klc-session-budget-'));
  mkdirSync(join(root, 'src'));
  let t = 1_700_000_000;
  for (let f = 0; f < 12; f++) {
    const lines = Array.from({ length: 4 + ((f * 5) % 9) }, (_, i) => `export const item${f}_${i} = ${f * 31 + i};`);
    writeFileSync(join(root, 'src', `f${f}.ts`), `${lines.join('\n')}\n`);
    utimesSync(join(root, 'src', `f${f}.ts`), t, t);
    t += 100;
  }
  const settings = { roots: [root], maxTokens: 1100 };
  const session = async (cache: string) => EngineSession.open({ backend: 'reference', cacheDir: cache, workspace: settings, checkpointEvery: 16, log: () => undefined });
  for (const fresh of [false, true]) {
    const cache = mkdtempSync(join(tmpdir(), 'klc-session-cache-'));
    for (let f = 0; f < 12; f++) writeFileSync(join(root, 'src', `f${f}.ts`), readFileSync(join(root, 'src', `f${f}.ts`), 'utf8').replace(/\/\/ edit[^\n]*\n/g, ''));
    let s = await session(cache);
    try {
      const first = await s.ingest(settings);
      assert.ok(first.omitted > 0, `over the budget: ${first.files} files packed, ${first.omitted} left out`);
      const before = s.manifest();
      const edited = before[before.length - 1];
      // Longer than any file: the old rule (largest first) would leave the edited file itself out.
      appendFileSync(edited.path, `// edited: ${'the quick brown fox jumps over the lazy dog '.repeat(12)}\n`);
      if (fresh) {
        await s.dispose();
        s = await session(cache);
      }
      const second = await s.ingest(settings);
      const after = s.manifest();
      assert.equal(after[after.length - 1].path, edited.path, 'the edited file is still packed, last');
      const kept = after.slice(0, -1).map((f) => f.path);
      assert.deepEqual(kept, before.slice(0, kept.length).map((f) => f.path), 'the files before it are the first ones of the previous pack, in place');
      assert.ok(kept.length < before.length - 1, 'an unchanged file gave way');
      assert.equal(second.resumedTokens, after[after.length - 2].end, 'resumed at the end of the last unchanged file kept');
    } finally {
      await s.dispose();
    }
  }
});
