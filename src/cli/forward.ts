/**
 * `klc forward`: logits for given token ids, the engine's stable test contract. With --split N the
 * first N tokens run, the state goes through a saved state file and back, and the rest continues
 * from the restored state — what ingest-then-ask does, checkable against a one-pass forward.
 */
import { promises as fs } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { UserError } from '../common/errors';
import { loadModel } from '../engine/model/model';
import { writeSafetensors, type TensorToWrite } from '../engine/model/safetensors';
import { openStateFile, writeStateFile } from '../engine/state/state-file';
import { backendOption, backendUsage, dummyOption, intOption, parseCommandArgs, quantizationOption, quantizationUsage, weightOptions, weightUsage } from './args';

const USAGE = `usage: klc forward (--model DIR | --load-format dummy --model-config FILE) --input-ids IDS.json --out OUT.safetensors [--split N] [--backend B] [--quantization Q]

  IDS.json is an array of token-id arrays; OUT gets float32 logits.<i> of shape [T_i, vocab].
  --model DIR         checkpoint folder (config.json + *.safetensors; tokenizer files not needed)
  --split N           run N tokens, save and restore the state, run the rest from it
${backendUsage}${weightUsage}${quantizationUsage}`;

export async function readIdsFile(file: string, vocab: number): Promise<number[][]> {
  let json: unknown;
  try {
    json = JSON.parse(await fs.readFile(file, 'utf8'));
  } catch (e) {
    throw new UserError(`cannot read ${file}: ${(e as Error).message}. It must be a JSON array of token-id arrays, e.g. [[1,2,3]]`, file);
  }
  if (!Array.isArray(json) || json.length === 0) throw new UserError(`${file} must be a non-empty JSON array of token-id arrays, e.g. [[1,2,3]]`, file);
  return json.map((seq, i) => {
    if (!Array.isArray(seq) || seq.length === 0) throw new UserError(`${file}: sequence ${i} must be a non-empty array of token ids`, file);
    seq.forEach((id, t) => {
      if (!Number.isSafeInteger(id) || id < 0 || id >= vocab) {
        throw new UserError(`${file}: sequence ${i}, position ${t}: ${JSON.stringify(id)} is not a token id in [0, ${vocab})`, file);
      }
    });
    return seq as number[];
  });
}

export async function run(argv: string[]): Promise<void> {
  const { values } = parseCommandArgs(
    argv,
    { model: { type: 'string' }, 'input-ids': { type: 'string' }, out: { type: 'string' }, split: { type: 'string' }, backend: { type: 'string' }, ...weightOptions, quantization: { type: 'string' } },
    USAGE,
    false,
  );
  const dummy = dummyOption(values);
  for (const required of [...(dummy ? [] : ['model']), 'input-ids', 'out']) {
    if (!values[required]) throw new UserError(`--${required} is required. Run 'klc forward --help' for the options.`);
  }
  const split = intOption(values, 'split', 0);
  const model = await loadModel(dummy ? dummy.configFile : resolve(values.model as string), { backend: backendOption(values), dummy, quantization: quantizationOption(values) });
  const sequences = await readIdsFile(resolve(values['input-ids'] as string), model.config.vocabSize);
  const vocab = model.config.vocabSize;
  const tensors: TensorToWrite[] = [];
  const scratch = await fs.mkdtemp(join(tmpdir(), 'klc-forward-'));
  try {
    for (const [i, seq] of sequences.entries()) {
      const ids = Int32Array.from(seq);
      const logits = new Float32Array(ids.length * vocab);
      let state = model.newState();
      const n = split === undefined ? ids.length : Math.min(split, ids.length);
      if (n > 0) logits.set(await model.prefill(state, ids.subarray(0, n), { logits: 'all' }), 0);
      if (n < ids.length) {
        if (split !== undefined) {
          const file = join(scratch, `seq-${i}.klcs`);
          model.syncState(state);
          await writeStateFile(file, state, { key: { modelId: 'forward', packerVersion: '', tokenizerId: '' }, ids, latent: model.latentReader(state), latentDtype: model.latentDtype(state) });
          const opened = await openStateFile(file);
          try {
            state = await opened.readState(undefined, (ls, rows, count) => model.appendLatentRows(ls, rows, count));
            model.backend.importState(state);
          } finally {
            await opened.close();
          }
        }
        logits.set(await model.prefill(state, ids.subarray(n), { logits: 'all' }), n * vocab);
      }
      tensors.push({ name: `logits.${i}`, dtype: 'F32', shape: [ids.length, vocab], data: logits });
    }
  } finally {
    await fs.rm(scratch, { recursive: true, force: true });
  }
  await writeSafetensors(resolve(values.out as string), tensors, { backend: model.backend.name });
  process.stderr.write(`wrote ${tensors.length} sequence(s) of logits to ${values.out} (${model.backend.name})\n`);
}
