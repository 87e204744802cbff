import { UserError } from '../../../common/errors';

/**
 * A tiktoken mergeable-ranks table. Token byte strings are held as "binary" strings (one char per
 * byte, code 0..255) because V8 hashes and slices those cheaply, which is what rank lookup during
 * BPE needs; `bytes[rank]` gives the same token as bytes for decoding.
 */
export interface Ranks {
  readonly byBytes: ReadonlyMap<string, number>;
  readonly bytes: readonly Uint8Array[];
}

const LINE = /^([A-Za-z0-9+/]*={0,2}) (\d+)$/;

/**
 * Parses the text of a `tiktoken.model` file: one token per line, "base64(bytes) rank". Ranks must
 * be exactly 0..n-1 (special ids are numbered from n on, so a gap or duplicate would let an
 * ordinary token and a special token share an id), and all 256 single bytes must be present so
 * that every input can be encoded.
 */
export function parseRanks(text: string, file: string): Ranks {
  const byBytes = new Map<string, number>();
  const bytes: Uint8Array[] = [];
  const fix = 'Re-download the tokenizer files of the checkpoint.';
  let lineNo = 0;
  for (const raw of text.split('\n')) {
    lineNo++;
    const line = raw.endsWith('\r') ? raw.slice(0, -1) : raw;
    if (line === '') continue;
    const m = LINE.exec(line);
    if (!m) {
      throw new UserError(`${file}:${lineNo}: expected "base64(bytes) rank", found ${JSON.stringify(line.slice(0, 60))}. ${fix}`, file);
    }
    const token = Buffer.from(m[1], 'base64');
    if (token.length === 0) throw new UserError(`${file}:${lineNo}: a token has no bytes. ${fix}`, file);
    const rank = Number(m[2]);
    const key = token.toString('latin1');
    if (byBytes.has(key)) throw new UserError(`${file}:${lineNo}: token ${m[1]} appears twice. ${fix}`, file);
    if (bytes[rank] !== undefined) throw new UserError(`${file}:${lineNo}: rank ${rank} appears twice. ${fix}`, file);
    byBytes.set(key, rank);
    bytes[rank] = new Uint8Array(token);
  }
  if (byBytes.size === 0) throw new UserError(`${file} has no tokens. ${fix}`, file);
  for (let r = 0; r < bytes.length; r++) {
    if (bytes[r] === undefined) throw new UserError(`${file}: rank ${r} is missing (ranks must run 0..${bytes.length - 1} without gaps). ${fix}`, file);
  }
  for (let b = 0; b < 256; b++) {
    if (!byBytes.has(String.fromCharCode(b))) {
      throw new UserError(`${file}: the single byte 0x${b.toString(16).padStart(2, '0')} has no rank, so some text could not be encoded. ${fix}`, file);
    }
  }
  return { byBytes, bytes };
}

/** Serializes ranks in the `tiktoken.model` format (the inverse of {@link parseRanks}). */
export function formatRanks(tokens: readonly Uint8Array[]): string {
  return tokens.map((t, rank) => `${Buffer.from(t).toString('base64')} ${rank}\n`).join('');
}
