/**
 * The onnx backend through loadModel: `auto` prefers it over the reference, another KDA chunk
 * length builds its sessions on first use and still equals the reference, and bad input or an
 * unsupported config is refused with a user error that names the problem.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadModel } from '../../../src/engine/model/model';
import { isUserError } from '../../../src/common/errors';
import { relError, TINY_DIR } from '../../golden/golden-data';

test('auto picks onnx when no CUDA backend loads, and says so', async () => {
  const lines: string[] = [];
  const model = await loadModel(TINY_DIR, { backend: 'auto', log: (l) => lines.push(l) });
  try {
    if (model.backend.name !== 'cuda') {
      assert.equal(model.backend.name, 'onnx');
      assert.ok(lines.some((l) => l.startsWith('backend auto: using onnx on CPU')), lines.join('\n'));
    }
  } finally {
    await model.dispose();
  }
});

test('a KDA chunk of 32 builds its sessions on demand and equals the reference', async () => {
  const onnx = await loadModel(TINY_DIR, { backend: 'onnx', log: () => {} });
  const ref = await loadModel(TINY_DIR, { backend: 'reference' });
  try {
    const ids = Int32Array.from({ length: 90 }, (_, i) => (i * 37) % 1000);
    const a = await onnx.prefill(onnx.newState(), ids, { chunk: 32, logits: 'all' });
    const b = await ref.prefill(ref.newState(), ids, { chunk: 32, logits: 'all' });
    assert.ok(relError(a, b) < 1e-5, `${relError(a, b)}`);
  } finally {
    await onnx.dispose();
    await ref.dispose();
  }
});

test('a token id outside the vocabulary is a user error naming its position', async () => {
  const model = await loadModel(TINY_DIR, { backend: 'onnx', log: () => {} });
  try {
    await assert.rejects(model.prefill(model.newState(), Int32Array.of(3, 1024)), (e: Error) => isUserError(e) && /token id 1024 at position 1/.test(e.message));
  } finally {
    await model.dispose();
  }
});

test('group-limited routing is refused with the config file named', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'klc-onnx-groups-'));
  const config = JSON.parse(readFileSync(join(TINY_DIR, 'config.json'), 'utf8'));
  writeFileSync(join(dir, 'config.json'), JSON.stringify({ ...config, num_expert_group: 2, topk_group: 1 }));
  copyFileSync(join(TINY_DIR, 'model.safetensors'), join(dir, 'model.safetensors'));
  await assert.rejects(loadModel(dir, { backend: 'onnx', log: () => {} }), (e: Error) => isUserError(e) && /num_expert_group = 2/.test(e.message) && e.message.includes(dir));
});

test("forked states decode independently: each fork's MLA rows follow it", async () => {
  const onnx = await loadModel(TINY_DIR, { backend: 'onnx', log: () => {} });
  const ref = await loadModel(TINY_DIR, { backend: 'reference' });
  try {
    const ids = Int32Array.from({ length: 40 }, (_, i) => (i * 53) % 1000);
    const run = async (m: typeof onnx) => {
      const base = m.newState();
      await m.prefill(base, ids, { logits: 'none' });
      await m.decode(base, 7);
      const fork = m.forkState(base);
      const a = await m.decode(base, 11);
      const b = await m.decode(fork, 12);
      const c = await m.decode(fork, 13);
      return [a, b, c];
    };
    const got = await run(onnx);
    const want = await run(ref);
    got.forEach((g, i) => assert.ok(relError(g, want[i]) < 1e-5, `step ${i}: ${relError(g, want[i])}`));
  } finally {
    await onnx.dispose();
    await ref.dispose();
  }
});
