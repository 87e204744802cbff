import { kimiPieceRegExp } from '../../src/engine/model/tokenizer/pattern';

/**
 * A deterministic byte-level BPE trainer with Kimi's pre-tokenization: pieces never merge across
 * the pattern's boundaries, as at encode time. Returns the tokens in rank order: the 256 single
 * bytes (rank = byte value), then one token per merge, most frequent pair first. Ties are broken
 * by the smaller pair of ids, so the same corpus always gives the same vocabulary.
 */
export function trainByteLevelBpe(texts: Iterable<string>, vocabSize: number): Uint8Array[] {
  if (vocabSize < 256) throw new Error(`vocabSize ${vocabSize} is below the 256 single bytes`);
  const pieceCounts = new Map<string, number>();
  for (const text of texts) {
    for (const m of text.matchAll(kimiPieceRegExp())) pieceCounts.set(m[0], (pieceCounts.get(m[0]) ?? 0) + 1);
  }

  const tokens: Uint8Array[] = [];
  const idOf = new Map<string, number>();
  for (let b = 0; b < 256; b++) {
    tokens.push(Uint8Array.of(b));
    idOf.set(String.fromCharCode(b), b);
  }

  const words: Int32Array[] = [];
  const lengths: number[] = [];
  const counts: number[] = [];
  const pairCounts = new Map<number, number>();
  const where = new Map<number, number[]>();
  const pairKey = (a: number, b: number) => a * 0x10000 + b;
  const addPair = (key: number, count: number, word: number) => {
    pairCounts.set(key, (pairCounts.get(key) ?? 0) + count);
    let list = where.get(key);
    if (!list) where.set(key, (list = []));
    list.push(word);
  };
  for (const [piece, count] of pieceCounts) {
    const bytes = Buffer.from(piece, 'utf8');
    if (bytes.length < 2) continue;
    const w = words.length;
    words.push(Int32Array.from(bytes));
    lengths.push(bytes.length);
    counts.push(count);
    for (let i = 0; i + 1 < bytes.length; i++) addPair(pairKey(bytes[i], bytes[i + 1]), count, w);
  }

  const seen = new Int32Array(words.length).fill(-1);
  for (let round = 0; tokens.length < vocabSize; round++) {
    let bestKey = -1;
    let bestCount = 1;
    for (const [key, count] of pairCounts) {
      if (count > bestCount || (count === bestCount && key < bestKey)) {
        bestKey = key;
        bestCount = count;
      }
    }
    if (bestKey < 0) break;
    const a = Math.floor(bestKey / 0x10000);
    const b = bestKey % 0x10000;
    const merged = new Uint8Array(tokens[a].length + tokens[b].length);
    merged.set(tokens[a]);
    merged.set(tokens[b], tokens[a].length);
    const mergedKey = Buffer.from(merged).toString('latin1');
    // Two merge paths can spell the same bytes; a ranks file holds each byte string once.
    let id = idOf.get(mergedKey);
    if (id === undefined) {
      id = tokens.length;
      tokens.push(merged);
      idOf.set(mergedKey, id);
    }

    for (const w of where.get(bestKey) ?? []) {
      if (seen[w] === round) continue;
      seen[w] = round;
      const word = words[w];
      const n = lengths[w];
      let hit = false;
      for (let i = 0; i + 1 < n; i++) if (word[i] === a && word[i + 1] === b) hit = true;
      if (!hit) continue;
      const c = counts[w];
      for (let i = 0; i + 1 < n; i++) decrement(pairCounts, pairKey(word[i], word[i + 1]), c);
      let out = 0;
      for (let i = 0; i < n; i++) {
        if (i + 1 < n && word[i] === a && word[i + 1] === b) {
          word[out++] = id;
          i++;
        } else {
          word[out++] = word[i];
        }
      }
      lengths[w] = out;
      for (let i = 0; i + 1 < out; i++) {
        const key = pairKey(word[i], word[i + 1]);
        if (word[i] === id || word[i + 1] === id) addPair(key, c, w);
        else pairCounts.set(key, (pairCounts.get(key) ?? 0) + c);
      }
    }
    where.delete(bestKey);
    pairCounts.delete(bestKey);
  }
  return tokens;
}

function decrement(map: Map<number, number>, key: number, by: number): void {
  const left = map.get(key)! - by;
  if (left === 0) map.delete(key);
  else map.set(key, left);
}
