/**
 * Loads the native CUDA library (native/build/klc_native.node) and says, in words a user can act
 * on, why the CUDA backend is unavailable when it is: not built, not loadable, built for another
 * ABI, no driver, no device. It never throws, so `auto` can fall back to another backend.
 */
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { packageRoot } from '../../../common/package-root';

/** The ABI of native/include/klc_native.h that this TypeScript side was written against. */
export const NATIVE_ABI_VERSION = 16;

/** A context created on one device; freed by destroy() or when garbage-collected. */
export type NativeContext = object & { readonly __klcContext: unique symbol };
/** A device pointer returned by alloc(). */
export type DevicePtr = bigint;

export interface NativeDeviceInfo {
  name: string;
  major: number;
  minor: number;
  multiprocessors: number;
  totalBytes: number;
  freeBytes: number;
  driverVersion: number;
  runtimeVersion: number;
}

/** Arguments of one KDA call; layouts as in klc_kda_args (native/include/klc_native.h). */
export interface NativeKdaArgs {
  B: number;
  T: number;
  H: number;
  K?: number;
  V?: number;
  l2normQk?: boolean;
  rawGates?: boolean;
  scale?: number;
  q: DevicePtr;
  k: DevicePtr;
  v: DevicePtr;
  g: DevicePtr;
  beta: DevicePtr;
  aLog?: DevicePtr;
  dtBias?: DevicePtr;
  state: DevicePtr;
  o: DevicePtr;
}

/** One decode step of KDA for several sequences; layouts as in klc_kda_decode_batch_args. */
export interface NativeKdaDecodeBatchArgs {
  H: number;
  K: number;
  V: number;
  /** Short-conv kernel size. */
  W: number;
  scale: number;
  /** [B, 2HK + HV] q|k|v projections before the short conv. */
  proj: DevicePtr;
  convW: DevicePtr;
  g: DevicePtr;
  /** [B, H] b_proj logits; null: computed in the launch from x and bW. */
  beta: DevicePtr | null;
  aLog: DevicePtr;
  dtBias: DevicePtr;
  o: DevicePtr;
  /** Per sequence: its S [H, K, V] and its conv tail. */
  states: BigUint64Array;
  tails: BigUint64Array;
  /** Without beta: the layer's input [B, d] and b_proj's weight [H, d] (bf16, fp32 when bWF32 is 1). */
  x?: DevicePtr;
  bW?: DevicePtr;
  d?: number;
  bWF32?: number;
  /** With oNormW [V]: o is written gated-RMSNormed (eps), gated by sigmoid(gate [B, H*V]). */
  oNormW?: DevicePtr;
  gate?: DevicePtr;
  eps?: number;
}

/** How one row's token is picked on the device (src/engine/sampler.ts TokenPick; vocab ≤ the row length). */
export interface NativeTokenPick {
  temperature: number;
  topP: number;
  topK: number;
  vocab: number;
  uniform: number;
}

export interface NativeKlc {
  abiVersion(): number;
  buildArchs(): string;
  deviceCount(): { count: number; code?: string; error?: string };
  deviceInfo(device: number): NativeDeviceInfo;
  create(device: number): NativeContext;
  destroy(ctx: NativeContext): void;
  synchronize(ctx: NativeContext): void;
  alloc(ctx: NativeContext, bytes: number): DevicePtr;
  free(ctx: NativeContext, ptr: DevicePtr): void;
  zero(ctx: NativeContext, ptr: DevicePtr, bytes: number): void;
  upload(ctx: NativeContext, dst: DevicePtr, src: ArrayBufferView): void;
  download(ctx: NativeContext, src: DevicePtr, dst: ArrayBufferView): void;
  kdaPrefill(ctx: NativeContext, args: NativeKdaArgs): void;
  kdaDecode(ctx: NativeContext, args: NativeKdaArgs): void;
  kdaTime(ctx: NativeContext, args: NativeKdaArgs, decode: boolean, iters: number): number;
  /** Layer operations: arguments in the order of the C functions in klc_native.h (pointers as BigInt). */
  embed(ctx: NativeContext, table: DevicePtr, ids: DevicePtr, out: DevicePtr, T: number, d: number, tableF32: number): void;
  rmsnorm(ctx: NativeContext, x: DevicePtr, ldx: number, w: DevicePtr, y: DevicePtr, ldy: number, rows: number, D: number, eps: number): void;
  add(ctx: NativeContext, h: DevicePtr, x: DevicePtr, n: number): void;
  /** h += x, then y = RMSNorm(h) * w, over rows of D (klc_add_rmsnorm). */
  addRmsnorm(ctx: NativeContext, h: DevicePtr, x: DevicePtr, w: DevicePtr, y: DevicePtr, rows: number, D: number, eps: number): void;
  copy2d(ctx: NativeContext, src: DevicePtr, lds: number, dst: DevicePtr, ldd: number, rows: number, cols: number): void;
  copyDevice(ctx: NativeContext, dst: DevicePtr, src: DevicePtr, bytes: number): void;
  siluMul(ctx: NativeContext, gu: DevicePtr, h: DevicePtr, rows: number, I: number): void;
  linear(
    ctx: NativeContext, x: DevicePtr, ldx: number, w: DevicePtr, y: DevicePtr, ldy: number, M: number, N: number, K: number,
    batch: number, sx: number, sw: number, sy: number, accumulate: number, wF32: number,
  ): void;
  shortConv(ctx: NativeContext, x: DevicePtr, w: DevicePtr, tail: DevicePtr, yF32: DevicePtr | null, yBf16: DevicePtr | null, T: number, C: number, W: number, split: number): void;
  /** fp32 q, k, v, o; any K <= 128. */
  kdaRecurrent(ctx: NativeContext, args: NativeKdaArgs): void;
  gatedRmsnorm(ctx: NativeContext, o: DevicePtr, oBf16: number, gate: DevicePtr, w: DevicePtr, y: DevicePtr, rows: number, D: number, eps: number): void;
  mlaWorkspaceBytes(ctx: NativeContext, rows: number, L: number, splits: number): number;
  mlaSplits(ctx: NativeContext, rows: number, totalKeys: number): number;
  /** Latent rows [RMSNorm(ckv[:, :L]) * w ; ckv[:, L:D]] written at cache in its type (cacheType: 0 fp32, 1 bf16). */
  mlaAppendLatents(ctx: NativeContext, ckv: DevicePtr, w: DevicePtr, cache: DevicePtr, cacheType: number, rows: number, D: number, L: number, eps: number): void;
  mlaAttention(
    ctx: NativeContext, q: DevicePtr, cache: DevicePtr, cacheType: number, out: DevicePtr, ws: DevicePtr, wsBytes: number, T: number, H: number,
    start: number, D: number, L: number, scale: number, splits: number,
  ): void;
  /** Whether mlaPrefillHeads serves this prefill: tensor-core mode, Kimi's widths, and fewer FLOPs than the absorbed form. */
  mlaHeadsWanted(ctx: NativeContext, T: number, start: number, nope: number, rope: number, dv: number, L: number): boolean;
  /** MLA causal prefill over up-projected per-head keys/values, flash-style on tensor cores; out is [T, H * dv]. */
  mlaPrefillHeads(
    ctx: NativeContext, q: DevicePtr, cache: DevicePtr, cacheType: number, wUKt: DevicePtr, wUV: DevicePtr, out: DevicePtr, T: number, H: number,
    start: number, nope: number, rope: number, dv: number, L: number, scale: number,
  ): void;
  moeRoute(ctx: NativeContext, logits: DevicePtr, bias: DevicePtr, idx: DevicePtr, w: DevicePtr, T: number, E: number, k: number, renorm: number, scaling: number): void;
  moeWorkspaceBytes(ctx: NativeContext, T: number, d: number, I: number, E: number, k: number): number;
  moeExperts(
    ctx: NativeContext, x: DevicePtr, idx: DevicePtr, w: DevicePtr, w13: DevicePtr, w2: DevicePtr, out: DevicePtr, ws: DevicePtr,
    wsBytes: number, T: number, d: number, I: number, E: number, k: number, wF32: number,
  ): void;
  /**
   * Turns tensor-core mode on or off (bf16 activations into cuBLAS GEMMs for bf16 weights) and
   * returns the matrix engine in words; throws with the reason when cuBLAS cannot be used.
   */
  setTensorCores(ctx: NativeContext, enable: number): string;
  /** KDA decode of row b for sequence b (B = states.length ≤ 64): short conv, gates, state update and output in one launch. */
  kdaDecodeBatch(ctx: NativeContext, args: NativeKdaDecodeBatchArgs): void;
  mlaDecodeWorkspaceBytes(ctx: NativeContext, B: number, H: number, D: number, L: number, maxLen: number): number;
  /**
   * Absorbed MLA decode: rows b*H + h of q [B*H, D] over caches[b] (lengths[b] rows, new row included); out [B*H, L].
   * The kernels read lengths[b] - 1 from `positions` (device int32, or 0n for none) and split the keys for
   * `capacity` of them (0: the longest cache), so that a recorded graph stays valid as the lengths grow.
   */
  mlaDecode(
    ctx: NativeContext, q: DevicePtr, caches: BigUint64Array, cacheType: number, lengths: Int32Array, positions: DevicePtr, capacity: number,
    out: DevicePtr, ws: DevicePtr, wsBytes: number, H: number, D: number, L: number, scale: number,
  ): void;
  /** One latent row per cache: row b of ckv [B, D] written at row positions[b] (device int32) of caches[b]. */
  mlaAppendAt(ctx: NativeContext, ckv: DevicePtr, w: DevicePtr, caches: BigUint64Array, cacheType: number, positions: DevicePtr, D: number, L: number, eps: number): void;
  /** Records what is queued on the context's stream from now on instead of running it (klc_graph_begin). */
  graphBegin(ctx: NativeContext): void;
  /** Ends the recording: the graph when `keep`, else discards it (after a call inside it failed). */
  graphEnd(ctx: NativeContext, keep: true): GraphHandle;
  graphEnd(ctx: NativeContext, keep: false): undefined;
  /**
   * Queues a recorded graph again, with the arguments it was recorded with; false (nothing queued)
   * when a workspace the library grows on demand moved since the recording: record it again.
   */
  graphLaunch(ctx: NativeContext, g: GraphHandle): boolean;
  graphFree(ctx: NativeContext, g: GraphHandle): void;
  sampleWorkspaceBytes(ctx: NativeContext, rows: number, ld: number): number;
  /** One token per row of logits [picks.length, ld] into ids (int32 on the device), by pickToken's rule. */
  sample(ctx: NativeContext, logits: DevicePtr, ld: number, picks: readonly NativeTokenPick[], ids: DevicePtr, ws: DevicePtr, wsBytes: number): void;
  /** Fills n bf16 values with the dummy-weight normal draw of src/engine/model/dummy-weights.ts. */
  fillNormalBf16(ctx: NativeContext, out: DevicePtr, n: number, key: number, key2: number, scale: number): void;
  /** y[M, N] (+)= x[M, K] Wᵀ for M <= 8 rows, reading W's codes (klc_wq_gemv). */
  wqGemv(ctx: NativeContext, x: DevicePtr, ldx: number, w: NativeWq, y: DevicePtr, ldy: number, M: number, accumulate: number): void;
  /** klc_wq_gemv of 1..4 matrices of the same codes (INT4, INT8 or FP8) in one launch (klc_wq_gemv_many). */
  wqGemvMany(ctx: NativeContext, jobs: readonly NativeWqJob[], M: number): void;
  /** Rows [row0, row0 + rows) of W dequantized into out, bf16 or fp32 (klc_wq_dequant). */
  wqDequant(ctx: NativeContext, w: NativeWq, row0: number, rows: number, out: DevicePtr, outF32: number): void;
  /** A bf16 matrix [N, K] on the device quantized into packed codes (E4M3 bytes when fp8) and scales, symmetric, as the host quantizer (klc_wq_quantize_bf16). */
  wqQuantizeBf16(ctx: NativeContext, w: DevicePtr, N: number, K: number, bits: number, group: number, fp8: number, packed: DevicePtr, scales: DevicePtr, scalesF32: number): void;
  /** Bytes of the dense expert buffer klc_moe_experts_wq needs for many pairs. */
  moeDenseBytes(ctx: NativeContext, d: number, I: number, E: number, denseF32: number): number;
  /** moeExperts on quantized experts, w13 [E * 2I, d] and w2 [E * d, I] (klc_moe_experts_wq). */
  moeExpertsWq(
    ctx: NativeContext, x: DevicePtr, idx: DevicePtr, w: DevicePtr, w13: NativeWq, w2: NativeWq, out: DevicePtr, ws: DevicePtr,
    wsBytes: number, dense: DevicePtr | null, denseF32: number, T: number, d: number, I: number, E: number, k: number,
  ): void;
  /** The router's logits x Wᵀ (W [E, d] bf16, or fp32) and their top-k (moeRoute's) in one launch, for up to 8 rows (klc_moe_router). */
  moeRouter(
    ctx: NativeContext, x: DevicePtr, w: DevicePtr, wF32: number, bias: DevicePtr, logits: DevicePtr, idx: DevicePtr, weight: DevicePtr,
    T: number, d: number, E: number, k: number, renorm: number, scaling: number,
  ): void;
  /** addRmsnorm (h += a, y = RMSNorm(h) * normW) and moeRouter of y in one launch (klc_moe_router_norm; d a multiple of 4). */
  moeRouterNorm(
    ctx: NativeContext, h: DevicePtr, a: DevicePtr, normW: DevicePtr, eps: number, y: DevicePtr, w: DevicePtr, wF32: number, bias: DevicePtr,
    logits: DevicePtr, idx: DevicePtr, weight: DevicePtr, T: number, d: number, E: number, k: number, renorm: number, scaling: number,
  ): void;
  /**
   * The whole MoE block of up to 8 decode rows on bf16 experts: out = the shared expert (sharedW13 [2I, d], sharedW2
   * [d, I], bf16) + the routed experts, written; the shared expert runs inside the routed experts' small-batch
   * kernels where they are taken (klc_moe_block).
   */
  moeBlock(
    ctx: NativeContext, x: DevicePtr, idx: DevicePtr, w: DevicePtr, w13: DevicePtr, w2: DevicePtr, sharedW13: DevicePtr, sharedW2: DevicePtr,
    out: DevicePtr, ws: DevicePtr, wsBytes: number, T: number, d: number, I: number, E: number, k: number,
  ): void;
  /** moeBlock on quantized experts and shared expert of the same codes (klc_moe_block_wq). */
  moeBlockWq(
    ctx: NativeContext, x: DevicePtr, idx: DevicePtr, w: DevicePtr, w13: NativeWq, w2: NativeWq, sharedW13: NativeWq, sharedW2: NativeWq,
    out: DevicePtr, ws: DevicePtr, wsBytes: number, dense: DevicePtr | null, denseF32: number, T: number, d: number, I: number, E: number, k: number,
  ): void;
  /** Pinned host memory (cudaHostAlloc) for offloaded experts; its address is a HostPtr. */
  hostAlloc(ctx: NativeContext, bytes: number): HostPtr;
  hostFree(ctx: NativeContext, ptr: HostPtr): void;
  /** Copies the array's bytes to host memory at `dst`. */
  hostWrite(dst: HostPtr, src: ArrayBufferView): void;
  /** Queues a copy from pinned host memory to the device on the context's stream (not waited for). */
  copyToDeviceAsync(ctx: NativeContext, dst: DevicePtr, src: HostPtr, bytes: number): void;
  /** The CPU experts' job (klc_host_moe): a thread pool (threads <= 0: one per CPU this process may run on) and pinned buffers for maxTokens rows. */
  hostMoeCreate(ctx: NativeContext, threads: number, maxTokens: number, d: number, k: number): HostMoeHandle;
  hostMoeFree(job: HostMoeHandle): void;
  hostMoeThreads(job: HostMoeHandle): number;
  /** Queues the copy of x [T, d], idx and w [T, k] to the job's pinned buffers. */
  hostMoeBegin(ctx: NativeContext, job: HostMoeHandle, x: DevicePtr, idx: DevicePtr, w: DevicePtr, T: number): void;
  /** Waits for begin's copies, runs the experts (host klc_wq matrices) on the CPU, queues out += their sum through yDev [T, d]. */
  hostMoeFinish(ctx: NativeContext, job: HostMoeHandle, w13: NativeWq, w2: NativeWq, out: DevicePtr, yDev: DevicePtr, T: number, d: number, I: number, E: number, k: number): void;
  /** A growable, forkable device buffer (klc_vbuf, an MLA cache); its handle is a host address. */
  vbufCreate(ctx: NativeContext): VbufHandle;
  /** Makes `bytes` usable, keeping the first `used`; returns the base address, which may have moved. */
  vbufReserve(ctx: NativeContext, buf: VbufHandle, bytes: number, used: number): DevicePtr;
  /** A buffer sharing the source's complete granules below `used` and holding a copy of the rest. */
  vbufFork(ctx: NativeContext, src: VbufHandle, used: number): { buf: VbufHandle; base: DevicePtr };
  /** Device bytes the buffer makes usable, shared ones included. */
  vbufBytes(buf: VbufHandle): number;
  vbufFree(ctx: NativeContext, buf: VbufHandle): void;
}

/**
 * A weight-only quantized matrix (klc_wq of klc_native.h), in device memory or, for offloaded
 * experts, pinned host memory: W [N, K] in compressed-tensors' pack-quantized layout, bits 4 or 8,
 * scales [N, K / group] bf16 or fp32, zero points packed down the columns or null (symmetric); or,
 * with fp8, the E4M3 bytes of [N, K] as stored (bits 8, no zero points).
 */
export interface NativeWq {
  packed: DevicePtr;
  scales: DevicePtr;
  zeros: DevicePtr | null;
  bits: 4 | 8;
  N: number;
  K: number;
  group: number;
  scalesF32: boolean;
  fp8: boolean;
}

/** One product of wqGemvMany: y[M, w.N] (row stride ldy) (+)= x[M, w.K] (row stride ldx) Wᵀ. */
export interface NativeWqJob {
  x: DevicePtr;
  ldx: number;
  w: NativeWq;
  y: DevicePtr;
  ldy: number;
  accumulate: 0 | 1;
}

/** A klc_vbuf's host address: never dereferenced in JS, only handed back to the library. */
export type VbufHandle = bigint;
/** A klc_graph's host address, handed back to the library only. */
export type GraphHandle = bigint;
/** An address in pinned host memory from hostAlloc(). */
export type HostPtr = bigint;
/** A klc_host_moe's host address. */
export type HostMoeHandle = bigint;

export type CudaUnavailableCode = 'NOT_BUILT' | 'LOAD_FAILED' | 'ABI' | 'NO_DRIVER' | 'NO_DEVICE' | 'CUDA';

export type CudaAvailability =
  | { ok: true; path: string; native: NativeKlc; devices: NativeDeviceInfo[] }
  | { ok: false; code: CudaUnavailableCode; reason: string; path?: string };

const LIBRARY = join('native', 'build', 'klc_native.node');

/**
 * Where the library is looked for: $KLC_NATIVE_PATH, else native/build/ in the package folder
 * (the extension root for dist/ bundles, the repository for sources).
 */
export function nativeLibraryPath(): string {
  if (process.env.KLC_NATIVE_PATH) return resolve(process.env.KLC_NATIVE_PATH);
  try {
    return join(packageRoot(), LIBRARY);
  } catch {
    // A bundle copied outside the package (as the device scripts may do) still gets an answer,
    // not an exception: the loader promises a reason, never a throw.
    return resolve(__dirname, LIBRARY);
  }
}

/**
 * Whether this runs from a checkout (native/src beside the bundles), where building the library is
 * the advice, rather than from an installed package, which ships it prebuilt or not at all.
 */
function fromSources(): boolean {
  try {
    return existsSync(join(packageRoot(), 'native', 'src'));
  } catch {
    return true;
  }
}

function firstLine(e: unknown): string {
  const text = e instanceof Error ? e.message : String(e);
  return text.split('\n')[0];
}

/** Loads the library at `path` (default: nativeLibraryPath()) and lists the usable devices. */
export function loadCudaBackend(path: string = nativeLibraryPath()): CudaAvailability {
  if (!existsSync(path)) {
    return {
      ok: false,
      code: 'NOT_BUILT',
      path,
      reason: fromSources()
        ? `CUDA backend not available: the native library ${path} does not exist. Build it with "npm run build:native" (needs the CUDA toolkit's nvcc), or use the onnx backend.`
        : `CUDA backend not available: this installed package (${process.platform}-${process.arch}) has no CUDA library; the CUDA backend ships in the linux-x64 package only. The onnx backend runs here.`,
    };
  }
  let native: NativeKlc;
  try {
    const mod = { exports: {} as unknown };
    process.dlopen(mod, path);
    native = mod.exports as NativeKlc;
  } catch (e) {
    return {
      ok: false,
      code: 'LOAD_FAILED',
      path,
      reason: `CUDA backend not available: ${path} could not be loaded (${firstLine(e)}). ${fromSources() ? 'Rebuild it with "npm run build:native" on this machine' : 'Reinstall the extension\'s linux-x64 package'}, or use the onnx backend.`,
    };
  }
  const abi = typeof native.abiVersion === 'function' ? native.abiVersion() : -1;
  if (abi !== NATIVE_ABI_VERSION) {
    return {
      ok: false,
      code: 'ABI',
      path,
      reason: `CUDA backend not available: ${path} has ABI version ${abi}, this build expects ${NATIVE_ABI_VERSION}. ${fromSources() ? 'Rebuild it with "npm run build:native".' : 'Reinstall the extension: its files are from different versions.'}`,
    };
  }
  const found = native.deviceCount();
  if (found.count < 1) {
    const code: CudaUnavailableCode = found.code === 'NO_DRIVER' ? 'NO_DRIVER' : found.code === 'CUDA' ? 'CUDA' : 'NO_DEVICE';
    return { ok: false, code, path, reason: `CUDA backend not available: ${found.error ?? 'no CUDA device found.'}` };
  }
  const devices: NativeDeviceInfo[] = [];
  for (let i = 0; i < found.count; i++) {
    try {
      devices.push(native.deviceInfo(i));
    } catch (e) {
      return { ok: false, code: 'CUDA', path, reason: `CUDA backend not available: device ${i}: ${firstLine(e)}` };
    }
  }
  return { ok: true, path, native, devices };
}
