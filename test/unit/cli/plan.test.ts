/**
 * `klc plan` as a user runs it: one JSON object with --json (the shape issue 11 asks for), a table
 * otherwise, and a one-line error naming the option for bad input.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

const repoRoot = resolve(__dirname, '..', '..', '..');
const CONFIG = join(repoRoot, 'assets', 'configs', 'kimi-linear-48b-a3b-instruct.json');

function klc(...args: string[]) {
  return spawnSync(process.execPath, ['--import', 'tsx', join(repoRoot, 'src/cli.ts'), 'plan', ...args], { encoding: 'utf8', cwd: repoRoot });
}

test('--json prints the plan for the published config on an 80 GB card at 128k tokens', () => {
  const r = klc('--model-config', CONFIG, '--context', '128k', '--gpu-memory', '80GB', '--json');
  assert.equal(r.status, 0, r.stderr);
  const plan = JSON.parse(r.stdout);
  // fp8 weights 50,017,362,304 (memory-plan.test.ts); bf16 MLA cache at 131,072 tokens 1,996,488,704; KDA state 44,892,160;
  // 8 forks × 103,612,416 = 828,899,328; workspace of an 8192 slice 9,706,791,200 + the dequantization buffer 452,984,832
  // = 10,159,776,032 → 63,047,418,528.
  assert.deepEqual(plan, {
    fits: true,
    quantization: 'fp8',
    contextTokens: 131_072,
    forks: 8,
    sliceTokens: 8192,
    gpuMemory: 80e9,
    usable: 76e9,
    gpu: { weights: 50_017_362_304, mlaCache: 1_996_488_704, kdaState: 44_892_160, forks: 828_899_328, workspace: 10_159_776_032, total: 63_047_418_528 },
    host: { experts: 0 },
    offloadedLayers: [],
    advice: plan.advice,
  });
  assert.match(plan.advice, /^fits at fp8: 63\.05 GB of 76\.00 GB usable \(12\.95 GB spare\)/);
});

test('the table names the scheme, every component and the verdict', () => {
  const r = klc('--model-config', CONFIG, '--context', '1M', '--gpu-memory', '14GB', '--quantization', 'int4', '--forks', '0');
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /^quantization {3}int4$/m);
  // bf16 rows: 7 × (1,207,959,552 + 134,217,728) = 9,395,240,960. Every expert offloaded at 512-token slices still
  //   needs 2,261,640,448 + 9,395,240,960 + 44,892,160 + 2,343,790,880 + dequantization 452,984,832 = 14,498,549,280 > 13.3e9.
  assert.match(r.stdout, /MLA cache +9\.40 GB +9,395,240,960 B/);
  assert.match(r.stdout, /^fits {11}no$/m);
  assert.match(r.stdout, /^advice {9}does not fit: /m);
});

test('a checkpoint folder whose config.json says it is stored quantized is planned as stored, and quantizing it again is refused', () => {
  const dir = mkdtempSync(join(tmpdir(), 'klc-plan-'));
  try {
    // The community AWQ INT4 download's quantization_config (compressed-tensors, pack-quantized, group 32).
    const quantization_config = { quant_method: 'compressed-tensors', format: 'pack-quantized', config_groups: { group_0: { targets: ['Linear'], weights: { num_bits: 4, type: 'int', strategy: 'group', group_size: 32, symmetric: true } } } };
    writeFileSync(join(dir, 'config.json'), JSON.stringify({ ...JSON.parse(readFileSync(CONFIG, 'utf8')), quantization_config }));
    // As int4 under auto at 24 GB and 128k (memory-plan.test.ts): 12 layers' experts offloaded, 22,433,781,280 bytes.
    const json = klc('--model', dir, '--context', '128k', '--gpu-memory', '24GB', '--json');
    assert.equal(json.status, 0, json.stderr);
    const plan = JSON.parse(json.stdout);
    assert.deepEqual([plan.quantization, plan.offloadedLayers.length, plan.gpu.total], ['int4', 12, 22_433_781_280]);
    // At 80 GB a bf16 checkpoint would be planned at fp8; this one stays INT4.
    const big = klc('--model', dir, '--context', '128k', '--gpu-memory', '80GB');
    assert.equal(big.status, 0, big.stderr);
    assert.match(big.stdout, /^quantization {3}int4 \(as stored: INT4\)$/m);
    const again = klc('--model', dir, '--context', '128k', '--gpu-memory', '80GB', '--quantization', 'int8');
    assert.equal(again.status, 1);
    assert.match(again.stderr, /already quantized \(stored as INT4\): --quantization int8 needs a bf16 or fp32 checkpoint/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('bad input is one line naming the option', () => {
  const memory = klc('--model-config', CONFIG, '--context', '1M', '--gpu-memory', 'lots');
  assert.equal(memory.status, 1);
  assert.match(memory.stderr, /^klc plan: --gpu-memory must be a size such as 24GB/);
  const context = klc('--model-config', CONFIG, '--context', '2M', '--gpu-memory', '80GB');
  assert.match(context.stderr, /--context must be 1 to 1048576 tokens/);
  const both = klc('--model', repoRoot, '--model-config', CONFIG, '--context', '1M', '--gpu-memory', '80GB');
  assert.match(both.stderr, /either --model DIR or --model-config FILE/);
  const scheme = klc('--model-config', CONFIG, '--context', '1M', '--gpu-memory', '80GB', '--quantization', 'q4');
  assert.match(scheme.stderr, /--quantization must be one of auto, none, fp8, int8, int4/);
});

test('--model reads the checkpoint folder\'s config.json', () => {
  const r = klc('--model', join(repoRoot, 'assets', 'tiny-model'), '--context', '4096', '--gpu-memory', '2GiB', '--json');
  assert.equal(r.status, 0, r.stderr);
  const plan = JSON.parse(r.stdout);
  assert.equal(plan.fits, true);
  assert.equal(plan.quantization, 'none');
});
