/**
 * Summaries by file content: a file's summaries are found again only while its text is exactly
 * the text they were made from. Kept small (least recently used files go first) and serializable,
 * so that the extension can keep it in workspace state across reloads.
 */
import { createHash } from 'node:crypto';

export type Summaries = Record<string, string>;

export function contentHash(text: string): string {
  return createHash('sha256').update(text, 'utf8').digest('hex');
}

export class AnnotationCache {
  private readonly entries = new Map<string, Summaries>();

  constructor(private readonly maxFiles = 200, saved?: [string, Summaries][]) {
    for (const [hash, summaries] of saved ?? []) this.entries.set(hash, summaries);
    this.trim();
  }

  get(hash: string): Summaries | undefined {
    const found = this.entries.get(hash);
    if (found) {
      this.entries.delete(hash);
      this.entries.set(hash, found);
    }
    return found;
  }

  set(hash: string, summaries: Summaries): void {
    this.entries.delete(hash);
    this.entries.set(hash, summaries);
    this.trim();
  }

  toJSON(): [string, Summaries][] {
    return [...this.entries];
  }

  private trim(): void {
    while (this.entries.size > this.maxFiles) {
      const oldest = this.entries.keys().next().value as string;
      this.entries.delete(oldest);
    }
  }
}
