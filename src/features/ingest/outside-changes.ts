/**
 * Notices changes the editor did not make: a `git checkout`, `git pull`, a generator, another
 * editor. One file-system watcher per workspace folder, plus watchers on git's HEAD and branch
 * refs (also where the repository's .git lies above the folder). Changes are collected for a
 * moment, since a checkout or a build writes many files at once; then paths that the pack's
 * ignore rules leave out (dist/, node_modules/, *.log, .gitignore'd files…) are dropped, and what
 * remains is reported once.
 */
import * as vscode from 'vscode';
import { findGitDirs, isGitRefChange } from '../../workspace/git-dir';
import { PackCandidates } from '../../workspace/ignore-rules';

/** How long changes are collected after the last one before they are filtered and reported. */
export const OUTSIDE_CHANGE_DEBOUNCE_MS = 400;
/** Longest wait after the first change, so that a tool writing without pause still gets reported. */
const OUTSIDE_CHANGE_MAX_WAIT_MS = 3000;

export class OutsideChangeWatcher implements vscode.Disposable {
  private readonly emitter = new vscode.EventEmitter<string[]>();
  /** Paths of files that changed and could be packed, once per burst of changes. */
  readonly onDidChange = this.emitter.event;
  private readonly subscriptions: vscode.Disposable[] = [];
  private watchers: vscode.Disposable[] = [];
  private readonly pending = new Set<string>();
  private timer: NodeJS.Timeout | undefined;
  private firstPendingAt = 0;
  private generation = 0;
  private disposed = false;

  constructor(private readonly log: vscode.LogOutputChannel) {
    this.subscriptions.push(vscode.workspace.onDidChangeWorkspaceFolders(() => void this.watchFolders()));
    void this.watchFolders();
  }

  dispose(): void {
    this.disposed = true;
    clearTimeout(this.timer);
    for (const w of this.watchers) w.dispose();
    for (const s of this.subscriptions) s.dispose();
    this.emitter.dispose();
  }

  private async watchFolders(): Promise<void> {
    const generation = ++this.generation;
    for (const w of this.watchers) w.dispose();
    this.watchers = [];
    const folders = (vscode.workspace.workspaceFolders ?? []).filter((f) => f.uri.scheme === 'file');
    const watchers: vscode.Disposable[] = folders.map((f) => this.watch(new vscode.RelativePattern(f, '**/*')));
    for (const folder of folders) {
      const git = await findGitDirs(folder.uri.fsPath).catch(() => undefined);
      if (!git) continue;
      watchers.push(this.watch(new vscode.RelativePattern(vscode.Uri.file(git.head), 'HEAD')));
      watchers.push(this.watch(new vscode.RelativePattern(vscode.Uri.file(git.common), 'refs/heads/**')));
    }
    // The folders changed again while git folders were looked up: that newer call watches them.
    if (generation !== this.generation || this.disposed) {
      for (const w of watchers) w.dispose();
      return;
    }
    this.watchers = watchers;
  }

  private watch(pattern: vscode.RelativePattern): vscode.Disposable {
    const watcher = vscode.workspace.createFileSystemWatcher(pattern);
    const queue = (uri: vscode.Uri) => this.queue(uri);
    return vscode.Disposable.from(watcher, watcher.onDidCreate(queue), watcher.onDidChange(queue), watcher.onDidDelete(queue));
  }

  private queue(uri: vscode.Uri): void {
    if (uri.scheme !== 'file') return;
    if (this.pending.size === 0) this.firstPendingAt = Date.now();
    this.pending.add(uri.fsPath);
    clearTimeout(this.timer);
    const wait = Math.min(OUTSIDE_CHANGE_DEBOUNCE_MS, Math.max(0, this.firstPendingAt + OUTSIDE_CHANGE_MAX_WAIT_MS - Date.now()));
    this.timer = setTimeout(() => {
      this.flush().catch((e: unknown) => this.log.warn(`could not check changed files: ${e instanceof Error ? e.message : String(e)}`));
    }, wait);
  }

  private async flush(): Promise<void> {
    const paths = [...this.pending];
    this.pending.clear();
    const exclude = vscode.workspace.getConfiguration('kimiLinear').get<string[]>('exclude') ?? [];
    // Fresh rules per burst: the burst may have changed an ignore file.
    const folders = (vscode.workspace.workspaceFolders ?? []).filter((f) => f.uri.scheme === 'file').map((f) => f.uri.fsPath);
    const candidates = new PackCandidates(folders, exclude);
    const relevant: string[] = [];
    for (const path of paths) {
      if (isGitRefChange(path) || (await candidates.couldPack(path))) relevant.push(path);
    }
    if (relevant.length === 0 || this.disposed) return;
    this.log.info(`changed outside the editor: ${relevant.length <= 3 ? relevant.join(', ') : `${relevant.length} files`}`);
    this.emitter.fire(relevant);
  }
}
