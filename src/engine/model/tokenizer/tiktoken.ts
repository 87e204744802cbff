import { createHash } from 'node:crypto';
import { UserError } from '../../../common/errors';
import { bytePairEncode } from './bpe';
import { kimiPieceRegExp } from './pattern';
import type { Ranks } from './ranks';
import type { Tokenizer } from './types';

const ASCII_ONLY = /^\p{ASCII}*$/u;
const CACHE_LIMIT = 1 << 17;
// ignoreBOM keeps a leading U+FEFF: it is part of the text that was encoded, not a marker.
const utf8 = new TextDecoder('utf-8', { fatal: false, ignoreBOM: true });

/**
 * Kimi's tiktoken-style tokenizer: pieces from Kimi's pattern, each encoded by rank-based BPE.
 *
 * This is implemented here rather than through @huggingface/tokenizers because tiktoken.model has
 * no merges list: HF's BPE model applies merges in list order, and merges derived from ranks do not
 * reproduce tiktoken's rank-ordered merging for every input. Parity with the `tiktoken` library is
 * asserted by the unit tests.
 */
export class TiktokenTokenizer implements Tokenizer {
  readonly id: string;
  readonly vocabSize: number;
  readonly specialTokens: ReadonlyMap<string, number>;
  private readonly specialBytes = new Map<number, Uint8Array>();
  private readonly specialPattern: RegExp | null;
  private readonly pieces = kimiPieceRegExp();
  /** piece (as matched, UTF-16) → its id, or its ids when it takes several tokens. */
  private readonly cache = new Map<string, number | number[]>();

  constructor(
    private readonly ranks: Ranks,
    specialTokens: ReadonlyMap<string, number>,
    private readonly files: string,
    fingerprint: Uint8Array,
  ) {
    this.specialTokens = specialTokens;
    let top = ranks.bytes.length;
    for (const [name, id] of specialTokens) {
      if (id < ranks.bytes.length) throw new Error(`special token ${name} has id ${id}, inside the base vocabulary`);
      this.specialBytes.set(id, new TextEncoder().encode(name));
      top = Math.max(top, id + 1);
    }
    this.vocabSize = top;
    const names = [...specialTokens.keys()].sort((a, b) => b.length - a.length || (a < b ? -1 : 1));
    this.specialPattern = names.length ? new RegExp(names.map(escapeRegExp).join('|'), 'g') : null;
    const hash = createHash('sha256').update(fingerprint);
    for (const [name, id] of [...specialTokens].sort((a, b) => a[1] - b[1])) hash.update(`\0${id}\0${name}`);
    this.id = `tiktoken:${hash.digest('hex').slice(0, 32)}`;
  }

  encode(text: string): number[] {
    const out: number[] = [];
    if (!this.specialPattern) {
      this.encodeOrdinaryInto(text, out);
      return out;
    }
    let from = 0;
    this.specialPattern.lastIndex = 0;
    for (let m = this.specialPattern.exec(text); m; m = this.specialPattern.exec(text)) {
      if (m.index > from) this.encodeOrdinaryInto(text.slice(from, m.index), out);
      out.push(this.specialTokens.get(m[0])!);
      from = m.index + m[0].length;
    }
    if (from < text.length) this.encodeOrdinaryInto(text.slice(from), out);
    return out;
  }

  encodeOrdinary(text: string): number[] {
    const out: number[] = [];
    this.encodeOrdinaryInto(text, out);
    return out;
  }

  private encodeOrdinaryInto(text: string, out: number[]): void {
    const re = this.pieces;
    const byBytes = this.ranks.byBytes;
    re.lastIndex = 0;
    for (let m = re.exec(text); m; m = re.exec(text)) {
      const piece = m[0];
      const hit = this.cache.get(piece);
      if (hit !== undefined) {
        if (typeof hit === 'number') out.push(hit);
        else for (let i = 0; i < hit.length; i++) out.push(hit[i]);
        continue;
      }
      // An ASCII piece is already its own binary string; others go through UTF-8.
      const binary = ASCII_ONLY.test(piece) ? piece : Buffer.from(piece, 'utf8').toString('latin1');
      const whole = byBytes.get(binary);
      let value: number | number[];
      if (whole !== undefined) {
        out.push(whole);
        value = whole;
      } else {
        const start = out.length;
        bytePairEncode(binary, byBytes, out);
        value = out.slice(start);
      }
      if (this.cache.size >= CACHE_LIMIT) this.cache.delete(this.cache.keys().next().value!);
      this.cache.set(piece, value);
    }
  }

  decodeBytes(ids: ArrayLike<number>): Uint8Array {
    const parts: Uint8Array[] = new Array(ids.length);
    let total = 0;
    for (let i = 0; i < ids.length; i++) {
      const id = ids[i];
      const part = this.ranks.bytes[id] ?? this.specialBytes.get(id);
      if (part === undefined) {
        throw new UserError(`token id ${id} is not in the vocabulary of the tokenizer in ${this.files} (ids 0..${this.vocabSize - 1}). Use ids produced by this tokenizer.`);
      }
      parts[i] = part;
      total += part.length;
    }
    const out = new Uint8Array(total);
    let at = 0;
    for (const part of parts) {
      out.set(part, at);
      at += part.length;
    }
    return out;
  }

  decode(ids: ArrayLike<number>): string {
    return utf8.decode(this.decodeBytes(ids));
  }

  specialId(name: string): number {
    const id = this.specialTokens.get(name);
    if (id === undefined) {
      throw new UserError(`the tokenizer in ${this.files} has no special token ${name}. Use a checkpoint whose tokenizer_config.json names it in added_tokens_decoder.`);
    }
    return id;
  }
}

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
