/**
 * Whether reported changes make an ingested context out of date. File watchers report late and
 * in bursts: a file written just before an ingest is often reported while or after that ingest
 * packed it, a new folder is reported besides the files in it, and a save that changes nothing is
 * reported too. Comparing with what was packed keeps such reports from marking a fresh state
 * stale. What cannot be settled cheaply (a git ref moved, a very large new folder) counts as a
 * change.
 */
import { createHash } from 'node:crypto';
import { promises as fs } from 'node:fs';
import { join, sep } from 'node:path';
import { isGitRefChange } from '../workspace/git-dir';
import type { PackedFile } from './api';

/** Entries of a new folder looked at before it simply counts as a change. */
const FOLDER_SCAN_LIMIT = 2000;

/**
 * `couldPack(path)`: whether a file that was not packed could be packed now (the pack's ignore
 * and never-packed rules); a file it rules out changes nothing.
 */
export async function anyChanged(paths: readonly string[], packed: readonly PackedFile[], couldPack: (path: string) => Promise<boolean>): Promise<boolean> {
  const byPath = new Map(packed.map((f) => [f.path, f]));
  for (const path of paths) {
    if (isGitRefChange(path)) return true;
    const entry = byPath.get(path);
    const stat = await fs.stat(path).catch(() => undefined);
    if (entry) {
      if (!stat?.isFile()) return true;
      const bytes = await fs.readFile(path).catch(() => undefined);
      if (!bytes || createHash('sha256').update(bytes).digest('hex') !== entry.sha256) return true;
    } else if (stat?.isDirectory()) {
      if (await holdsNewFile(path, byPath, couldPack)) return true;
    } else if (stat) {
      if (await couldPack(path)) return true;
    } else {
      // Gone and never packed itself: only a folder that held packed files matters.
      const prefix = path.endsWith(sep) ? path : path + sep;
      if (packed.some((f) => f.path.startsWith(prefix))) return true;
    }
  }
  return false;
}

/** Whether a folder holds a file that could be packed but was not (true when it is too large to tell). */
async function holdsNewFile(dir: string, byPath: ReadonlyMap<string, PackedFile>, couldPack: (path: string) => Promise<boolean>): Promise<boolean> {
  const pending = [dir];
  let seen = 0;
  while (pending.length > 0) {
    const current = pending.pop()!;
    const entries = await fs.readdir(current, { withFileTypes: true }).catch(() => []);
    for (const e of entries) {
      if (++seen > FOLDER_SCAN_LIMIT) return true;
      const path = join(current, e.name);
      // A folder whose files the rules leave out (node_modules, dist…) is not walked.
      if (e.isDirectory()) {
        if (await couldPack(join(path, '_'))) pending.push(path);
      } else if (e.isFile() && !byPath.has(path) && (await couldPack(path))) {
        return true;
      }
    }
  }
  return false;
}
