import { promises as fs } from 'node:fs';
import { join } from 'node:path';
import { UserError } from '../../../common/errors';
import { bundledTokenizerDir } from './assets';
import { HfJsonTokenizer, type TokenizerJson } from './hf';
import { parseRanks } from './ranks';
import { kimiSpecialTokens } from './special-tokens';
import { TiktokenTokenizer } from './tiktoken';
import type { Tokenizer } from './types';

export type { Tokenizer } from './types';

/**
 * Loads the tokenizer of a checkpoint folder: Kimi's `tiktoken.model` + `tokenizer_config.json`
 * when present, else a HF `tokenizer.json`. Without a folder, the tokenizer bundled with the
 * project (assets/tokenizer), which the bundled tiny checkpoint uses.
 */
export async function loadTokenizer(dir?: string): Promise<Tokenizer> {
  const folder = dir ?? bundledTokenizerDir();
  const ranksFile = join(folder, 'tiktoken.model');
  const configFile = join(folder, 'tokenizer_config.json');
  const jsonFile = join(folder, 'tokenizer.json');
  if (await exists(ranksFile)) {
    const ranksBytes = await readRequired(ranksFile);
    const configBytes = await readRequired(configFile, 'It names the special tokens that tiktoken.model needs.');
    const ranks = parseRanks(ranksBytes.toString('utf8'), ranksFile);
    const special = kimiSpecialTokens(parseJson(configBytes, configFile), ranks.bytes.length, configFile);
    return new TiktokenTokenizer(ranks, special, folder, ranksBytes);
  }
  if (await exists(jsonFile)) {
    const jsonBytes = await readRequired(jsonFile);
    const configBytes = (await exists(configFile)) ? await readRequired(configFile) : Buffer.from('{}');
    const json = parseJson(jsonBytes, jsonFile);
    if (typeof json !== 'object' || json === null || typeof (json as { model?: unknown }).model !== 'object') {
      throw new UserError(`${jsonFile} has no "model" section, so it is not a HF tokenizer file. Re-download it from the checkpoint.`, jsonFile);
    }
    const config = parseJson(configBytes, configFile);
    return new HfJsonTokenizer(json as TokenizerJson, (config ?? {}) as object, folder, Buffer.concat([jsonBytes, Buffer.from([0]), configBytes]));
  }
  throw new UserError(
    dir === undefined
      ? `the bundled tokenizer is missing from ${folder} (no tiktoken.model). Reinstall, or regenerate it with: npm run tokenizer:train`
      : `${folder} has no tokenizer: expected tiktoken.model + tokenizer_config.json (Kimi) or tokenizer.json (HF). Point --model / kimiLinear.modelPath at the checkpoint folder.`,
    folder,
  );
}

async function exists(file: string): Promise<boolean> {
  return fs.stat(file).then((s) => s.isFile(), () => false);
}

async function readRequired(file: string, why = ''): Promise<Buffer> {
  try {
    return await fs.readFile(file);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new UserError(`cannot read ${file} (${code ?? String(e)}).${why ? ` ${why}` : ''} Check that the checkpoint folder is complete and readable.`, file);
  }
}

function parseJson(bytes: Buffer, file: string): unknown {
  try {
    return JSON.parse(bytes.toString('utf8'));
  } catch (e) {
    throw new UserError(`${file} is not valid JSON (${e instanceof Error ? e.message : String(e)}). Re-download it from the checkpoint.`, file);
  }
}
