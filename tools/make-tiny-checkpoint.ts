/**
 * Generates the bundled tiny checkpoint in assets/tiny-model/: a Kimi Linear model in the
 * published Hugging Face layout (config.json, model.safetensors in bf16, the bundled tokenizer),
 * with seeded random weights. It exists so that everything — packing, ingest, state caching,
 * answering, the extension — runs on any machine in seconds. Its answers are not meaningful.
 *
 *   npx tsx tools/make-tiny-checkpoint.ts [outDir]
 *
 * Deterministic: the same script writes byte-identical files.
 */
import { join, resolve } from 'node:path';
import { writeKimiCheckpoint, type KimiShape } from './kimi-checkpoint';

export const TINY_SHAPE: KimiShape = {
  hidden: 128,
  kdaHeads: 4,
  kdaDim: 32,
  mlaHeads: 4,
  nope: 32,
  rope: 16,
  vDim: 32,
  kvLora: 64,
  experts: 8,
  topK: 2,
  moeInter: 64,
  denseInter: 256,
  layers: ['kda', 'kda', 'kda', 'mla'],
  // Small on purpose: the tiny model is a demo that must ingest a workspace in seconds on the
  // reference backend, so its context (and hence the packed workspace) is capped here.
  maxLength: 8192,
};

if (require.main === module) {
  const out = resolve(process.argv[2] ?? join(__dirname, '..', 'assets', 'tiny-model'));
  writeKimiCheckpoint(
    out,
    TINY_SHAPE,
    { seed: 20261128, embed: (normal) => () => 0.5 * normal(), linear: (normal) => () => 0.08 * normal() },
    { sharded: false, generator: 'tools/make-tiny-checkpoint.ts' },
  ).then((params) => console.log(`wrote ${out}: ${params.toLocaleString('en-US')} parameters`));
}
