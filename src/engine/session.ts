/**
 * One loaded model answering questions about one workspace: the object the CLI and the engine
 * process drive. Ingest packs the workspace, restores what it can from saved states, prefills the
 * rest with checkpoints at file boundaries, and saves the result; ask forks that state, so every
 * question starts from the ingested repository instead of re-reading it.
 */
import { createHash, randomInt } from 'node:crypto';
import { homedir } from 'node:os';
import { basename, join, resolve } from 'node:path';
import type {
  AskRequest,
  AskResult,
  BackendName,
  EngineStatus,
  IngestProgress,
  IngestResult,
  PackedFile,
  PackSettings,
  SamplingOptions,
} from './api';
import { questionTokens, repoClosing, repoPreamble, stopIds } from './chat-template';
import { CancelledError, generate, generateBatch, type Generated } from './generate';
import { anyChanged } from './changed-files';
import { identifyModel, stateModelId } from './model-id';
import { loadModel, type DummySpec, type Model } from './model/model';
import { loadTokenizer } from './model/tokenizer';
import type { MemoryBudget } from './plan/memory-plan';
import type { Tokenizer } from './model/tokenizer/types';
import { DEFAULT_SAMPLING } from './sampler';
import { RepoStateStore, type HeldState, type Resumed } from './state/repo-store';
import { stateMismatch } from './state/state-shape';
import { shapeOf } from './state/state-file';
import type { SequenceState } from './state/types';
import { bundledModelDir } from '../common/package-root';
import { UserError } from '../common/errors';
import { withMemoryAdvice } from './out-of-memory';
import { packWorkspace, PACKER_VERSION } from '../workspace';
import { nextSliceEnd, type SlicePlan } from './ingest-slices';
import { packRecord, previousPackOf, type PackLimits, type PackRecord } from './previous-pack';
import { PackCandidates } from '../workspace/ignore-rules';

/** Tokens kept free after the repository for the question, the history and the answer. */
export function questionReserve(maxContext: number): number {
  return Math.min(4096, Math.floor(maxContext / 4));
}

/** Most answers askBatch decodes together; further requests wait for a place. */
export const ASK_BATCH_LIMIT = 8;

/** Default place for saved states: $XDG_CACHE_HOME/kimi-linear-code or ~/.cache/kimi-linear-code. */
export function defaultCacheDir(): string {
  return join(process.env.XDG_CACHE_HOME || join(homedir(), '.cache'), 'kimi-linear-code');
}

export interface SessionOptions {
  /** Checkpoint folder; undefined = the bundled tiny checkpoint. */
  modelDir?: string;
  /** Dummy weights for a config instead of a checkpoint (modelDir then only supplies a tokenizer, if given). */
  dummy?: DummySpec;
  backend: BackendName;
  /** Where repository states are saved. */
  cacheDir: string;
  /** The workspace that ask() ingests when nothing was ingested yet. */
  workspace?: PackSettings;
  log?: (line: string) => void;
  /**
   * Distance in tokens between checkpoints (default: checkpointSpacing); each lands at a file
   * boundary near it. Given, every due checkpoint is written; by default, on a GPU backend, one due
   * while the last is still being written is put off to the next boundary.
   */
  checkpointEvery?: number;
  /** What the model's memory is planned for (the CUDA backend's context budget, forks, GPU memory cap). */
  memory?: MemoryBudget;
}

interface Repo {
  settings: PackSettings;
  ids: Int32Array;
  state: SequenceState;
  /** The packed files, in context order. */
  files: PackedFile[];
  stale: boolean;
}

/** Disk allowed for the checkpoints of one workspace (they hold the KDA state, fixed-size per checkpoint). */
export const CHECKPOINT_DISK_BUDGET = 2 * 1024 ** 3;

/** Most checkpoints of one workspace, however small the model's state. */
export const MAX_CHECKPOINTS = 1024;

/**
 * Distance in tokens between checkpoints at file boundaries: as dense as the disk budget
 * allows, so that an edit re-prefills at most one spacing more than the changed tail. No floor:
 * a small workspace gets a checkpoint at every file boundary, or a change to it would re-prefill
 * it all.
 */
export function checkpointSpacing(totalTokens: number, checkpointBytes: number): number {
  const count = Math.min(MAX_CHECKPOINTS, Math.max(8, Math.floor(CHECKPOINT_DISK_BUDGET / Math.max(1, checkpointBytes))));
  return Math.max(1, Math.ceil(totalTokens / count));
}

function kdaStateBytes(state: SequenceState): number {
  return state.layers.reduce((n, l) => n + (l.kind === 'kda' ? (l.conv.length + l.S.length) * 4 : 0), 0);
}

/**
 * Writes checkpoints while the prefill goes on: each is a copy of the KDA parts (tens of MB at the
 * real widths), written while the next slices compute; at most one write is in flight, and a
 * failed write fails the ingest at the next checkpoint or at the end.
 */
class CheckpointWriter {
  private pending: Promise<void> = Promise.resolve();
  private writing = false;
  private failure: unknown = null;

  constructor(
    private readonly store: RepoStateStore,
    private readonly ids: Int32Array,
  ) {}

  async save(state: SequenceState): Promise<void> {
    await this.done();
    const copy: SequenceState = { length: state.length, layers: state.layers.map((l) => (l.kind === 'kda' ? { kind: 'kda', conv: l.conv.slice(), S: l.S.slice() } : l)) };
    this.writing = true;
    this.pending = this.store
      .saveCheckpoint(copy, this.ids, true)
      .catch((e: unknown) => {
        this.failure = e;
      })
      .finally(() => {
        this.writing = false;
      });
  }

  /** Whether the last checkpoint is still being written. */
  get busy(): boolean {
    return this.writing;
  }

  async done(): Promise<void> {
    await this.pending;
    if (this.failure) throw this.failure;
  }
}

export class EngineSession {
  private repo: Repo | null = null;
  private ingesting = false;
  /** Files reported changed while an ingest ran: checked against what it packed once it ends. */
  private changedWhileIngesting: string[] = [];

  private constructor(
    private readonly opts: SessionOptions,
    readonly modelDir: string,
    readonly model: Model,
    readonly tokenizer: Tokenizer,
    readonly modelId: string,
    readonly parameters: number,
    private readonly log: (line: string) => void,
    /** False for a session made by forWorkspace: the model belongs to the session it came from. */
    private readonly ownsModel = true,
  ) {}

  static async open(opts: SessionOptions): Promise<EngineSession> {
    const log = opts.log ?? (() => {});
    const dummy = opts.dummy;
    const modelDir = dummy ? dummy.configFile : resolve(opts.modelDir ?? bundledModelDir());
    const [tokenizer, model, identity] = await Promise.all([
      // Dummy weights have no tokenizer of their own: the model folder's if one is given, else the bundled one.
      dummy ? loadTokenizer(opts.modelDir ? resolve(opts.modelDir) : undefined) : loadTokenizer(modelDir),
      loadModel(modelDir, { backend: opts.backend, dummy, memory: opts.memory, quantization: opts.memory?.quantization }),
      identifyModel(dummy ? { kind: 'dummy', ...dummy } : { kind: 'checkpoint', dir: modelDir }, { digestCache: join(opts.cacheDir, 'weight-digests.json') }).catch((e: Error) => {
        throw new UserError(`cannot read the model folder ${modelDir}: ${e.message}. Point kimiLinear.modelPath (or --model) at a Kimi Linear checkpoint folder.`, modelDir);
      }),
    ]);
    if (tokenizer.vocabSize > model.config.vocabSize) {
      throw new UserError(
        `the tokenizer in ${modelDir} has ${tokenizer.vocabSize} ids but config.json's vocab_size is ${model.config.vocabSize}; the tokenizer files do not belong to this checkpoint`,
        modelDir,
      );
    }
    const quantized = model.weights === 'none' ? '' : `, weights quantized ${model.weights}`;
    log(`model ${modelDir} (${identity.parameters.toLocaleString('en-US')} parameters) on ${model.backend.name}, ${model.backend.device}${quantized}`);
    return new EngineSession(opts, modelDir, model, tokenizer, stateModelId(identity.id, model.weights), identity.parameters, log);
  }

  /**
   * A session for another workspace on this session's loaded model (klc serve holds one per
   * workspace; loading the model again would double its memory). Its model work must not overlap
   * this session's, and disposing it leaves the model loaded.
   */
  forWorkspace(workspace: PackSettings): EngineSession {
    return new EngineSession({ ...this.opts, workspace }, this.modelDir, this.model, this.tokenizer, this.modelId, this.parameters, this.log, false);
  }

  /** NoPE attention has no trained length limit in its weights; the config's is the promise we keep. */
  get maxContext(): number {
    return this.model.config.maxPositionEmbeddings ?? 1_048_576;
  }

  get bundled(): boolean {
    return this.modelDir === resolve(bundledModelDir());
  }

  status(): EngineStatus {
    const repo = this.repo;
    return {
      model: { path: this.modelDir, name: basename(this.modelDir), bundled: this.bundled, parameters: this.parameters },
      backend: this.model.backend.name,
      device: this.model.backend.device,
      repo: {
        roots: repo?.settings.roots ?? this.opts.workspace?.roots ?? [],
        files: repo?.files.length ?? 0,
        tokens: repo?.ids.length ?? 0,
        state: this.ingesting ? 'ingesting' : !repo ? 'none' : repo.stale ? 'stale' : 'ready',
      },
    };
  }

  /**
   * Marks the ingested state stale when these files no longer match what was packed (the next
   * ingest is incremental). Reports that arrive during an ingest are checked against its result.
   */
  async markStale(changedPaths: string[]): Promise<void> {
    if (changedPaths.length === 0) return;
    if (this.ingesting) {
      this.changedWhileIngesting.push(...changedPaths);
      return;
    }
    const repo = this.repo;
    if (repo && !repo.stale && (await this.changedSince(repo, changedPaths))) repo.stale = true;
  }

  /** Whether any of these reported paths differs from what `repo` packed, by the pack's own rules. */
  private changedSince(repo: Repo, paths: readonly string[]): Promise<boolean> {
    const candidates = new PackCandidates(repo.settings.roots, repo.settings.exclude);
    return anyChanged(paths, repo.files, (path) => candidates.couldPack(path));
  }

  private storeFor(settings: PackSettings): RepoStateStore {
    const roots = settings.roots.map((r) => resolve(r)).sort();
    const dirKey = createHash('sha256').update(`${this.modelId}\0${roots.join('\0')}`).digest('hex').slice(0, 24);
    const key = { modelId: this.modelId, packerVersion: PACKER_VERSION, tokenizerId: this.tokenizer.id };
    return new RepoStateStore(join(this.opts.cacheDir, dirKey), key, this.log);
  }

  async ingest(settings: PackSettings | undefined, onProgress: (p: IngestProgress) => void = () => {}, signal?: AbortSignal): Promise<IngestResult> {
    const ws = settings ?? this.opts.workspace;
    if (!ws || ws.roots.length === 0) throw new UserError('no workspace folder to ingest: open a folder, or pass one to klc');
    if (this.ingesting) throw new UserError('an ingest is already running; wait for it or cancel it');
    this.ingesting = true;
    this.changedWhileIngesting = [];
    try {
      const result = await withMemoryAdvice(`ingesting ${ws.roots.join(', ')}`, () => this.runIngest(ws, onProgress, signal));
      const repo = this.repo;
      if (repo && this.changedWhileIngesting.length > 0 && (await this.changedSince(repo, this.changedWhileIngesting))) repo.stale = true;
      return result;
    } finally {
      this.ingesting = false;
      this.changedWhileIngesting = [];
    }
  }

  private async runIngest(ws: PackSettings, onProgress: (p: IngestProgress) => void, signal?: AbortSignal): Promise<IngestResult> {
    const started = performance.now();
    const preamble = repoPreamble(this.tokenizer);
    const closing = repoClosing(this.tokenizer);
    const contextLimit = this.maxContext - questionReserve(this.maxContext) - preamble.length - closing.length;
    if (contextLimit <= 0) throw new UserError(`the model's context (${this.maxContext} tokens) leaves no room for a repository`);
    const maxTokens = Math.min(ws.maxTokens ?? contextLimit, contextLimit);

    onProgress({ phase: 'pack', filesDone: 0, filesTotal: 0, tokensDone: 0, tokensTotal: 0, tokensPerSecond: 0 });
    const store = this.storeFor(ws);
    const limits: PackLimits = { maxTokens, include: ws.include, exclude: ws.exclude, maxFileBytes: ws.maxFileBytes };
    const pack = await packWorkspace({
      roots: ws.roots,
      tokenizer: this.tokenizer,
      maxTokens,
      include: ws.include,
      exclude: ws.exclude,
      maxFileBytes: ws.maxFileBytes,
      previous: previousPackOf(await store.snapshotMeta(), limits),
      signal,
      onProgress: (p) => onProgress({ phase: 'pack', filesDone: p.done, filesTotal: p.total, tokensDone: 0, tokensTotal: 0, tokensPerSecond: 0 }),
    });
    const ids = new Int32Array(preamble.length + pack.ids.length + closing.length);
    ids.set(preamble, 0);
    ids.set(pack.ids, preamble.length);
    ids.set(closing, preamble.length + pack.ids.length);
    const fileEnds = pack.manifest.files.map((f) => preamble.length + f.end);
    const packed: PackedFile[] = pack.manifest.files.map((f) => ({ path: join(f.root, f.file), sha256: f.sha256, start: preamble.length + f.start, end: preamble.length + f.end }));
    const files = packed.length;
    const omitted = pack.manifest.omitted.length;
    const secretsRedacted = pack.stats.secretsRedacted;

    onProgress({ phase: 'restore', filesDone: 0, filesTotal: files, tokensDone: 0, tokensTotal: ids.length, tokensPerSecond: 0 });
    const resumed = await this.restore(store, ids, ws);
    if (resumed && !resumed.latentFromMemory) this.model.backend.importState(resumed.state);
    if (resumed && resumed.position === ids.length) {
      this.replaceRepo({ settings: ws, ids, state: resumed.state, files: packed, stale: false });
      this.log(`ingest: saved state of ${ids.length} tokens is up to date`);
      const seconds = (performance.now() - started) / 1000;
      return { files, omitted, tokens: ids.length, resumedTokens: ids.length, upToDate: true, seconds, tokensPerSecond: 0, secretsRedacted };
    }
    const state = resumed ? resumed.state : this.model.newState();
    try {
      const from = resumed && (resumed.from === 'memory' ? 'the state in memory' : `the saved ${resumed.from}${resumed.latentFromMemory ? ' (MLA rows shared with the state in memory, not read from disk)' : ''}`);
      return await this.prefillAndSave(ws, store, state, from || null, { ids, fileEnds, packed, files, omitted, secretsRedacted, started, record: packRecord(limits, pack.manifest) }, onProgress, signal);
    } catch (e) {
      // A failed or cancelled ingest leaves the repository as it was; its half-built state goes now.
      this.model.releaseState(state);
      throw e;
    }
  }

  private async prefillAndSave(
    ws: PackSettings,
    store: RepoStateStore,
    state: SequenceState,
    resumedFrom: string | null,
    pack: { ids: Int32Array; fileEnds: number[]; packed: PackedFile[]; files: number; omitted: number; secretsRedacted: number; started: number; record: PackRecord },
    onProgress: (p: IngestProgress) => void,
    signal?: AbortSignal,
  ): Promise<IngestResult> {
    const { ids, fileEnds, packed, files, omitted, secretsRedacted, started, record } = pack;
    const resumedTokens = state.length;
    if (resumedFrom) this.log(`ingest: resuming at token ${resumedTokens} of ${ids.length} from ${resumedFrom}`);
    await store.removeCheckpoints(resumedTokens);

    // A checkpoint at most once per prefill slice of the backend's own length: a slice ends at one
    // file boundary at most (ingest-slices.ts).
    const spacing = this.opts.checkpointEvery ?? Math.max(checkpointSpacing(ids.length, kdaStateBytes(state)), this.model.backend.prefillTokens ?? 1);
    const writer = new CheckpointWriter(store, ids);
    // Only where slices run asynchronously to the event loop (the GPU backends): a CPU backend's
    // synchronous slice leaves no time for any write to finish, so every other one would be skipped.
    const thinning = this.opts.checkpointEvery === undefined && this.model.backend.prefillTokens !== undefined;
    // The snapshot is written as the rows are computed, so that it is on disk when the prefill ends;
    // the resumed rows are the saved snapshot's, so its blocks of them are kept, not written again.
    const meta = { files, roots: ws.roots, createdAt: new Date().toISOString(), pack: record };
    const snapshot = await store.openSnapshot({ ...shapeOf(state), length: ids.length }, ids, meta, this.model.latentDtype(state), resumedTokens);
    const latent = this.model.latentReader(state);
    let prefillSeconds: number;
    try {
      await snapshot.putLatent(resumedTokens, latent);
      // The end of the last file gets one where that costs no slice of its own or saves one: new files are appended there (before the index).
      const plan: SlicePlan = {
        total: ids.length,
        slice: this.model.prefillTokens,
        spacing,
        boundaries: fileEnds.filter((p) => p > resumedTokens && p < ids.length),
        filesEnd: fileEnds.length > 0 ? fileEnds[fileEnds.length - 1] : -1,
      };
      let lastCheckpoint = resumedTokens;
      const prefillStart = performance.now();
      let filesDone = fileEnds.filter((p) => p <= resumedTokens).length;
      let position = resumedTokens;
      const spent = { slices: 0, compute: 0, rows: 0, checkpoints: 0 };
      onProgress({ phase: 'prefill', filesDone, filesTotal: files, tokensDone: position, tokensTotal: ids.length, tokensPerSecond: 0 });
      while (position < ids.length) {
        if (signal?.aborted) throw new CancelledError();
        const { end, checkpoint } = nextSliceEnd(plan, position, lastCheckpoint);
        let t = performance.now();
        await this.model.prefill(state, ids.subarray(position, end), { logits: 'none', slice: plan.slice });
        position = end;
        spent.slices++;
        spent.compute += performance.now() - t;
        t = performance.now();
        await snapshot.putLatent(position, latent);
        spent.rows += performance.now() - t;
        while (filesDone < fileEnds.length && fileEnds[filesDone] <= position) filesDone++;
        // A checkpoint due while the last one is still being written waits for the next boundary:
        // on a slow disk checkpoints thin out instead of holding up the GPU (unless the spacing was
        // given, which asks for every one).
        if (checkpoint && !(thinning && writer.busy)) {
          t = performance.now();
          this.model.syncState(state);
          await writer.save(state);
          lastCheckpoint = position;
          spent.checkpoints += performance.now() - t;
        }
        const elapsed = (performance.now() - prefillStart) / 1000;
        const tps = elapsed > 0 ? (position - resumedTokens) / elapsed : 0;
        onProgress({
          phase: 'prefill',
          filesDone,
          filesTotal: files,
          tokensDone: position,
          tokensTotal: ids.length,
          tokensPerSecond: tps,
          ...(tps > 0 ? { etaSeconds: (ids.length - position) / tps } : {}),
        });
        await new Promise<void>((r) => setImmediate(r));
      }
      await writer.done();
      prefillSeconds = (performance.now() - prefillStart) / 1000;
      const sec = (ms: number) => `${(ms / 1000).toFixed(2)} s`;
      this.log(
        `ingest: ${position - resumedTokens} tokens in ${spent.slices} slices, ${sec(prefillSeconds * 1000)}: ` +
          `compute ${sec(spent.compute)}, MLA rows to the snapshot ${sec(spent.rows)}, checkpoints ${sec(spent.checkpoints)}`,
      );
      onProgress({ phase: 'save', filesDone: files, filesTotal: files, tokensDone: ids.length, tokensTotal: ids.length, tokensPerSecond: 0 });
      this.model.syncState(state);
      await snapshot.commit(state, latent);
    } catch (e) {
      await snapshot.abort();
      throw e;
    }
    this.replaceRepo({ settings: ws, ids, state, files: packed, stale: false });
    const computed = ids.length - resumedTokens;
    return {
      files,
      omitted,
      tokens: ids.length,
      resumedTokens,
      upToDate: false,
      seconds: (performance.now() - started) / 1000,
      tokensPerSecond: prefillSeconds > 0 ? computed / prefillSeconds : 0,
      secretsRedacted,
    };
  }

  /** The ingested state of these same folders, offered to a resume so that it need not read the cache back from disk. */
  private heldState(ws: PackSettings): HeldState | undefined {
    const repo = this.repo;
    const key = (roots: string[]) => roots.map((r) => resolve(r)).sort().join('\0');
    if (!repo || key(repo.settings.roots) !== key(ws.roots)) return undefined;
    return {
      ids: repo.ids,
      at: (position, kda) => (kda ? this.model.forkPrefix(repo.state, position, kda) : this.model.forkState(repo.state)),
    };
  }

  /** Makes `repo` the ingested repository; the previous state's device memory is freed now, not at some garbage collection. */
  private replaceRepo(repo: Repo): void {
    const old = this.repo?.state;
    this.repo = repo;
    if (old && old !== repo.state) this.model.releaseState(old);
  }

  /**
   * Lets go of the ingested state (its device memory now); the next ingest or question restores it
   * from the saved state. For memory pressure and for timing a restore.
   */
  releaseRepo(): void {
    if (this.repo) this.model.releaseState(this.repo.state);
    this.repo = null;
  }

  /** Absolute paths of the files in the ingested context, in context order (stable files first). */
  packedFiles(): string[] {
    return this.repo ? this.repo.files.map((f) => f.path) : [];
  }

  /** The files of the ingested context with their content hashes and token spans, in context order. */
  manifest(): PackedFile[] {
    return this.repo ? this.repo.files.map((f) => ({ ...f })) : [];
  }

  /** The ingested context's token ids (system turn with the packed repository), or null before an ingest. */
  repoIds(): Int32Array | null {
    return this.repo?.ids ?? null;
  }

  /**
   * The longest usable saved prefix of `ids`, or null. Saved states that cannot be read or do not
   * fit this model are reported and removed, so the ingest rebuilds them instead of failing.
   */
  private async restore(store: RepoStateStore, ids: Int32Array, ws: PackSettings): Promise<Resumed | null> {
    let resumed: Resumed | null;
    try {
      resumed = await store.resume(ids, (ls, rows, n) => this.model.appendLatentRows(ls, rows, n), this.heldState(ws));
    } catch (e) {
      this.log(`saved states in ${store.dir} are unusable (${e instanceof Error ? e.message : String(e)}); rebuilding them`);
      await store.clear();
      return null;
    }
    const problem = resumed && stateMismatch(resumed.state, this.model.config, resumed.position);
    if (problem) {
      this.log(`saved ${resumed!.from} in ${store.dir} does not fit this model (${problem}); rebuilding it`);
      await store.clear();
      return null;
    }
    return resumed;
  }

  /** A private copy of the ingested state to continue from (MLA pages shared, copy-on-write). */
  forkRepoState(): { state: SequenceState; ids: Int32Array } | null {
    return this.repo ? { state: this.model.forkState(this.repo.state), ids: this.repo.ids } : null;
  }

  /** Answers from the ingested repository (ingesting first when nothing is loaded yet). */
  async ask(req: AskRequest, onText: (delta: string) => void = () => {}, signal?: AbortSignal): Promise<AskResult> {
    const startedAt = performance.now();
    if (!this.repo) await this.ingest(undefined, () => {}, signal);
    const repo = this.repo!;
    const { sampling, prompt } = this.askPrompt(req, repo);
    const state = await withMemoryAdvice('preparing the answer', async () => this.model.forkState(repo.state));
    try {
      const result = await withMemoryAdvice('answering', () => generate(this.model, this.tokenizer, state, prompt, {
        sampling,
        stopIds: stopIds(this.tokenizer),
        onText,
        signal,
        startedAt,
      }));
      return askResult(result);
    } finally {
      this.model.releaseState(state);
    }
  }

  /**
   * Answers several questions about the ingested repository together: each request gets its own
   * fork of the repository state and is prompted exactly as ask() prompts it. Up to
   * ASK_BATCH_LIMIT answers decode in one batch; the next request joins as soon as one ends.
   * `onText` receives each answer's text with the request's index, `onAnswer` each answer as it ends.
   * `signal` cancels every answer, or, one per request, that request's answer alone.
   */
  async askBatch(
    requests: readonly AskRequest[],
    onText: (index: number, delta: string) => void = () => {},
    signal?: AbortSignal | readonly AbortSignal[],
    onAnswer: (index: number, result: AskResult) => void = () => {},
  ): Promise<AskResult[]> {
    const startedAt = performance.now();
    if (requests.length === 0) return [];
    const shared = signal === undefined || signal instanceof AbortSignal ? signal : undefined;
    const signals = requests.map((_, i) => (shared ?? (signal as readonly AbortSignal[] | undefined)?.[i]));
    if (!this.repo) await this.ingest(undefined, () => {}, shared);
    const repo = this.repo!;
    const prompts = requests.map((req) => this.askPrompt(req, repo));
    const stops = stopIds(this.tokenizer);
    // Forked as each answer starts, not all at once: each fork holds a copy of every KDA layer's state.
    const fork = () => this.model.forkState(repo.state);
    const answers = await withMemoryAdvice(`answering ${requests.length} questions together`, () => generateBatch(this.model, this.tokenizer, fork, prompts.map((p) => p.prompt), prompts.map((p, i) => ({
      sampling: p.sampling,
      stopIds: stops,
      onText: (delta: string) => onText(i, delta),
      onDone: (result: Generated) => onAnswer(i, askResult(result)),
      signal: signals[i],
      startedAt,
    })), ASK_BATCH_LIMIT));
    return answers.map(askResult);
  }

  /** The prompt of a question after the repository, refused when it and its answer do not fit the context. */
  private askPrompt(req: AskRequest, repo: Repo): { sampling: SamplingOptions; prompt: number[] } {
    // Each question samples afresh unless the user fixed a seed to repeat a run.
    const sampling: SamplingOptions = { ...DEFAULT_SAMPLING, ...req.sampling, seed: req.sampling?.seed ?? randomInt(2 ** 32) };
    const prompt = questionTokens(this.tokenizer, req.question, req.history, req.selection);
    if (repo.ids.length + prompt.length + sampling.maxNewTokens > this.maxContext) {
      throw new UserError(
        `the question (${prompt.length} tokens) and answer (${sampling.maxNewTokens}) do not fit after the ${repo.ids.length}-token repository in the model's ${this.maxContext}-token context; shorten the chat history or lower kimiLinear.maxContextTokens`,
      );
    }
    return { sampling, prompt };
  }

  async dispose(): Promise<void> {
    this.releaseRepo();
    if (this.ownsModel) await this.model.dispose?.();
  }
}

function askResult(g: Generated): AskResult {
  return { text: g.text, tokens: g.tokens, ttftMs: g.ttftMs, decodeTokensPerSecond: g.decodeTokensPerSecond, stopReason: g.stopReason };
}
