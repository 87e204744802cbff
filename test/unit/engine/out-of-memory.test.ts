/**
 * Out of memory after loading: an allocation failure injected (with the native library's error
 * code) into the layers during ingest, during one answer and during answers decoded together
 * becomes a UserError saying what to change, and the next request on the same session works and
 * gives the answer it gives without the failure.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isUserError } from '../../../src/common/errors';
import type { Backend } from '../../../src/engine/backends/backend';
import { EngineSession } from '../../../src/engine/session';

function workspace(): string {
  const root = mkdtempSync(join(tmpdir(), 'klc-oom-ws-'));
  for (let i = 0; i < 6; i++) writeFileSync(join(root, `m${i}.ts`), `export function f${i}(x: number): number {\n  return x * ${i} + ${i * i};\n}\n`.repeat(8));
  return root;
}

/** Makes the backend's `op` fail like klc_alloc does when the GPU is full, `times` times from its `after`-th call. */
function injectOom(backend: Backend, op: 'mlaPrefill' | 'mlaDecode' | 'moe', after: number, times = 1): void {
  const original = backend[op].bind(backend) as (...args: unknown[]) => unknown;
  let calls = 0;
  let left = times;
  (backend as unknown as Record<string, unknown>)[op] = (...args: unknown[]) => {
    if (calls++ >= after && left > 0) {
      left--;
      throw Object.assign(new Error('allocating 512 MiB of GPU memory failed: out of GPU memory (cudaErrorMemoryAllocation)'), { code: 'OOM' });
    }
    return original(...args);
  };
}

const greedy = { temperature: 0, maxNewTokens: 5 };

test('an out-of-memory during ingest, ask and askBatch is a user message; the session keeps serving', async () => {
  const root = workspace();
  const session = await EngineSession.open({ backend: 'reference', cacheDir: mkdtempSync(join(tmpdir(), 'klc-oom-cache-')), workspace: { roots: [root] } });
  try {
    const backend = session.model.backend;
    injectOom(backend, 'mlaPrefill', 1);
    const failed = await session.ingest(undefined).then(() => null, (e: unknown) => e);
    assert.ok(isUserError(failed), `ingest: ${String(failed)}`);
    assert.match((failed as Error).message, /out of memory while ingesting .*Lower the context budget .*klc plan/);
    assert.equal(session.status().repo.state, 'none', 'the failed ingest left no repository state behind');

    const ingest = await session.ingest(undefined);
    assert.equal(ingest.upToDate, false);
    const expected = await session.ask({ question: 'What does f3 return?', sampling: greedy });

    injectOom(backend, 'mlaDecode', 2);
    await assert.rejects(session.ask({ question: 'What does f3 return?', sampling: greedy }), (e: unknown) => isUserError(e) && /out of memory while answering/.test((e as Error).message));
    assert.equal((await session.ask({ question: 'What does f3 return?', sampling: greedy })).text, expected.text);

    injectOom(backend, 'moe', 12);
    const requests = [0, 1, 2].map((i) => ({ question: `What does f${i} return?`, sampling: greedy }));
    await assert.rejects(session.askBatch(requests), (e: unknown) => isUserError(e) && /out of memory while answering 3 questions together/.test((e as Error).message));
    const again = await session.askBatch(requests);
    assert.equal(again.length, 3);
    assert.equal(again[0].text, (await session.ask(requests[0])).text);
  } finally {
    await session.dispose();
  }
});
