/**
 * EngineSession.askBatch with one signal per request (klc serve batches requests from different
 * clients): a fired signal cancels that answer alone, and the others equal ask() of the same request.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { EngineSession } from '../../../src/engine/session';
import { makeWorkspace, SMALL_WORKSPACE, tempDir } from '../client/engine-fixture';

test('a per-request signal cancels only its own answer', async () => {
  const s = await EngineSession.open({ backend: 'reference', cacheDir: tempDir('askbatch-signals'), workspace: { roots: [makeWorkspace(SMALL_WORKSPACE)] }, log: () => {} });
  try {
    await s.ingest(undefined);
    const questions = ['What does twice do?', 'Tell a long story.', 'Where is add?'];
    const reqs = questions.map((question, i) => ({ question, sampling: { maxNewTokens: i === 1 ? 200 : 8 } }));
    const controllers = reqs.map(() => new AbortController());
    let pieces = 0;
    const results = await s.askBatch(reqs, (i) => {
      if (i === 1 && ++pieces === 3) controllers[1].abort();
    }, controllers.map((c) => c.signal));
    assert.equal(results[1].stopReason, 'cancelled');
    assert.ok(results[1].tokens < 200, `${results[1].tokens} tokens`);
    for (const i of [0, 2]) {
      const alone = await s.ask(reqs[i]);
      assert.equal(results[i].text, alone.text, questions[i]);
      assert.equal(results[i].stopReason, alone.stopReason);
    }
  } finally {
    await s.dispose();
  }
});
