/**
 * The MLA latent cache of one layer: `width` floats per token, stored in fixed-size pages.
 * Full pages are never written again, so a fork shares them; only the partly filled last page is
 * copied. A question forked from a 1M-token repository state therefore copies at most one page
 * per MLA layer instead of the whole cache.
 */
export class LatentCache {
  static readonly PAGE_TOKENS = 256;

  private pages: Float32Array[] = [];
  private len = 0;

  constructor(readonly width: number) {
    if (!Number.isInteger(width) || width <= 0) throw new Error(`LatentCache width must be a positive integer, got ${width}`);
  }

  get length(): number {
    return this.len;
  }

  /** Appends `n` rows taken from `rows` (row-major, n × width). */
  append(rows: Float32Array, n = rows.length / this.width): void {
    if (rows.length < n * this.width) throw new Error(`LatentCache.append: ${rows.length} values for ${n} rows of ${this.width}`);
    const P = LatentCache.PAGE_TOKENS;
    let done = 0;
    while (done < n) {
      const within = this.len % P;
      if (within === 0) this.pages.push(new Float32Array(P * this.width));
      const page = this.pages[this.pages.length - 1];
      const take = Math.min(P - within, n - done);
      page.set(rows.subarray(done * this.width, (done + take) * this.width), within * this.width);
      done += take;
      this.len += take;
    }
  }

  /** Row `t` as a view (valid until the cache is appended to after a fork). */
  row(t: number): Float32Array {
    if (t < 0 || t >= this.len) throw new RangeError(`LatentCache.row(${t}) out of [0, ${this.len})`);
    const P = LatentCache.PAGE_TOKENS;
    const page = this.pages[Math.floor(t / P)];
    const o = (t % P) * this.width;
    return page.subarray(o, o + this.width);
  }

  /** Rows [from, from + count) as one contiguous copy. */
  rows(from: number, count: number): Float32Array {
    const out = new Float32Array(count * this.width);
    for (let t = 0; t < count; t++) out.set(this.row(from + t), t * this.width);
    return out;
  }

  /** A copy that shares every full page with this cache. */
  fork(): LatentCache {
    return this.prefix(this.len);
  }

  /** A cache of the first `n` rows that shares their full pages with this one (the partial last page is copied). */
  prefix(n: number): LatentCache {
    if (!Number.isInteger(n) || n < 0 || n > this.len) throw new RangeError(`LatentCache.prefix(${n}) outside [0, ${this.len}]`);
    const P = LatentCache.PAGE_TOKENS;
    const f = new LatentCache(this.width);
    f.len = n;
    f.pages = this.pages.slice(0, Math.ceil(n / P));
    const within = n % P;
    if (within !== 0) f.pages[f.pages.length - 1] = this.pages[f.pages.length - 1].slice();
    return f;
  }

  /** All rows, contiguous (length × width); for serialization and tests. */
  toArray(): Float32Array {
    const out = new Float32Array(this.len * this.width);
    for (let t = 0; t < this.len; t += LatentCache.PAGE_TOKENS) {
      const n = Math.min(LatentCache.PAGE_TOKENS, this.len - t);
      out.set(this.pages[t / LatentCache.PAGE_TOKENS].subarray(0, n * this.width), t * this.width);
    }
    return out;
  }

  static fromArray(width: number, rows: Float32Array): LatentCache {
    if (rows.length % width !== 0) throw new Error(`LatentCache.fromArray: ${rows.length} values is not a multiple of ${width}`);
    const c = new LatentCache(width);
    c.append(rows);
    return c;
  }

  /** Whether page `i` is the very same memory in both caches (used by tests of copy-on-write). */
  sharesPageWith(other: LatentCache, i: number): boolean {
    return this.pages[i] !== undefined && this.pages[i] === other.pages[i];
  }
}
