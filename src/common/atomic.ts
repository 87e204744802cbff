import { promises as fs, writeFileSync, renameSync, mkdirSync, rmSync } from 'node:fs';
import { dirname, basename, join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { UserError } from './errors';

/** A temp path beside `file`, so that the final rename never crosses file systems. */
export function tempPathFor(file: string): string {
  return join(dirname(file), `.${basename(file)}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`);
}

/** Temp files of writes under way, removed by removeUnfinishedWrites when the process is stopped. */
const unfinished = new Set<string>();

/**
 * Removes the temp files of writes still under way, for a process about to exit (Ctrl-C): the
 * files they were to replace stay as they were, and no half-written file is left behind.
 */
export function removeUnfinishedWrites(): void {
  for (const tmp of unfinished) rmSync(tmp, { force: true });
  unfinished.clear();
}

/** File-system errors that mean the place cannot be written, which the user can fix. */
const NOT_WRITABLE: Record<string, string> = {
  EACCES: 'permission denied',
  EPERM: 'operation not permitted',
  EROFS: 'the file system is read-only',
  ENOTDIR: 'a part of the path is a file, not a folder',
  EISDIR: 'it is a folder',
  ENOSPC: 'the disk is full',
  EDQUOT: 'the disk quota is exhausted',
};

function writeError(file: string, e: unknown): unknown {
  const reason = NOT_WRITABLE[(e as NodeJS.ErrnoException)?.code ?? ''];
  return reason ? new UserError(`cannot write ${file}: ${reason}. Choose a writable path or free the space.`, file) : e;
}

/**
 * Writes `data` to `file` so that readers see either the old file or the whole new one. A place
 * that cannot be written is a UserError naming the file.
 */
export async function writeFileAtomic(file: string, data: string | Uint8Array | Iterable<Uint8Array>): Promise<void> {
  await writeFileAtomicWith(file, async (handle) => {
    if (typeof data === 'string' || data instanceof Uint8Array) {
      await handle.writeFile(data);
    } else {
      for (const part of data) await handle.write(part);
    }
  });
}

/**
 * The same guarantee for a file written piece by piece (at any offsets) through `write`: a temp
 * file beside `file`, synced and renamed over it, removed on failure or Ctrl-C.
 */
export async function writeFileAtomicWith(file: string, write: (handle: fs.FileHandle) => Promise<void>): Promise<void> {
  try {
    await fs.mkdir(dirname(file), { recursive: true });
  } catch (e) {
    // mkdir -p says EEXIST when a part of the path is a file.
    throw writeError(file, (e as NodeJS.ErrnoException)?.code === 'EEXIST' ? Object.assign(new Error('not a folder'), { code: 'ENOTDIR' }) : e);
  }
  const tmp = tempPathFor(file);
  unfinished.add(tmp);
  try {
    const handle = await fs.open(tmp, 'w');
    try {
      await write(handle);
      await handle.sync();
    } finally {
      await handle.close();
    }
    await fs.rename(tmp, file);
  } catch (e) {
    await fs.rm(tmp, { force: true });
    throw writeError(file, e);
  } finally {
    unfinished.delete(tmp);
  }
}

export function writeFileAtomicSync(file: string, data: string | Uint8Array): void {
  mkdirSync(dirname(file), { recursive: true });
  const tmp = tempPathFor(file);
  try {
    writeFileSync(tmp, data);
    renameSync(tmp, file);
  } catch (e) {
    rmSync(tmp, { force: true });
    throw e;
  }
}
