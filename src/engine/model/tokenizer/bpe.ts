/**
 * tiktoken's byte-pair encoding of one pre-tokenized piece: repeatedly merge the adjacent pair of
 * parts whose concatenation has the lowest rank (leftmost on ties) until no pair is a token.
 * Merging by rank rather than by a merges list is what makes the ids equal tiktoken's.
 *
 * `piece` is a binary string (one char per byte). Short pieces use tiktoken's own quadratic scan
 * over reused scratch arrays; long ones (a 100 kB run of '=' or spaces is one piece) use a heap so
 * that encoding stays O(n log n). Both select the same merges in the same order.
 */
const NONE = 0x7fffffff;
const LONG_PIECE = 256;
let starts = new Int32Array(LONG_PIECE + 1);
let pairRanks = new Int32Array(LONG_PIECE + 1);

export function bytePairEncode(piece: string, ranks: ReadonlyMap<string, number>, out: number[]): void {
  if (piece.length > LONG_PIECE) bytePairEncodeLong(piece, ranks, out);
  else bytePairEncodeShort(piece, ranks, out);
}

export function bytePairEncodeShort(piece: string, ranks: ReadonlyMap<string, number>, out: number[]): void {
  const n = piece.length;
  if (n + 1 > starts.length) {
    starts = new Int32Array(n + 1);
    pairRanks = new Int32Array(n + 1);
  }
  // Boundaries 0..n; pair i joins the parts [starts[i], starts[i+1]) and [starts[i+1], starts[i+2]).
  let m = n + 1;
  for (let i = 0; i <= n; i++) starts[i] = i;
  for (let i = 0; i < n - 1; i++) pairRanks[i] = ranks.get(piece.slice(i, i + 2)) ?? NONE;
  pairRanks[n - 1] = NONE;

  while (m > 2) {
    let best = NONE;
    let at = -1;
    for (let i = 0; i < m - 2; i++) {
      if (pairRanks[i] < best) {
        best = pairRanks[i];
        at = i;
      }
    }
    if (at < 0) break;
    // Drop boundary at+1, which joins parts at and at+1.
    starts.copyWithin(at + 1, at + 2, m);
    pairRanks.copyWithin(at + 1, at + 2, m - 1);
    m--;
    pairRanks[at] = at + 2 < m ? (ranks.get(piece.slice(starts[at], starts[at + 2])) ?? NONE) : NONE;
    if (at > 0) pairRanks[at - 1] = ranks.get(piece.slice(starts[at - 1], starts[at + 1])) ?? NONE;
  }
  for (let i = 0; i < m - 1; i++) out.push(ranks.get(piece.slice(starts[i], starts[i + 1]))!);
}

/**
 * Parts form a linked list keyed by their start byte. The heap holds candidate pairs (rank, left
 * start, right start, right end); a candidate is stale once either part has changed, which is
 * detected by comparing the stored starts with the list, so stale entries are skipped when popped.
 */
export function bytePairEncodeLong(piece: string, ranks: ReadonlyMap<string, number>, out: number[]): void {
  const n = piece.length;
  const next = new Int32Array(n + 1);
  const prev = new Int32Array(n + 1);
  for (let i = 0; i <= n; i++) {
    next[i] = i + 1;
    prev[i] = i - 1;
  }
  const heap = new PairHeap(n);
  const push = (i: number) => {
    const j = next[i];
    if (j >= n) return;
    const k = next[j];
    const rank = ranks.get(piece.slice(i, k));
    if (rank !== undefined) heap.push(rank, i, j, k);
  };
  for (let i = 0; i < n - 1; i++) push(i);
  while (heap.size > 0) {
    const { i, j, k } = heap.pop();
    if (next[i] !== j || next[j] !== k || prev[j] !== i) continue;
    next[i] = k;
    prev[k] = i;
    prev[j] = -2;
    push(i);
    if (i > 0) push(prev[i]);
  }
  for (let i = 0; i < n; i = next[i]) out.push(ranks.get(piece.slice(i, next[i]))!);
}

/** A binary min-heap ordered by (rank, left start): lowest rank first, leftmost on ties. */
class PairHeap {
  size = 0;
  private rank: Int32Array;
  private i: Int32Array;
  private j: Int32Array;
  private k: Int32Array;

  constructor(capacity: number) {
    this.rank = new Int32Array(capacity);
    this.i = new Int32Array(capacity);
    this.j = new Int32Array(capacity);
    this.k = new Int32Array(capacity);
  }

  push(rank: number, i: number, j: number, k: number): void {
    if (this.size === this.rank.length) this.grow();
    let at = this.size++;
    while (at > 0) {
      const up = (at - 1) >> 1;
      if (!this.less(rank, i, this.rank[up], this.i[up])) break;
      this.move(up, at);
      at = up;
    }
    this.set(at, rank, i, j, k);
  }

  pop(): { i: number; j: number; k: number } {
    const top = { i: this.i[0], j: this.j[0], k: this.k[0] };
    const last = --this.size;
    const rank = this.rank[last], i = this.i[last], j = this.j[last], k = this.k[last];
    let at = 0;
    while (true) {
      let child = 2 * at + 1;
      if (child >= last) break;
      if (child + 1 < last && this.less(this.rank[child + 1], this.i[child + 1], this.rank[child], this.i[child])) child++;
      if (!this.less(this.rank[child], this.i[child], rank, i)) break;
      this.move(child, at);
      at = child;
    }
    if (last > 0) this.set(at, rank, i, j, k);
    return top;
  }

  private less(ra: number, ia: number, rb: number, ib: number): boolean {
    return ra < rb || (ra === rb && ia < ib);
  }

  private move(from: number, to: number): void {
    this.set(to, this.rank[from], this.i[from], this.j[from], this.k[from]);
  }

  private set(at: number, rank: number, i: number, j: number, k: number): void {
    this.rank[at] = rank;
    this.i[at] = i;
    this.j[at] = j;
    this.k[at] = k;
  }

  private grow(): void {
    const bigger = (a: Int32Array) => {
      const b = new Int32Array(a.length * 2 + 16);
      b.set(a);
      return b;
    };
    this.rank = bigger(this.rank);
    this.i = bigger(this.i);
    this.j = bigger(this.j);
    this.k = bigger(this.k);
  }
}
