/**
 * Generates a larger synthetic Kimi Linear checkpoint (≈178M parameters) for benchmarks: the
 * published Hugging Face layout with one bf16 safetensors shard per layer plus
 * model.safetensors.index.json, config.json and the bundled tokenizer. Layers 1–3 and 5–7
 * (1-based) are KDA, 4 and 8 MLA; layer 0's FFN is dense, the rest MoE (8 experts, top 2, one
 * shared). Seeded random weights, so the same command writes byte-identical files; the answers
 * of such a model mean nothing, only its shapes and cost are real.
 *
 *   npx tsx tools/make-synthetic-checkpoint.ts [outDir]     (default .cache/synthetic-kimi-178m)
 */
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { writeKimiCheckpoint, type KimiShape } from './kimi-checkpoint';

export const SYNTHETIC_DIR = resolve(__dirname, '..', '.cache', 'synthetic-kimi-178m');

const SHAPE: KimiShape = {
  hidden: 1024,
  kdaHeads: 8,
  kdaDim: 128,
  mlaHeads: 8,
  nope: 128,
  rope: 64,
  vDim: 128,
  kvLora: 512,
  experts: 8,
  topK: 2,
  moeInter: 512,
  denseInter: 2816,
  layers: ['kda', 'kda', 'kda', 'mla', 'kda', 'kda', 'kda', 'mla'],
  maxLength: 1048576,
};

/** Writes the checkpoint into `out` unless a complete one is there; returns the parameter count written (0 if it existed). */
export async function makeSyntheticCheckpoint(out = SYNTHETIC_DIR): Promise<number> {
  if (existsSync(join(out, 'model.safetensors.index.json'))) return 0;
  return writeKimiCheckpoint(
    out,
    SHAPE,
    {
      seed: 20261128,
      embed: (normal) => normal,
      // Linear weights scaled by 1/sqrt(fan-in) keep activations of order one through the layers.
      linear: (normal, cols) => () => normal() / Math.sqrt(cols),
    },
    { vocab: 16384, sharded: true, generator: 'tools/make-synthetic-checkpoint.ts' },
  );
}

if (require.main === module) {
  const out = resolve(process.argv[2] ?? SYNTHETIC_DIR);
  makeSyntheticCheckpoint(out).then((n) => {
    console.log(n > 0 ? `wrote ${out}: ${n.toLocaleString('en-US')} parameters` : `${out} already holds a complete checkpoint`);
  });
}
