/**
 * CUDA graphs of decode steps. One decode step of the 48B model queues about 700 small launches
 * (norms, GEMVs, the KDA and MLA steps of 27 layers); the host takes longer to queue them through
 * N-API than the GPU takes to run them, so short-context steps were host-bound (4k TPOT 5 ms
 * against a 1.2 ms byte floor on the H100). The backend therefore records one step's launches as a
 * graph and replays it for the steps after, without calling the layers again.
 *
 * A replay repeats every launch argument of the recording, so everything a step takes from the
 * host either lives in device memory the recorded kernels read (the token ids and the MLA
 * positions, uploaded before each step) or is part of the key: the batch's state buffers, the
 * activation buffers, the MLA split plan's capacity. A step whose key is new runs as usual first
 * (its on-demand allocations happen then, outside any recording); the next step with that key is
 * recorded and launched; the steps after replay it.
 */
import type { GraphHandle, NativeContext, NativeKlc } from './loader';

/** What a recorded pass returns: its output must lie outside the per-layer arena (see Arena). */
export interface GraphOutput {
  readonly generation: number;
}

interface Recorded<A> {
  key: string;
  graph: GraphHandle;
  out: A;
}

export class DecodeGraphs<A extends GraphOutput> {
  private readonly recorded = new Map<number, Recorded<A>>();
  /** The key of the last step per batch size that ran without a graph. */
  private readonly seen = new Map<number, string>();
  /** Batch sizes whose recording failed: they keep running without graphs. */
  private readonly failed = new Set<number>();
  /** Steps replayed from a graph so far (for tests and reports). */
  replays = 0;

  constructor(
    private readonly native: NativeKlc,
    private readonly ctx: NativeContext,
    /** Off: every step runs its pass (KLC_CUDA_GRAPHS=0, expert offload, timed profiles). */
    public enabled: boolean,
    private readonly log: (line: string) => void,
  ) {}

  /**
   * One step of a batch of B sequences: replays the graph recorded under `key`, or runs `pass`
   * (recording it when the previous step of this batch size had the same key). `advance` does to
   * the host's bookkeeping what the pass would have done; `undo` takes back what a pass that was
   * recorded but could not be used did to it (the pass then runs again, unrecorded).
   */
  async step(B: number, key: string, pass: () => Promise<A>, advance: () => void, undo: () => void): Promise<A> {
    if (!this.enabled) return pass();
    const have = this.recorded.get(B);
    if (have?.key === key && this.native.graphLaunch(this.ctx, have.graph)) {
      advance();
      this.replays++;
      return have.out;
    }
    // Recorded under another key, or stale (a workspace it uses has moved).
    if (have) this.drop(B);
    if (this.failed.has(B) || this.seen.get(B) !== key) {
      this.seen.set(B, key);
      return pass();
    }
    return this.record(B, key, pass, undo);
  }

  dispose(): void {
    for (const B of [...this.recorded.keys()]) this.drop(B);
  }

  private async record(B: number, key: string, pass: () => Promise<A>, undo: () => void): Promise<A> {
    const n = this.native;
    n.graphBegin(this.ctx);
    let out: A;
    try {
      out = await pass();
    } catch (e) {
      n.graphEnd(this.ctx, false);
      undo();
      return this.giveUp(B, e, pass);
    }
    let graph: GraphHandle;
    try {
      graph = n.graphEnd(this.ctx, true);
    } catch (e) {
      undo();
      return this.giveUp(B, e, pass);
    }
    if (out.generation !== -1 || !n.graphLaunch(this.ctx, graph)) {
      n.graphFree(this.ctx, graph);
      undo();
      return this.giveUp(B, new Error(out.generation !== -1 ? 'the step ends in arena memory' : 'a workspace moved while it was recorded'), pass);
    }
    this.recorded.set(B, { key, graph, out });
    return out;
  }

  private giveUp(B: number, e: unknown, pass: () => Promise<A>): Promise<A> {
    this.failed.add(B);
    this.log(`cuda: decode steps of ${B} sequence${B === 1 ? '' : 's'} run without a CUDA graph (recording one failed: ${e instanceof Error ? e.message : String(e)}); answers stay correct, each token takes longer.`);
    return pass();
  }

  private drop(B: number): void {
    const have = this.recorded.get(B);
    if (!have) return;
    this.recorded.delete(B);
    this.native.graphFree(this.ctx, have.graph);
  }
}
