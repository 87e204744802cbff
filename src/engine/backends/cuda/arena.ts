/**
 * A bump allocator over one device buffer for the activations of one layer. The model's order of
 * calls makes lifetimes simple: everything a layer allocates is dead when the next layer's input
 * norm (or the final norm) starts, so the arena is reset there instead of freeing piecemeal
 * (cudaMalloc/cudaFree per op would synchronise the GPU). Each reset starts a new generation;
 * a buffer handed out earlier is stale afterwards, and using it is a programming error.
 */
import type { DevicePtr, NativeContext, NativeKlc } from './loader';

const ALIGN = 256;

export class Arena {
  private buffer: DevicePtr = 0n;
  private size = 0;
  private used = 0;
  generation = 0;

  constructor(
    private readonly native: NativeKlc,
    private readonly ctx: NativeContext,
  ) {}

  get capacity(): number {
    return this.size;
  }

  /** Where the buffer lies now: a recorded CUDA graph holds addresses inside it. */
  get base(): DevicePtr {
    return this.buffer;
  }

  /** Starts a new generation with room for at least `bytes`, reallocating (never shrinking) if needed. */
  reset(bytes: number): void {
    if (bytes > this.size) {
      if (this.size) this.native.free(this.ctx, this.buffer);
      this.buffer = 0n;
      this.size = 0;
      this.buffer = this.native.alloc(this.ctx, bytes);
      this.size = bytes;
    }
    this.used = 0;
    this.generation++;
  }

  alloc(bytes: number): DevicePtr {
    const start = this.used;
    const end = start + Math.ceil(Math.max(bytes, 1) / ALIGN) * ALIGN;
    if (end > this.size) throw new Error(`CUDA workspace exhausted: ${end} of ${this.size} bytes (planning bug)`);
    this.used = end;
    return this.buffer + BigInt(start);
  }

  free(): void {
    if (this.size) this.native.free(this.ctx, this.buffer);
    this.size = 0;
    this.used = 0;
  }
}
