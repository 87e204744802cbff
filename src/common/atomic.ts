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

export function writeError(file: string, e: unknown): unknown {
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
  const pending = await openAtomic(file);
  try {
    await write(pending.handle);
  } catch (e) {
    await pending.abort();
    throw writeError(file, e);
  }
  await pending.commit();
}

/** A file being written in place of `file`: nothing replaces `file` until commit(). */
export interface PendingFile {
  readonly handle: fs.FileHandle;
  /** Syncs the temp file and renames it over the target. */
  commit(): Promise<void>;
  /** Removes the temp file; the target stays as it was. Safe to call more than once. */
  abort(): Promise<void>;
}

/**
 * Opens a temp file beside `file` for a write that spans other work (a state file streamed while
 * the model computes). It is removed on abort() or Ctrl-C; a place that cannot be written is a
 * UserError naming the file.
 */
export async function openAtomic(file: string): Promise<PendingFile> {
  try {
    await fs.mkdir(dirname(file), { recursive: true });
  } catch (e) {
    // mkdir -p says EEXIST when a part of the path is a file.
    throw writeError(file, (e as NodeJS.ErrnoException)?.code === 'EEXIST' ? Object.assign(new Error('not a folder'), { code: 'ENOTDIR' }) : e);
  }
  const tmp = tempPathFor(file);
  unfinished.add(tmp);
  let handle: fs.FileHandle;
  try {
    handle = await fs.open(tmp, 'w');
  } catch (e) {
    unfinished.delete(tmp);
    throw writeError(file, e);
  }
  let open = true;
  const close = async () => {
    if (open) {
      open = false;
      await handle.close();
    }
  };
  const abort = async () => {
    await close().catch(() => {});
    await fs.rm(tmp, { force: true });
    unfinished.delete(tmp);
  };
  return {
    handle,
    abort,
    async commit() {
      try {
        await handle.sync();
        await close();
        await fs.rename(tmp, file);
        unfinished.delete(tmp);
      } catch (e) {
        await abort();
        throw writeError(file, e);
      }
    },
  };
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
