import { createHash } from 'node:crypto';
import { Tokenizer as HfTokenizer } from '@huggingface/tokenizers';
import { UserError } from '../../../common/errors';
import type { Tokenizer } from './types';

interface AddedTokenJson {
  id: number;
  content: string;
  special?: boolean;
}

export interface TokenizerJson {
  added_tokens?: AddedTokenJson[];
  pre_tokenizer?: { type?: string; pretokenizers?: { type?: string }[] } | null;
  decoder?: { type?: string; decoders?: { type?: string }[] } | null;
  [key: string]: unknown;
}

/**
 * A HF `tokenizer.json` checkpoint, through @huggingface/tokenizers. `encodeOrdinary` uses a second
 * instance whose added tokens exclude the special ones, which is HF's `split_special_tokens=True`:
 * file contents that spell "<|im_end|>" stay plain text.
 */
export class HfJsonTokenizer implements Tokenizer {
  readonly id: string;
  readonly vocabSize: number;
  readonly specialTokens: ReadonlyMap<string, number>;
  private readonly full: HfTokenizer;
  private readonly ordinary: HfTokenizer;
  private readonly byteLevel: boolean;
  private readonly idToToken: Map<number, string>;
  private readonly addedContent = new Map<number, string>();

  constructor(json: TokenizerJson, config: object, private readonly files: string, fingerprint: Uint8Array) {
    const added = json.added_tokens ?? [];
    try {
      this.full = new HfTokenizer(json, config);
      this.ordinary = new HfTokenizer({ ...json, added_tokens: added.filter((t) => !t.special) }, config);
    } catch (e) {
      throw new UserError(`${files}: @huggingface/tokenizers cannot load it (${e instanceof Error ? e.message : String(e)}). Check that tokenizer.json is a complete HF tokenizer file.`);
    }
    this.specialTokens = new Map(added.filter((t) => t.special).map((t) => [t.content, t.id]));
    for (const t of added) this.addedContent.set(t.id, t.content);
    const vocab = this.full.get_vocab(true);
    this.idToToken = new Map([...vocab].map(([token, id]) => [id, token]));
    this.vocabSize = Math.max(-1, ...vocab.values()) + 1;
    this.byteLevel = usesByteLevel(json);
    this.id = `hf:${createHash('sha256').update(fingerprint).digest('hex').slice(0, 32)}`;
  }

  encode(text: string): number[] {
    return text === '' ? [] : this.full.encode(text, { add_special_tokens: false }).ids;
  }

  encodeOrdinary(text: string): number[] {
    return text === '' ? [] : this.ordinary.encode(text, { add_special_tokens: false }).ids;
  }

  decodeBytes(ids: ArrayLike<number>): Uint8Array {
    const list = Array.from(ids);
    for (const id of list) {
      if (!this.idToToken.has(id)) {
        throw new UserError(`token id ${id} is not in the vocabulary of the tokenizer in ${this.files}. Use ids produced by this tokenizer.`);
      }
    }
    if (!this.byteLevel) {
      // Without byte-level tokens a partial UTF-8 sequence cannot be represented; whole text can.
      return new TextEncoder().encode(this.decode(list));
    }
    const chunks: number[] = [];
    for (const id of list) {
      const added = this.addedContent.get(id);
      if (added !== undefined) {
        for (const b of new TextEncoder().encode(added)) chunks.push(b);
        continue;
      }
      for (const ch of this.idToToken.get(id)!) {
        const b = UNICODE_TO_BYTE.get(ch);
        if (b === undefined) throw new UserError(`${this.files}: token ${JSON.stringify(this.idToToken.get(id))} is not byte-level although the decoder is ByteLevel. The tokenizer.json looks damaged.`);
        chunks.push(b);
      }
    }
    return Uint8Array.from(chunks);
  }

  decode(ids: ArrayLike<number>): string {
    const list = Array.from(ids);
    if (list.length === 0) return '';
    if (this.byteLevel) return new TextDecoder('utf-8', { ignoreBOM: true }).decode(this.decodeBytes(list));
    return this.full.decode(list, { skip_special_tokens: false, clean_up_tokenization_spaces: false });
  }

  specialId(name: string): number {
    const id = this.specialTokens.get(name);
    if (id === undefined) throw new UserError(`the tokenizer in ${this.files} has no special token ${name}. Use a checkpoint whose tokenizer.json lists it in added_tokens.`);
    return id;
  }
}

function usesByteLevel(json: TokenizerJson): boolean {
  const types = [json.decoder?.type, ...(json.decoder?.decoders ?? []).map((d) => d.type)];
  return types.includes('ByteLevel');
}

/** GPT-2's byte ↔ printable-character table that byte-level BPE vocabularies are written in. */
const UNICODE_TO_BYTE: ReadonlyMap<string, number> = (() => {
  const map = new Map<string, number>();
  let next = 256;
  for (let b = 0; b < 256; b++) {
    const printable = (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
    map.set(String.fromCodePoint(printable ? b : next++), b);
  }
  return map;
})();
