/**
 * Whether reported changes make an ingested context out of date. File watchers report late and
 * in bursts: a file written just before an ingest is often reported while or after that ingest
 * packed it, and a save that changes nothing is reported too. Comparing with what was packed
 * keeps such reports from marking a fresh state stale. Whatever cannot be settled cheaply (a git
 * ref moved, a folder, a file that was not packed) counts as a change.
 */
import { createHash } from 'node:crypto';
import { promises as fs } from 'node:fs';
import { sep } from 'node:path';
import { isGitRefChange } from '../workspace/git-dir';
import type { PackedFile } from './api';

export async function anyChanged(paths: readonly string[], packed: readonly PackedFile[]): Promise<boolean> {
  const byPath = new Map(packed.map((f) => [f.path, f]));
  for (const path of paths) {
    if (isGitRefChange(path)) return true;
    const entry = byPath.get(path);
    const stat = await fs.stat(path).catch(() => undefined);
    if (entry) {
      if (!stat?.isFile()) return true;
      const bytes = await fs.readFile(path).catch(() => undefined);
      if (!bytes || createHash('sha256').update(bytes).digest('hex') !== entry.sha256) return true;
      continue;
    }
    if (stat) return true;
    // Gone and never packed itself: only a folder that held packed files matters.
    const prefix = path.endsWith(sep) ? path : path + sep;
    if (packed.some((f) => f.path.startsWith(prefix))) return true;
  }
  return false;
}
