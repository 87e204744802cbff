/**
 * When to start the engine again after it crashed: at once after the first crash, then with
 * doubling pauses while it keeps crashing soon after each start, so that a model that kills the
 * process on load does not turn every keystroke-triggered request into a spawn loop.
 */
export interface BackoffPolicy {
  /** Pause after the second crash in a row; the first restart is immediate. */
  initialMs: number;
  factor: number;
  maxMs: number;
  /** A process that ran at least this long before crashing starts the count again. */
  resetAfterMs: number;
}

export const defaultBackoff: BackoffPolicy = { initialMs: 1000, factor: 2, maxMs: 30_000, resetAfterMs: 60_000 };

export class RestartBackoff {
  private consecutive = 0;
  private lastCrashAt = 0;

  constructor(private readonly policy: BackoffPolicy = defaultBackoff, private readonly now: () => number = Date.now) {}

  /** Records a crash of a process that had been running for `uptimeMs`. */
  recordCrash(uptimeMs: number): void {
    this.consecutive = uptimeMs >= this.policy.resetAfterMs ? 1 : this.consecutive + 1;
    this.lastCrashAt = this.now();
  }

  /** Crashes counted so far without a long enough run in between. */
  get crashesInARow(): number {
    return this.consecutive;
  }

  /** How long to wait before the next start, given the time already passed since the crash. */
  delayBeforeStart(): number {
    if (this.consecutive <= 1) return 0;
    const pause = Math.min(this.policy.maxMs, this.policy.initialMs * this.policy.factor ** (this.consecutive - 2));
    return Math.max(0, this.lastCrashAt + pause - this.now());
  }
}
