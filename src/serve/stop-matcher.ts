/**
 * Stop sequences over streamed text: the engine stops on end tokens, the OpenAI API also on
 * client-given texts. Text that could be the start of a stop sequence is held back until the next
 * delta shows it is not, so a streamed answer never contains part of a stop sequence.
 */
export class StopMatcher {
  private pending = '';
  private stoppedAt = false;
  private readonly holdBack: number;

  constructor(private readonly stops: readonly string[]) {
    this.holdBack = Math.max(0, ...stops.map((s) => s.length - 1));
  }

  get stopped(): boolean {
    return this.stoppedAt;
  }

  /** Takes the next delta and returns the text that can be sent now. */
  push(delta: string): string {
    if (this.stoppedAt) return '';
    if (this.stops.length === 0) return delta;
    this.pending += delta;
    let cut = -1;
    for (const s of this.stops) {
      const at = this.pending.indexOf(s);
      if (at >= 0 && (cut < 0 || at < cut)) cut = at;
    }
    if (cut >= 0) {
      this.stoppedAt = true;
      const out = this.pending.slice(0, cut);
      this.pending = '';
      return out;
    }
    // Keep the longest tail that is still a prefix of some stop sequence.
    let keep = Math.min(this.holdBack, this.pending.length);
    while (keep > 0 && !this.stops.some((s) => s.startsWith(this.pending.slice(this.pending.length - keep)))) keep--;
    const out = this.pending.slice(0, this.pending.length - keep);
    this.pending = this.pending.slice(this.pending.length - keep);
    return out;
  }

  /** The held-back text once the answer has ended without a stop sequence. */
  flush(): string {
    const out = this.stoppedAt ? '' : this.pending;
    this.pending = '';
    return out;
  }
}
