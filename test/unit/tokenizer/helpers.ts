import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { formatRanks } from '../../../src/engine/model/tokenizer/ranks';
import { trainByteLevelBpe } from '../../../tools/tokenizer/bpe-trainer';
import { kimiTokenizerConfig } from '../../../tools/tokenizer/kimi-config';

/** Writes a Kimi-format tokenizer folder (tiktoken.model + tokenizer_config.json) for `tokens`. */
export function writeTiktokenDir(tokens: readonly Uint8Array[]): string {
  const dir = mkdtempSync(join(tmpdir(), 'klc-tok-'));
  writeFileSync(join(dir, 'tiktoken.model'), formatRanks(tokens));
  writeFileSync(join(dir, 'tokenizer_config.json'), JSON.stringify(kimiTokenizerConfig(tokens.length, 4096)));
  return dir;
}

/** A second, small vocabulary trained here on prose and code, so parity is not checked on one vocab only. */
export function trainSmallVocab(texts: string[], size = 700): Uint8Array[] {
  return trainByteLevelBpe(texts, size);
}
