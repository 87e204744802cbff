// Device-only: the Node binding end to end (loader -> context -> upload -> KDA prefill and decode
// -> download) against a float64 token recurrence written here. Bundled and run by test/gpu/run-kda.sh.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { loadCudaBackend } from '../../src/engine/backends/cuda/loader';
import { deviceSkip } from './device';

const bf16Bits = (x: number): number => {
  const f = new Float32Array([x]);
  const u = new Uint32Array(f.buffer)[0];
  return ((u + 0x7fff + ((u >>> 16) & 1)) >>> 16) & 0xffff;
};
const bf16Value = (bits: number): number => new Float32Array(new Uint32Array([bits << 16]).buffer)[0];

function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    const u1 = (s + 1) / 4294967297;
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    const u2 = s / 4294967296;
    return Math.sqrt(-2 * Math.log(u1)) * Math.cos(2 * Math.PI * u2);
  };
}

test('KDA prefill and decode through the Node binding match a float64 recurrence', (t) => {
  const cuda = loadCudaBackend();
  const skip = deviceSkip(cuda);
  if (skip) {
    t.skip(skip);
    return;
  }
  if (!cuda.ok) assert.fail(`a GPU is present but ${cuda.reason}`);
  const { native } = cuda;
  const B = 2, T = 150, H = 2, K = 128, V = 128, nDec = 5;
  const TT = T + nDec;
  const r = rng(7);
  const bf = (n: number) => Uint16Array.from({ length: n }, () => bf16Bits(r()));
  const q = bf(B * TT * H * K), k = bf(B * TT * H * K), v = bf(B * TT * H * V);
  const g = Float32Array.from({ length: B * TT * H * K }, () => r());
  const beta = Float32Array.from({ length: B * TT * H }, () => r());
  const aLog = Float32Array.from({ length: H }, (_, h) => Math.log(1 + 7 * h));
  const dtBias = Float32Array.from({ length: H * K }, () => -3 + 0.5 * r());

  // float64 reference: l2norm, gate, sigmoid, recurrence (spec 2.1)
  const oRef = new Float64Array(B * TT * H * V);
  const sRef = new Float64Array(B * H * K * V);
  for (let b = 0; b < B; b++)
    for (let h = 0; h < H; h++) {
      const S = new Float64Array(K * V);
      for (let tt = 0; tt < TT; tt++) {
        const base = ((b * TT + tt) * H + h) * K;
        let nq = 0, nk = 0;
        for (let c = 0; c < K; c++) {
          nq += bf16Value(q[base + c]) ** 2;
          nk += bf16Value(k[base + c]) ** 2;
        }
        const iq = 1 / Math.sqrt(nq + 1e-6) / Math.sqrt(K), ik = 1 / Math.sqrt(nk + 1e-6);
        const bt = 1 / (1 + Math.exp(-beta[(b * TT + tt) * H + h]));
        const u = new Float64Array(V);
        for (let j = 0; j < V; j++) u[j] = bf16Value(v[base + j]);
        for (let c = 0; c < K; c++) {
          const x = g[base + c] + dtBias[h * K + c];
          const sp = x > 20 ? x : Math.log1p(Math.exp(x));
          const a = Math.exp(-Math.exp(aLog[h]) * sp);
          const kc = bf16Value(k[base + c]) * ik;
          for (let j = 0; j < V; j++) {
            S[c * V + j] *= a;
            u[j] -= S[c * V + j] * kc;
          }
        }
        for (let c = 0; c < K; c++) {
          const kc = bf16Value(k[base + c]) * ik;
          for (let j = 0; j < V; j++) S[c * V + j] += kc * bt * u[j];
        }
        for (let j = 0; j < V; j++) {
          let o = 0;
          for (let c = 0; c < K; c++) o += S[c * V + j] * bf16Value(q[base + c]) * iq;
          oRef[((b * TT + tt) * H + h) * V + j] = o;
        }
      }
      sRef.set(S, (b * H + h) * K * V);
    }

  const ctx = native.create(0);
  const put = (src: ArrayBufferView) => {
    const p = native.alloc(ctx, src.byteLength);
    native.upload(ctx, p, src);
    return p;
  };
  // prefill the first T tokens of each sequence, then decode nDec steps one by one
  const slice = <A extends Uint16Array | Float32Array>(src: A, per: number, t0: number, t1: number): A => {
    const out = new (src.constructor as new (n: number) => A)(B * (t1 - t0) * H * per);
    for (let b = 0; b < B; b++) out.set(src.subarray((b * TT + t0) * H * per, (b * TT + t1) * H * per), b * (t1 - t0) * H * per);
    return out;
  };
  const state = native.alloc(ctx, B * H * K * V * 4);
  native.zero(ctx, state, B * H * K * V * 4);
  const common = { B, H, rawGates: true, l2normQk: true, aLog: put(aLog), dtBias: put(dtBias), state };
  const oPre = native.alloc(ctx, B * T * H * V * 2);
  native.kdaPrefill(ctx, {
    ...common, T, q: put(slice(q, K, 0, T)), k: put(slice(k, K, 0, T)), v: put(slice(v, V, 0, T)),
    g: put(slice(g, K, 0, T)), beta: put(slice(beta, 1, 0, T)), o: oPre,
  });
  const pre = new Uint16Array(B * T * H * V);
  native.download(ctx, oPre, pre);
  const dec: Uint16Array[] = [];
  for (let s = 0; s < nDec; s++) {
    const o = native.alloc(ctx, B * H * V * 2);
    const tt = T + s;
    native.kdaDecode(ctx, {
      ...common, T: 1, q: put(slice(q, K, tt, tt + 1)), k: put(slice(k, K, tt, tt + 1)), v: put(slice(v, V, tt, tt + 1)),
      g: put(slice(g, K, tt, tt + 1)), beta: put(slice(beta, 1, tt, tt + 1)), o,
    });
    const out = new Uint16Array(B * H * V);
    native.download(ctx, o, out);
    dec.push(out);
  }
  const sOut = new Float32Array(B * H * K * V);
  native.download(ctx, state, sOut);
  native.destroy(ctx);

  let num = 0, den = 0;
  for (let b = 0; b < B; b++)
    for (let tt = 0; tt < TT; tt++)
      for (let i = 0; i < H * V; i++) {
        const got = tt < T ? bf16Value(pre[(b * T + tt) * H * V + i]) : bf16Value(dec[tt - T][b * H * V + i]);
        const want = oRef[(b * TT + tt) * H * V + i];
        num += (got - want) ** 2;
        den += want ** 2;
      }
  const oErr = Math.sqrt(num / den);
  num = den = 0;
  for (let i = 0; i < sRef.length; i++) {
    num += (sOut[i] - sRef[i]) ** 2;
    den += sRef[i] ** 2;
  }
  const sErr = Math.sqrt(num / den);
  console.log(`binding: o rel L2 ${oErr.toExponential(2)}, state rel L2 ${sErr.toExponential(2)} on ${cuda.devices[0].name}`);
  assert.ok(oErr < 5e-3, `o rel L2 ${oErr}`);
  assert.ok(sErr < 1e-4, `state rel L2 ${sErr}`);
});
