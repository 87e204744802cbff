/**
 * The order in which klc serve's requests use the one loaded model: arrival order, except that
 * chat requests for the same workspace that are waiting when the model frees up start together
 * in one decode batch (session.askBatch, up to ASK_BATCH_LIMIT), each with its own cancel. A
 * completion, or a chat alone, runs by itself.
 */
import type { AskRequest } from '../engine/api';
import { ASK_BATCH_LIMIT } from '../engine/session';
import { isUserError } from '../common/errors';
import type { Generation, ServedWorkspace } from './served-workspace';

interface Waiting {
  signal: AbortSignal;
  settle: (g: Generation | null) => void;
  fail: (e: unknown) => void;
}

interface ChatEntry extends Waiting {
  kind: 'chat';
  workspace: ServedWorkspace;
  request: AskRequest;
  onText: (delta: string) => void;
}

interface AloneEntry extends Waiting {
  kind: 'alone';
  run: () => Promise<Generation>;
}

type Entry = ChatEntry | AloneEntry;

export class GenerationQueue {
  private readonly waiting: Entry[] = [];
  private pumping = false;

  constructor(private readonly log: (line: string) => void) {}

  /** A chat turn after the workspace's repository; null when its signal fired before it started. */
  chat(workspace: ServedWorkspace, request: AskRequest, onText: (delta: string) => void, signal: AbortSignal): Promise<Generation | null> {
    return this.enqueue((settle, fail) => ({ kind: 'chat', workspace, request, onText, signal, settle, fail }));
  }

  /** Work that runs by itself; null when its signal fired before it started. */
  alone(run: () => Promise<Generation>, signal: AbortSignal): Promise<Generation | null> {
    return this.enqueue((settle, fail) => ({ kind: 'alone', run, signal, settle, fail }));
  }

  private enqueue(make: (settle: Waiting['settle'], fail: Waiting['fail']) => Entry): Promise<Generation | null> {
    return new Promise((settle, fail) => {
      this.waiting.push(make(settle, fail));
      void this.pump();
    });
  }

  private async pump(): Promise<void> {
    if (this.pumping) return;
    this.pumping = true;
    try {
      while (this.waiting.length > 0) {
        const head = this.waiting.shift()!;
        if (head.signal.aborted) {
          head.settle(null);
          continue;
        }
        if (head.kind === 'alone') {
          await head.run().then(head.settle, head.fail);
          continue;
        }
        const batch = [head, ...this.takeChats(head.workspace, ASK_BATCH_LIMIT - 1)];
        await (batch.length === 1 ? this.runChat(head) : this.runBatch(batch));
      }
    } finally {
      this.pumping = false;
    }
  }

  /** Removes up to `limit` waiting, uncancelled chat entries for `workspace` from the queue. */
  private takeChats(workspace: ServedWorkspace, limit: number): ChatEntry[] {
    const taken: ChatEntry[] = [];
    for (let i = 0; i < this.waiting.length && taken.length < limit; ) {
      const e = this.waiting[i];
      if (e.kind === 'chat' && e.workspace === workspace && !e.signal.aborted) {
        taken.push(e);
        this.waiting.splice(i, 1);
      } else {
        i++;
      }
    }
    return taken;
  }

  private runChat(e: ChatEntry): Promise<void> {
    return e.workspace.chat(e.request, e.onText, e.signal).then(e.settle, e.fail);
  }

  private async runBatch(batch: ChatEntry[]): Promise<void> {
    const done = new Set<number>();
    try {
      await batch[0].workspace.chatBatch(batch, (i, g) => {
        done.add(i);
        batch[i].settle(g);
      });
      this.log(`answered ${batch.length} chat requests for ${batch[0].workspace.id} in one batch`);
    } catch (e) {
      // A question that does not fit is refused before any answer starts: the others run alone,
      // so that only that one gets the error.
      if (isUserError(e) && done.size === 0) {
        for (const entry of batch) await this.runChat(entry);
        return;
      }
      batch.forEach((entry, i) => done.has(i) || entry.fail(e));
    }
  }
}
