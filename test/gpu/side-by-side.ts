// Ours and transformers on the same card from one device call (test/gpu/run-side-by-side.sh):
// `klc bench` on the whole 27-layer model with dummy weights (scale.json: src/cli/bench-scale.ts)
// next to ../shared/tools/hf_scale_anchor.py (hf_scale_anchor.json: transformers' own Kimi Linear,
// a 9-layer slice at the real widths, its 27-layer figures scaled per layer kind, as that tool
// reports them). Prints one markdown table, each of our figures beside its floor.
// Usage: node side-by-side.cjs SCALE_JSON HF_ANCHOR_JSON
import { readFileSync } from 'node:fs';

/** The figures of one context in `klc bench --json` (the ones used here). */
export interface OursRow {
  context: number;
  tokens?: number;
  rawPrefillSeconds?: number;
  prefillFloorSeconds?: number;
  ingestSeconds?: number;
  tpotMs?: number;
  tpotFloorMs?: number;
  batchTokensPerSecond?: number;
}

export interface Ours {
  card?: string;
  contexts: OursRow[];
}

/** The parts of hf_scale_anchor.json read here: per context (its `phases`, keyed by the length), and which KDA kernels ran. */
export interface Anchor {
  kda_bindings?: Record<string, string>;
  phases?: Record<string, {
    skipped?: string;
    error?: string;
    full_27L?: { prefill_ms_by_kind?: number; tpot_ms_by_kind?: number };
  }>;
}

const fmt = (x: number | undefined, digits = 0, unit = ''): string => (x === undefined || !Number.isFinite(x) ? '—' : `${x.toFixed(digits)}${unit}`);
const kTok = (tokPerS: number | undefined): string => (tokPerS === undefined || !Number.isFinite(tokPerS) ? '—' : `${(tokPerS / 1000).toFixed(1)} k tok/s`);

/**
 * One row per context of ours: prefill tokens/s of one raw prefill through the product's slices
 * (the tokens the bench packed, a little under the context) and the FLOP floor's tokens/s,
 * transformers' 27-layer prefill estimate at that length, their ratio; TPOT beside its byte floor
 * and transformers' estimate; 8 answers together.
 */
export function sideBySide(ours: Ours, anchor: Anchor): string {
  // Without fla transformers runs KDA in plain torch, far slower than its real speed: the table must say so.
  const kda = anchor.kda_bindings?.['kda_chunk (prefill)'];
  const kernels = kda === undefined ? 'KDA kernels not recorded' : /(^|\.)fla\./.test(kda) ? `KDA: fla (${kda})` : `KDA: ${kda}, not fla: transformers is slower here than with fla`;
  const lines = [
    `ours: klc bench, the whole 27-layer model (${ours.card ?? 'card not recorded'}); transformers: hf_scale_anchor.py, 9 layers scaled to 27 per layer kind (${kernels})`,
    '',
    '| context | prefill, ours | prefill floor | prefill, transformers | ours ÷ transformers | TPOT, ours | TPOT floor | TPOT, transformers | 8 answers together |',
    '|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
  ];
  for (const r of ours.contexts) {
    const tokens = r.tokens ?? r.context;
    const oursTps = r.rawPrefillSeconds ? tokens / r.rawPrefillSeconds : undefined;
    const floorTps = r.prefillFloorSeconds ? tokens / r.prefillFloorSeconds : undefined;
    const phase = anchor.phases?.[String(r.context)];
    const theirMs = phase?.full_27L?.prefill_ms_by_kind;
    const theirTps = theirMs ? r.context / (theirMs / 1000) : undefined;
    const ratio = oursTps !== undefined && theirTps !== undefined ? `${(oursTps / theirTps).toFixed(2)}×` : phase?.skipped ? 'transformers skipped' : phase?.error ? 'transformers failed' : '—';
    const tpotRatio = r.tpotMs !== undefined && r.tpotFloorMs ? ` (${(r.tpotMs / r.tpotFloorMs).toFixed(2)}×)` : '';
    lines.push(
      `| ${r.context.toLocaleString('en-US')} | ${kTok(oursTps)} | ${kTok(floorTps)} | ${kTok(theirTps)} | ${ratio} | ` +
        `${fmt(r.tpotMs, 2, ' ms')}${tpotRatio} | ${fmt(r.tpotFloorMs, 2, ' ms')} | ${fmt(phase?.full_27L?.tpot_ms_by_kind, 1, ' ms')} | ${fmt(r.batchTokensPerSecond, 0, ' tok/s')} |`,
    );
  }
  return lines.join('\n');
}

if (require.main === module) {
  const [scale, hf] = process.argv.slice(2);
  if (!scale || !hf) {
    process.stderr.write('usage: node side-by-side.cjs SCALE_JSON HF_ANCHOR_JSON\n');
    process.exit(2);
  }
  const read = <T>(file: string): T => {
    try {
      return JSON.parse(readFileSync(file, 'utf8')) as T;
    } catch (e) {
      process.stderr.write(`side-by-side: cannot read ${file}: ${e instanceof Error ? e.message : String(e)}\n`);
      process.exit(1);
    }
  };
  process.stdout.write(`${sideBySide(read<Ours>(scale), read<Anchor>(hf))}\n`);
}
