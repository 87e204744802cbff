// The table test/gpu/run-side-by-side.sh prints, on figures whose ratios are worked out by hand.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { sideBySide } from '../../gpu/side-by-side';

test('side by side: tokens/s from our raw prefill and the FLOP floor, transformers\' 27-layer estimate, their ratio, TPOT against its floor', () => {
  const table = sideBySide(
    {
      card: 'GPU 0: NVIDIA H200',
      contexts: [
        // 30,000 tokens in 1.5 s = 20.0 k tok/s; floor 0.5 s = 60.0 k tok/s; TPOT 6 ms over a 2.4 ms floor = 2.50×.
        { context: 32768, tokens: 30000, rawPrefillSeconds: 1.5, prefillFloorSeconds: 0.5, tpotMs: 6, tpotFloorMs: 2.4, batchTokensPerSecond: 300 },
        { context: 131072, tokens: 130000, rawPrefillSeconds: 10, tpotMs: 7 },
      ],
    },
    {
      // 32,768 tokens in 2048 ms = 16.0 k tok/s: ours is 20.0 / 16.0 = 1.25×.
      phases: { '32768': { full_27L: { prefill_ms_by_kind: 2048, tpot_ms_by_kind: 150.25 } }, '131072': { skipped: 'time budget' } },
    },
  );
  const rows = table.split('\n').filter((l) => /^\| \d/.test(l));
  assert.equal(rows.length, 2);
  assert.equal(rows[0], '| 32,768 | 20.0 k tok/s | 60.0 k tok/s | 16.0 k tok/s | 1.25× | 6.00 ms (2.50×) | 2.40 ms | 150.3 ms | 300 tok/s |');
  assert.equal(rows[1], '| 131,072 | 13.0 k tok/s | — | — | transformers skipped | 7.00 ms | — | — | — |');
  assert.match(table, /NVIDIA H200/);
  assert.match(table, /KDA kernels not recorded/);
});

test('side by side: the header says whether transformers ran fla\'s KDA kernels or its torch fallback', () => {
  const header = (kda: string) => sideBySide({ contexts: [] }, { kda_bindings: { 'kda_chunk (prefill)': kda } }).split('\n')[0];
  assert.match(header('fla.ops.kda.chunk.chunk_kda'), /\(KDA: fla \(fla\.ops\.kda\.chunk\.chunk_kda\)\)$/);
  assert.match(header('transformers.models.kimi_linear.modeling_kimi_linear.chunk_kimi_delta_attention'), /not fla: transformers is slower here than with fla\)$/);
});
