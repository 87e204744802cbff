import { promises as fs } from 'node:fs';

/** Whether anything (file, folder, link target) is at `path` and can be accessed. */
export async function pathExists(path: string): Promise<boolean> {
  return fs.access(path).then(
    () => true,
    () => false,
  );
}
