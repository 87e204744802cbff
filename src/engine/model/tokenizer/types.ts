/**
 * What the rest of the project needs from a tokenizer. Implementations: tiktoken-style
 * (`tiktoken.model` + `tokenizer_config.json`, Kimi's format) and HF `tokenizer.json`.
 */
export interface Tokenizer {
  /** A stable identifier of the vocabulary (hash of the ranks file / tokenizer.json), used in cache keys. */
  readonly id: string;
  /** Number of ids the tokenizer can produce (base vocabulary + special tokens). */
  readonly vocabSize: number;
  /** Special token name → id, e.g. '<|im_end|>' → 163586. */
  readonly specialTokens: ReadonlyMap<string, number>;
  /**
   * Encodes text in which special-token strings ARE parsed as special tokens (Kimi's
   * `allowed_special="all"`). Use only for trusted text such as the chat template.
   */
  encode(text: string): number[];
  /** Encodes text with special-token strings treated as plain text: for file contents and user input. */
  encodeOrdinary(text: string): number[];
  /** The raw bytes of the ids (special tokens render as their names). */
  decodeBytes(ids: ArrayLike<number>): Uint8Array;
  /** UTF-8 decoding of decodeBytes, with invalid sequences replaced by U+FFFD. */
  decode(ids: ArrayLike<number>): string;
  /** The id of a special token, or a UserError naming the tokenizer files when it is missing. */
  specialId(name: string): number;
}
