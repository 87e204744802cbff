/**
 * Running the routed experts of offloaded MoE layers (their INT4/INT8 weights in pinned host
 * memory, see device-weights.ts). Few tokens (decode, short questions) run on the CPU: reading the
 * k experts each token chose from host memory beats copying the layer over PCIe. Longer prefill
 * slices use most of a layer's experts, many tokens each, so the layer's weights are copied into a
 * device staging buffer (the plan's offloadStagingBytes) and the GPU kernels run there, as
 * llama.cpp's op offload does.
 *
 * KLC_OFFLOAD_CPU_TOKENS sets the largest row count computed on the CPU (default 32);
 * KLC_OFFLOAD_THREADS the CPU threads (default one per CPU the process may run on).
 */
import { UserError } from '../../../common/errors';
import type { DevicePtr, HostMoeHandle, NativeContext, NativeKlc, NativeWq } from './loader';

export const DEFAULT_CPU_TOKENS = 32;

/** Bytes of a klc_wq's codes, zero points and scales. */
export function wqParts(w: NativeWq): { packed: number; zeros: number; scales: number } {
  const groups = w.K / w.group;
  return {
    packed: (w.N * w.K * w.bits) / 8,
    zeros: w.zeros ? Math.ceil(w.N / (32 / w.bits)) * groups * 4 : 0,
    scales: w.N * groups * (w.scalesF32 ? 4 : 2),
  };
}

/**
 * Where each part of two matrices goes in one staging buffer, packed without gaps yet aligned as
 * the kernels read them: the codes first (whole 16-byte vectors: K is a multiple of 32 codes), then
 * the int32 zero points, then fp32 scales before bf16 ones. The total is the matrices' bytes.
 */
export function stagingLayout(mats: readonly NativeWq[]): { offsets: { packed: number; zeros: number; scales: number }[]; bytes: number } {
  const parts = mats.map(wqParts);
  const offsets = mats.map(() => ({ packed: 0, zeros: 0, scales: 0 }));
  let at = 0;
  const place = (key: 'packed' | 'zeros' | 'scales', which: (i: number) => boolean) => {
    for (const [i, p] of parts.entries()) {
      if (!which(i)) continue;
      offsets[i][key] = at;
      at += p[key];
    }
  };
  place('packed', () => true);
  place('zeros', () => true);
  place('scales', (i) => mats[i].scalesF32);
  place('scales', (i) => !mats[i].scalesF32);
  return { offsets, bytes: at };
}

function envInt(name: string, dflt: number, min: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return dflt;
  const v = Number(raw);
  if (!Number.isSafeInteger(v) || v < min) throw new UserError(`${name} must be an integer of at least ${min}, got "${raw}".`);
  return v;
}

export class HostExperts {
  /** The most rows computed on the CPU; more are staged to the GPU. */
  readonly cpuTokens: number;

  private constructor(
    private readonly native: NativeKlc,
    private readonly ctx: NativeContext,
    private readonly job: HostMoeHandle,
    private readonly staging: DevicePtr,
    private readonly stagingBytes: number,
    cpuTokens: number,
  ) {
    this.cpuTokens = cpuTokens;
  }

  /** The CPU job and the device staging buffer of `stagingBytes` (the largest offloaded layer's experts). */
  static create(native: NativeKlc, ctx: NativeContext, d: number, k: number, stagingBytes: number): HostExperts {
    const cpuTokens = envInt('KLC_OFFLOAD_CPU_TOKENS', DEFAULT_CPU_TOKENS, 1);
    const threads = envInt('KLC_OFFLOAD_THREADS', 0, 0);
    const job = native.hostMoeCreate(ctx, threads, cpuTokens, d, k);
    try {
      return new HostExperts(native, ctx, job, native.alloc(ctx, stagingBytes), stagingBytes, cpuTokens);
    } catch (e) {
      native.hostMoeFree(job);
      throw e;
    }
  }

  get threads(): number {
    return this.native.hostMoeThreads(this.job);
  }

  onCpu(T: number): boolean {
    return T <= this.cpuTokens;
  }

  /** Queues the copy of x, idx and w to the host (then queue the shared expert, then finish). */
  begin(x: DevicePtr, idx: DevicePtr, w: DevicePtr, T: number): void {
    this.native.hostMoeBegin(this.ctx, this.job, x, idx, w, T);
  }

  /** The experts on the CPU; out += their weighted sum, through yDev [T, d]. */
  finish(w13: NativeWq, w2: NativeWq, out: DevicePtr, yDev: DevicePtr, T: number, d: number, I: number, E: number, k: number): void {
    this.native.hostMoeFinish(this.ctx, this.job, w13, w2, out, yDev, T, d, I, E, k);
  }

  /** Queues the copy of a layer's experts into the staging buffer; returns them as device matrices there. */
  stage(w13: NativeWq, w2: NativeWq): [NativeWq, NativeWq] {
    const { offsets, bytes } = stagingLayout([w13, w2]);
    if (bytes > this.stagingBytes) throw new Error(`offloaded experts of ${bytes} bytes exceed the ${this.stagingBytes}-byte staging buffer (planning bug)`);
    const staged = [w13, w2].map((w, i): NativeWq => {
      const parts = wqParts(w);
      const at = (key: 'packed' | 'zeros' | 'scales') => this.staging + BigInt(offsets[i][key]);
      this.native.copyToDeviceAsync(this.ctx, at('packed'), w.packed, parts.packed);
      this.native.copyToDeviceAsync(this.ctx, at('scales'), w.scales, parts.scales);
      if (w.zeros) this.native.copyToDeviceAsync(this.ctx, at('zeros'), w.zeros, parts.zeros);
      return { ...w, packed: at('packed'), scales: at('scales'), zeros: w.zeros ? at('zeros') : null };
    });
    return [staged[0], staged[1]];
  }

  dispose(): void {
    this.native.free(this.ctx, this.staging);
    this.native.hostMoeFree(this.job);
  }
}
