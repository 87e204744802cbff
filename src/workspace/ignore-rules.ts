/**
 * Whether a changed path could be part of the pack, by the same rules as discovery (discover.ts):
 * the default excludes, the user's exclude patterns, and .gitignore, .ignore and .kimiignore files
 * at every depth plus the .gitignore files of parent folders up to the repository root. The file
 * watcher asks this so that a build writing to dist/ or a log file does not make the cached state
 * stale. Ignore files are read again for every batch of changes, since they can change too.
 *
 * Include globs are not applied: a change outside them marks the state stale needlessly, and the
 * ingest it may start finds the saved state up to date; missing a change would be worse.
 */
import { promises as fs } from 'node:fs';
import { dirname, isAbsolute, join, relative, sep } from 'node:path';
import ignore, { type Ignore } from 'ignore';
import { isLockFile } from './classify';
import { DEFAULT_EXCLUDES, IGNORE_FILES } from './defaults';
import { secretFileByName } from './secrets';
import { pathExists } from '../common/path-exists';

interface Level {
  /** Folder the patterns are relative to. */
  dir: string;
  rules: Ignore;
}

export class IgnoreRules {
  private readonly base: Ignore;
  private readonly levels = new Map<string, Promise<Level | undefined>>();
  private outer: Promise<Level[]> | undefined;

  constructor(
    readonly root: string,
    exclude: readonly string[] = [],
  ) {
    this.base = ignore().add([...DEFAULT_EXCLUDES, ...exclude]);
  }

  /** True when `abs` lies in the root and no rule leaves it out. Paths outside the root are not packed from it. */
  async packable(abs: string): Promise<boolean> {
    const rel = relative(this.root, abs);
    if (rel === '' || rel.startsWith('..') || isAbsolute(rel)) return false;
    const posix = rel.split(sep).join('/');
    if (this.base.ignores(posix)) return false;
    let ignored = false;
    // Outermost rules first: a deeper file's rules override them, as git applies them.
    const inner = await Promise.all(ancestors(this.root, posix).map((dir) => this.level(dir)));
    for (const level of [...(await this.outerLevels()), ...inner]) {
      if (!level) continue;
      const verdict = level.rules.test(relative(level.dir, abs).split(sep).join('/'));
      if (verdict.ignored) ignored = true;
      else if (verdict.unignored) ignored = false;
    }
    return !ignored;
  }

  /** .gitignore files of the folders above the root, up to the repository's top (where .git is). */
  private outerLevels(): Promise<Level[]> {
    this.outer ??= (async () => {
      const out: Level[] = [];
      let dir = this.root;
      while (!(await pathExists(join(dir, '.git')))) {
        const parent = dirname(dir);
        if (parent === dir) return [];
        dir = parent;
        const level = await readLevel(dir, ['.gitignore']);
        if (level) out.unshift(level);
      }
      return out;
    })();
    return this.outer;
  }

  private level(dir: string): Promise<Level | undefined> {
    let level = this.levels.get(dir);
    if (!level) {
      level = readLevel(dir, ['.gitignore', ...IGNORE_FILES]);
      this.levels.set(dir, level);
    }
    return level;
  }
}

/** The root and each folder between it and the file, outermost first. */
function ancestors(root: string, posixRel: string): string[] {
  const parts = posixRel.split('/').slice(0, -1);
  const out = [root];
  for (let i = 0; i < parts.length; i++) out.push(join(root, ...parts.slice(0, i + 1)));
  return out;
}

async function readLevel(dir: string, names: readonly string[]): Promise<Level | undefined> {
  const texts = await Promise.all(names.map((n) => fs.readFile(join(dir, n), 'utf8').catch(() => undefined)));
  const present = texts.filter((t): t is string => t !== undefined);
  // One add() per file: an array element is taken as a single pattern, not split into lines.
  return present.length > 0 ? { dir, rules: present.reduce((rules, text) => rules.add(text), ignore()) } : undefined;
}


/**
 * Whether a path could end up in the pack of these roots: not left out by the ignore rules, and
 * not by a name that is never packed (lock files, secret files such as .env). A change to any
 * other path can change the pack.
 */
export class PackCandidates {
  private readonly rules: IgnoreRules[];

  constructor(roots: readonly string[], exclude: readonly string[] = []) {
    this.rules = roots.map((root) => new IgnoreRules(root, exclude));
  }

  async couldPack(abs: string): Promise<boolean> {
    for (const rules of this.rules) {
      const rel = relative(rules.root, abs);
      if (rel === '' || rel.startsWith('..') || isAbsolute(rel)) continue;
      const posix = rel.split(sep).join('/');
      if (isLockFile(posix) || secretFileByName(posix)) return false;
      return rules.packable(abs);
    }
    return false;
  }
}
