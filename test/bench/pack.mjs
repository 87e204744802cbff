// Benchmark of `klc pack` against repomix packing the same folder in the same run.
// Usage: npm run bench:pack [-- DIR] [--runs N] [--model DIR]
// Without DIR it packs a corpus copied from installed npm packages (see corpus.mjs): thousands of
// real JS/TS/CSS/Markdown files, available offline after `npm install`.
// Prints files, tokens and seconds of both tools, the speed ratio, and which files each selected.
// It never fails on time; it fails only if a tool itself fails.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { buildCorpus, CORPUS_PACKAGES } from './corpus.mjs';

const projectRoot = resolve(import.meta.dirname, '..', '..');
const { values, positionals } = parseArgs({
  options: { runs: { type: 'string', default: '1' }, model: { type: 'string' } },
  allowPositionals: true,
});
const runs = Math.max(1, Number(values.runs));
const work = mkdtempSync(join(tmpdir(), 'klc-bench-'));

function timed(label, command, args, cwd) {
  const started = performance.now();
  const r = spawnSync(command, args, { cwd, encoding: 'utf8', maxBuffer: 64 << 20 });
  const seconds = (performance.now() - started) / 1000;
  if (r.status !== 0) {
    console.error(`${label} failed (exit ${r.status}):\n${r.stderr}\n${r.stdout}`);
    process.exit(1);
  }
  return { seconds, stdout: r.stdout };
}

/** Best of `runs` wall-clock times of a whole CLI process, startup included, as a user sees it. */
function best(label, command, args, cwd) {
  let fastest;
  for (let i = 0; i < runs; i++) {
    const r = timed(label, command, args, cwd);
    if (!fastest || r.seconds < fastest.seconds) fastest = r;
  }
  return fastest;
}

try {
  let target = positionals[0] ? resolve(positionals[0]) : undefined;
  let described = target;
  if (!target) {
    target = join(work, 'corpus');
    const n = buildCorpus(join(projectRoot, 'node_modules'), target);
    described = `corpus of ${n} files copied from node_modules/{${CORPUS_PACKAGES.join(',')}}`;
  }
  const model = values.model ? ['--model', resolve(values.model)] : [];
  const klcBin = join(projectRoot, 'bin', 'klc.js');
  const repomixBin = join(projectRoot, 'node_modules', 'repomix', 'bin', 'repomix.cjs');

  const manifestBudget = join(work, 'klc-budget.json');
  const manifestAll = join(work, 'klc-all.json');
  // JSON output names every file as a key, so the file list cannot be confused with file content.
  const repomixOut = join(work, 'repomix-output.json');
  const klcBudget = best('klc pack', process.execPath, [klcBin, 'pack', target, '--manifest', manifestBudget, ...model], target);
  const klcAll = best('klc pack (no budget)', process.execPath, [klcBin, 'pack', target, '--max-tokens', String(2 ** 40), '--manifest', manifestAll, ...model], target);
  const repomix = best('repomix', process.execPath, [repomixBin, target, '--output', repomixOut, '--style', 'json'], target);

  const budget = JSON.parse(readFileSync(manifestBudget, 'utf8'));
  const all = JSON.parse(readFileSync(manifestAll, 'utf8'));
  const repomixText = readFileSync(repomixOut, 'utf8');
  const repomixFiles = new Set(Object.keys(JSON.parse(repomixText).files));
  const klcFiles = new Set(all.files.map((f) => f.path));
  const omittedReason = new Map(all.omitted.map((o) => [o.path, o.reason]));

  const both = [...klcFiles].filter((p) => repomixFiles.has(p));
  const onlyKlc = [...klcFiles].filter((p) => !repomixFiles.has(p)).sort();
  const onlyRepomix = [...repomixFiles].filter((p) => !klcFiles.has(p)).sort();
  const whyNot = {};
  for (const p of onlyRepomix) {
    const why = omittedReason.get(p) ?? (/(^|\/)(dist|build|out|coverage|node_modules)\//.test(p) ? 'build output' : 'default exclude');
    (whyNot[why] ??= []).push(p);
  }
  // eslint-disable-next-line no-control-regex
  const repomixTokens = /Total Tokens: ([\d,]+)/.exec(repomix.stdout.replace(/\x1b\[[0-9;]*m/g, ''))?.[1];

  const fmt = (s) => s.toFixed(2).padStart(7);
  const lines = [
    `target        ${described}`,
    `machine       ${process.platform} ${process.arch}, node ${process.version}, best of ${runs} run(s), wall clock incl. process start`,
    '',
    `klc pack      ${fmt(klcBudget.seconds)} s  ${budget.files.length} files packed, ${budget.totalTokens} tokens (budget 1,000,000; ${budget.omitted.filter((o) => o.reason === 'over-budget').length} over budget)`,
    `klc pack all  ${fmt(klcAll.seconds)} s  ${all.files.length} files packed, ${all.totalTokens} tokens (no budget)`,
    `repomix       ${fmt(repomix.seconds)} s  ${repomixFiles.size} files packed${repomixTokens ? `, ${repomixTokens} tokens` : ''}, ${(repomixText.length / 1e6).toFixed(1)} MB output`,
    '',
    `speed-up      ${(repomix.seconds / klcBudget.seconds).toFixed(2)}x with the budget, ${(repomix.seconds / klcAll.seconds).toFixed(2)}x without (repomix seconds / klc seconds; goal >= 2x)`,
    '',
    `selection     both ${both.length}, only klc ${onlyKlc.length}, only repomix ${onlyRepomix.length}`,
    `klc omitted   ${Object.entries(count(all.omitted.map((o) => o.reason))).map(([k, v]) => `${k} ${v}`).join(', ') || 'none'}`,
    `only repomix  ${onlyRepomix.length === 0 ? 'none' : 'klc left them out as:'}`,
    ...Object.entries(whyNot).sort((a, b) => b[1].length - a[1].length).map(([k, v]) => `  ${k.padEnd(16)} ${String(v.length).padStart(5)}  e.g. ${v.slice(0, 3).join(', ')}`),
    ...(onlyKlc.length > 0 ? [`only klc      e.g. ${onlyKlc.slice(0, 5).join(', ')}`] : []),
  ];
  console.log(lines.join('\n'));
} finally {
  rmSync(work, { recursive: true, force: true });
}

function count(items) {
  const out = {};
  for (const i of items) out[i] = (out[i] ?? 0) + 1;
  return out;
}
