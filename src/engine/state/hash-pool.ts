/**
 * sha256 of large buffers on a worker thread. A state file hashes every MLA row block and KDA state
 * it writes (about 2.5 GB for a 128k-token ingest of the 48B model, rows and checkpoints); on the
 * main thread that is time the GPU waits, since the next prefill slice is launched from there. Only
 * buffers the caller gives up are sent: their memory moves to the worker and back (a copy would
 * cost more than the hash), so the caller uses the bytes handed back, never its own view.
 */
import { createHash } from 'node:crypto';
import { Worker } from 'node:worker_threads';

/** Below this, a round trip to the worker costs more than hashing in place. */
const INLINE_BYTES = 1 << 20;

const WORKER_SOURCE = `
const { parentPort } = require('node:worker_threads');
const { createHash } = require('node:crypto');
parentPort.on('message', ({ id, buffer, offset, length }) => {
  const sha = createHash('sha256').update(new Uint8Array(buffer, offset, length)).digest('hex');
  parentPort.postMessage({ id, sha, buffer }, [buffer]);
});
`;

interface Job {
  resolve: (r: { sha: string; buffer: ArrayBuffer }) => void;
  reject: (e: Error) => void;
}

let worker: Worker | null = null;
const jobs = new Map<number, Job>();
let nextId = 0;

function theWorker(): Worker {
  if (worker) return worker;
  const w = new Worker(WORKER_SOURCE, { eval: true });
  w.unref();
  w.on('message', ({ id, sha, buffer }: { id: number; sha: string; buffer: ArrayBuffer }) => {
    const job = jobs.get(id);
    jobs.delete(id);
    // An idle worker must not keep the process alive.
    if (jobs.size === 0) w.unref();
    job?.resolve({ sha, buffer });
  });
  const fail = (e: Error) => {
    if (worker === w) worker = null;
    for (const job of jobs.values()) job.reject(new Error(`hashing on a worker thread failed: ${e.message}`));
    jobs.clear();
  };
  w.on('error', fail);
  w.on('exit', (code) => fail(new Error(`the worker exited with code ${code}`)));
  worker = w;
  return w;
}

export function sha256Hex(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

/**
 * sha256 (hex) of `bytes`, whose memory the caller gives up: the result's `bytes` hold the same
 * values (the same view, or one over the memory the worker handed back). Hashed in place when small
 * or when the view does not cover its whole buffer (its other bytes may belong to someone else).
 */
export async function sha256Taking(bytes: Uint8Array): Promise<{ sha: string; bytes: Uint8Array }> {
  const whole = bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength && bytes.buffer instanceof ArrayBuffer;
  if (bytes.byteLength < INLINE_BYTES || !whole) return { sha: sha256Hex(bytes), bytes };
  const w = theWorker();
  const id = nextId++;
  const { sha, buffer } = await new Promise<{ sha: string; buffer: ArrayBuffer }>((resolve, reject) => {
    jobs.set(id, { resolve, reject });
    w.ref();
    w.postMessage({ id, buffer: bytes.buffer, offset: 0, length: bytes.byteLength }, [bytes.buffer as ArrayBuffer]);
  });
  return { sha, bytes: new Uint8Array(buffer) };
}
