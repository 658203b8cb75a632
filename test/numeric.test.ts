import { afterAll, describe, expect, it } from 'vitest';
import { OnnxRuntime } from '@transformaly/runtime-onnx';
import {
  NeighborIndex,
  NotPositiveDefiniteError,
  assertFinite,
  assertUsableMatrix,
  kmeansPlusPlus,
  logGaussianDensities,
  cholesky,
  columnMeans,
  constantColumns,
  covariance,
  createMatrix,
  createNumericEngine,
  createRng,
  fromRows,
  inverseSPD,
  invertLowerTriangular,
  logDetSPD,
  logsumexpRows,
  pairwiseSqDist,
  precisionCholesky,
  selectSmallest,
  symmetricEigen,
  transpose,
  type Matrix64,
} from '@transformaly/core';
import type { Matrix } from '@transformaly/core';
import { expectClose } from './fixtures/close.js';

// The engine the scorers use, on onnxruntime with two threads: made here, as a stage gets it from its pipeline.
const runtime = new OnnxRuntime({ threads: 2 });
const engine = createNumericEngine(runtime);
afterAll(async () => {
  await engine.dispose();
  await runtime.dispose();
});

function randomMatrix(rows: number, cols: number, seed: number, scale = 1, offset = 0): Matrix64 {
  const rng = createRng(seed);
  const m = createMatrix(rows, cols);
  for (let i = 0; i < m.data.length; i++) m.data[i] = offset + scale * rng.normal();
  return m;
}

/** Straightforward reference product, only for checking the engine on small inputs. */
function naiveMatmul(a: Matrix, b: Matrix): Float64Array {
  const out = new Float64Array(a.rows * b.cols);
  for (let i = 0; i < a.rows; i++)
    for (let k = 0; k < a.cols; k++) for (let j = 0; j < b.cols; j++) out[i * b.cols + j] += a.data[i * a.cols + k] * b.data[k * b.cols + j];
  return out;
}


describe('matrix products on the engine', () => {
  it('matmul matches a reference product for every transpose combination, in float64', async () => {
    const A = randomMatrix(37, 23, 1);
    const B = randomMatrix(23, 41, 2);
    const ref = naiveMatmul(A, B);
    expectClose((await engine.matmul(A, B)).data, ref, 1e-13, 'A B');
    expectClose((await engine.matmul(transpose(A), B, { transA: true })).data, ref, 1e-13, 'transA');
    expectClose((await engine.matmul(A, transpose(B), { transB: true })).data, ref, 1e-13, 'transB');
    const both = await engine.matmul(transpose(A), transpose(B), { transA: true, transB: true });
    expect([both.rows, both.cols]).toEqual([37, 41]);
    expectClose(both.data, ref, 1e-13, 'transA transB');
    // float32 products are close but visibly rounded.
    const f32 = await engine.matmul(A, B, { precision: 'float32' });
    expectClose(f32.data, ref, 1e-5, 'float32 product');
    expect(Array.from(f32.data)).not.toEqual(Array.from(ref));
  });

  it('matmul rejects mismatched inner dimensions', async () => {
    await expect(engine.matmul(randomMatrix(3, 4, 1), randomMatrix(5, 2, 2))).rejects.toThrow(/inner dimensions/);
  });

  it('accepts float32 input and views into a larger buffer', async () => {
    const big = randomMatrix(10, 6, 3);
    const view: Matrix = { rows: 4, cols: 6, data: Float32Array.from(big.data.subarray(12, 36)) };
    const B = randomMatrix(6, 3, 4);
    const out = await engine.matmul(view, B);
    expectClose(out.data, naiveMatmul({ rows: 4, cols: 6, data: Float64Array.from(view.data) }, B), 1e-13, 'product of a view');
  });

  it('compiles each graph once on its runtime, whatever the shapes, and releases it on dispose, even mid-run', async () => {
    const one = new OnnxRuntime({ threads: 1 });
    const created: string[] = [];
    const released: string[] = [];
    const spy = {
      name: 'spy',
      async createNumericSession(graph: Uint8Array) {
        const session = await one.createNumericSession(graph);
        const id = `session${created.length}`;
        created.push(id);
        return { run: session.run.bind(session), dispose: async () => (released.push(id), session.dispose()) };
      },
    };
    const own = createNumericEngine(spy);
    expect(own.runtime).toBe('spy');
    const A = randomMatrix(20, 10, 5);
    const B = randomMatrix(7, 3, 6);
    expectClose((await own.matmul(A, A, { transB: true })).data, naiveMatmul(A, transpose(A)), 1e-13, 'A A^T');
    expectClose((await own.matmul(B, B, { transB: true })).data, naiveMatmul(B, transpose(B)), 1e-13, 'B B^T');
    expect(created).toEqual(['session0']);
    // A dispose while a product runs lets it finish, then releases its session.
    const running = own.matmul(A, A, { transB: true });
    const disposed = own.dispose();
    expect(released).toEqual([]);
    expectClose((await running).data, naiveMatmul(A, transpose(A)), 1e-13, 'A A^T during a dispose');
    await disposed;
    expect(released).toEqual(['session0']);
    // Compiled again on demand.
    expectClose((await own.matmul(B, B, { transA: true })).data, naiveMatmul(transpose(B), B), 1e-13, 'B^T B after a dispose');
    expect(created).toEqual(['session0', 'session1']);
    await own.dispose();
    await one.dispose();
    expect(released).toEqual(['session0', 'session1']);
  });

  it('weightedScatter computes sum_i w_ik (x_i - m_k)(x_i - m_k)^T for every component in one call', async () => {
    const n = 11;
    const d = 4;
    const K = 3;
    const X = randomMatrix(n, d, 17);
    const means = randomMatrix(K, d, 18);
    const rng = createRng(19);
    const w = Float64Array.from({ length: K * n }, () => rng.next());
    const out = await engine.weightedScatter(X, means.data, w.map(Math.sqrt), K);
    for (let k = 0; k < K; k++) {
      const expected = new Float64Array(d * d);
      for (let i = 0; i < n; i++)
        for (let a = 0; a < d; a++)
          for (let b = 0; b < d; b++) expected[a * d + b] += w[k * n + i] * (X.data[i * d + a] - means.data[k * d + a]) * (X.data[i * d + b] - means.data[k * d + b]);
      expectClose(out.subarray(k * d * d, (k + 1) * d * d), expected, 1e-13, `scatter of component ${k}`);
    }
  });

  it('groupedSqNorms computes per-group squared norms of X W + offset', async () => {
    const X = randomMatrix(30, 5, 6);
    const W = randomMatrix(5, 3 * 4, 7);
    const offset = Float64Array.from({ length: 12 }, (_, i) => i * 0.1 - 0.5);
    const out = await engine.groupedSqNorms(X, W, offset, 3);
    const Y = naiveMatmul(X, W);
    const expected: number[] = [];
    for (let i = 0; i < 30; i++) {
      for (let g = 0; g < 3; g++) {
        let s = 0;
        for (let j = 0; j < 4; j++) s += (Y[i * 12 + g * 4 + j] + offset[g * 4 + j]) ** 2;
        expected.push(s);
      }
    }
    expectClose(out.data, expected, 1e-12, 'grouped squared norms');
  });
});

describe('statistics and decompositions', () => {
  it('covariance uses the centred two-pass formula with the requested ddof', async () => {
    // A large offset would ruin the one-pass formula E[x^2] - E[x]^2.
    const X = randomMatrix(50, 4, 8, 1, 1e6);
    const { mean, covariance: C } = await covariance(engine, X, { ddof: 1 });
    expect(Array.from(mean)).toEqual(Array.from(columnMeans(X)));
    const expected: number[] = [];
    for (let a = 0; a < 4; a++) {
      for (let b = 0; b < 4; b++) {
        let s = 0;
        for (let i = 0; i < 50; i++) s += (X.data[i * 4 + a] - mean[a]) * (X.data[i * 4 + b] - mean[b]);
        expected.push(s / 49);
      }
    }
    expectClose(C.data, expected, 1e-9, 'covariance, ddof 1');
    const ml = await covariance(engine, X);
    expectClose(ml.covariance.data, expected.map((v) => (v * 49) / 50), 1e-12, 'covariance, ddof 0');
  });

  it('cholesky, triangular inverse, precision factor, log-det and SPD inverse agree', async () => {
    const X = randomMatrix(40, 6, 9);
    const { covariance: C } = await covariance(engine, X);
    const L = cholesky(C);
    const LLt = naiveMatmul(L, transpose(L));
    expectClose(LLt, C.data, 1e-12, 'L L^T');
    const M = invertLowerTriangular(L);
    expectClose(naiveMatmul(M, L), createIdentity(6), 1e-12, 'L^-1 L');
    const { factor: W, logDet } = precisionCholesky(C);
    const inv = await inverseSPD(engine, C);
    expectClose(naiveMatmul(W, transpose(W)), inv.data, 1e-9, 'W W^T');
    expectClose(naiveMatmul(inv, C), createIdentity(6), 1e-10, 'C^-1 C');
    expectClose([logDet], [-0.5 * logDetSPD(C)], 1e-12, 'log-det of the precision factor');
  });

  it('cholesky reports a singular matrix clearly', () => {
    const singular = fromRows([
      [1, 1],
      [1, 1],
    ]);
    expect(() => cholesky(singular, 'test covariance')).toThrow(NotPositiveDefiniteError);
    expect(() => cholesky(singular, 'test covariance')).toThrow(/test covariance: .*not positive definite.*regularization/);
  });

  it('symmetricEigen returns descending eigenpairs that reconstruct the matrix', async () => {
    const { covariance: C } = await covariance(engine, randomMatrix(30, 5, 10));
    const { values, vectors } = symmetricEigen(C);
    for (let i = 1; i < 5; i++) expect(values[i]).toBeLessThanOrEqual(values[i - 1]);
    const VD = createMatrix(5, 5);
    for (let r = 0; r < 5; r++) for (let c = 0; c < 5; c++) VD.data[r * 5 + c] = vectors.data[r * 5 + c] * values[c];
    expectClose(naiveMatmul(VD, transpose(vectors)), C.data, 1e-12, 'V D V^T');
  });

  it('logGaussianDensities equals the closed-form log-density of each component', async () => {
    const d = 3;
    const X = randomMatrix(15, d, 18);
    const means = randomMatrix(2, d, 19);
    const covs = [await covariance(engine, randomMatrix(30, d, 20)), await covariance(engine, randomMatrix(30, d, 21))].map((c) => c.covariance);
    const factors = covs.map((c) => precisionCholesky(c));
    const out = await logGaussianDensities(engine, X, means, factors.map((f) => f.factor), factors.map((f) => f.logDet));
    const expected = new Float64Array(15 * 2);
    for (let k = 0; k < 2; k++) {
      const inv = await inverseSPD(engine, covs[k]);
      for (let i = 0; i < 15; i++) {
        const diff = Array.from({ length: d }, (_, j) => X.data[i * d + j] - means.data[k * d + j]);
        let q = 0;
        for (let a = 0; a < d; a++) for (let c = 0; c < d; c++) q += diff[a] * inv.data[a * d + c] * diff[c];
        expected[i * 2 + k] = -0.5 * (d * Math.log(2 * Math.PI) + logDetSPD(covs[k]) + q);
      }
    }
    expectClose(out.data, expected, 1e-12, 'log-densities');
  });

  it('blocked engine paths (components and rows split across calls) agree with direct formulas', async () => {
    // d = 600 puts one component per call and about 436 rows per block, so 500 rows need two blocks.
    const n = 500;
    const d = 600;
    const X = randomMatrix(n, d, 24);
    const means = randomMatrix(2, d, 25, 0.1);
    const A = randomMatrix(d, d, 26, 1 / Math.sqrt(d));
    const cov = await engine.matmul(A, A, { transB: true });
    for (let i = 0; i < d; i++) cov.data[i * d + i] += 1;
    const { factor, logDet } = precisionCholesky(cov);
    const inv = await inverseSPD(engine, cov);
    const logDetCov = logDetSPD(cov);
    const out = await logGaussianDensities(engine, X, means, [factor, factor], [logDet, logDet]);
    for (const i of [0, 437, 499]) {
      for (let k = 0; k < 2; k++) {
        const diff = Float64Array.from({ length: d }, (_, j) => X.data[i * d + j] - means.data[k * d + j]);
        let q = 0;
        for (let a = 0; a < d; a++) {
          let row = 0;
          for (let b = 0; b < d; b++) row += inv.data[a * d + b] * diff[b];
          q += diff[a] * row;
        }
        expectClose([out.data[i * 2 + k]], [-0.5 * (d * Math.log(2 * Math.PI) + logDetCov + q)], 1e-10, `log-density of row ${i}, component ${k}`);
      }
    }
    const w = Float64Array.from({ length: n }, (_, i) => (i % 7) / 7);
    const scatter = await engine.weightedScatter(X, means.data.subarray(0, d), w.map(Math.sqrt), 1);
    for (const [a, b] of [
      [0, 0],
      [3, 598],
      [599, 1],
    ]) {
      let s = 0;
      for (let i = 0; i < n; i++) s += w[i] * (X.data[i * d + a] - means.data[a]) * (X.data[i * d + b] - means.data[b]);
      expectClose([scatter[a * d + b]], [s], 1e-12, `scatter (${a}, ${b})`);
    }
  });

  it('logsumexpRows is stable for large magnitudes and handles -Infinity rows', () => {
    const m = fromRows([
      [1000, 1000],
      [-1000, -Infinity],
      [-Infinity, -Infinity],
      [0, Math.log(3)],
    ]);
    const out = logsumexpRows(m);
    expectClose([out[0], out[3]], [1000 + Math.log(2), Math.log(4)], 1e-15, 'finite rows');
    expect(out[1]).toBe(-1000);
    expect(out[2]).toBe(-Infinity);
  });
});

function createIdentity(n: number): Float64Array {
  const out = new Float64Array(n * n);
  for (let i = 0; i < n; i++) out[i * n + i] = 1;
  return out;
}

describe('distances and nearest neighbours', () => {
  it('pairwiseSqDist matches direct differences, across block boundaries', async () => {
    const A = randomMatrix(23, 7, 11, 1, 50);
    const B = randomMatrix(19, 7, 12, 1, 50);
    const D = await pairwiseSqDist(engine, A, B, { blockRows: 5 });
    for (let i = 0; i < 23; i++) {
      for (let j = 0; j < 19; j++) {
        let s = 0;
        for (let c = 0; c < 7; c++) s += (A.data[i * 7 + c] - B.data[j * 7 + c]) ** 2;
        expectClose([D.data[i * 19 + j]], [s], 1e-9, `distance (${i}, ${j})`);
      }
    }
  });

  it('selectSmallest keeps the k smallest in order', () => {
    const values = [5, 3, 9, 1, 7, 3, 0, 8];
    const v = new Float64Array(3);
    const idx = new Int32Array(3);
    expect(selectSmallest(values, 1, 8, 3, v, idx)).toBe(3);
    expect(Array.from(v)).toEqual([0, 1, 3]);
    expect(Array.from(idx)).toEqual([5, 2, 0]);
  });

  it('NeighborIndex equals a float64 brute-force search, including duplicated rows that defeat screening', async () => {
    const train = randomMatrix(300, 16, 13, 1, 3);
    // Ten copies of one row: for queries next to it the float32 screen cannot separate candidates, forcing float64.
    for (let c = 1; c <= 10; c++) train.data.copyWithin(c * 16, 0, 16);
    const queries = randomMatrix(60, 16, 14, 1, 3);
    queries.data.set(train.data.subarray(0, 16), 0);
    const index = new NeighborIndex(engine, train);
    const k = 5;
    const res = await index.search(queries, k, { blockRows: 7 });
    expect(res.fallbackRows).toBeGreaterThanOrEqual(1);
    for (let q = 0; q < 60; q++) {
      const all: number[] = [];
      for (let t = 0; t < 300; t++) {
        let s = 0;
        for (let c = 0; c < 16; c++) s += (queries.data[q * 16 + c] - train.data[t * 16 + c]) ** 2;
        all.push(Math.sqrt(s));
      }
      all.sort((a, b) => a - b);
      expectClose(res.distances.subarray(q * k, (q + 1) * k), all.slice(0, k), 1e-12, `distances of query ${q}`, { allowZeroReference: true });
      // Reported indices point at rows at the reported distance.
      const t = res.indices[q * k];
      let s = 0;
      for (let c = 0; c < 16; c++) s += (queries.data[q * 16 + c] - train.data[t * 16 + c]) ** 2;
      expectClose([res.distances[q * k]], [Math.sqrt(s)], 1e-12, `distance to the reported row of query ${q}`, { allowZeroReference: true });
    }
    expect(res.distances[0]).toBe(0);
  });

  it('NeighborIndex rejects k larger than the indexed rows', async () => {
    const index = new NeighborIndex(engine, randomMatrix(4, 3, 15));
    await expect(index.search(randomMatrix(2, 3, 16), 5)).rejects.toThrow(/k = 5 .*only 4 rows/);
  });
});

describe('k-means++ seeding', () => {
  it('picks one centre per well-separated cluster, reproducibly per seed', async () => {
    const X = randomMatrix(90, 2, 22, 0.1);
    for (let i = 0; i < 90; i++) X.data[i * 2] += (i % 3) * 10;
    const a = await kmeansPlusPlus(engine, X, 3, createRng(5));
    expect(new Set(Array.from(a.indices, (i) => i % 3)).size).toBe(3);
    const b = await kmeansPlusPlus(engine, X, 3, createRng(5));
    expect(Array.from(b.indices)).toEqual(Array.from(a.indices));
    expect(a.potential).toBeLessThan(90 * 0.1);
    await expect(kmeansPlusPlus(engine, X, 91, createRng(1))).rejects.toThrow(/k must be an integer in 1..90/);
  });
});

describe('random numbers and validation', () => {
  it('Rng is deterministic per seed and roughly uniform / normal', () => {
    const a = createRng(42);
    const b = createRng(42);
    const c = createRng(43);
    const xs = Array.from({ length: 5 }, () => a.next());
    expect(Array.from({ length: 5 }, () => b.next())).toEqual(xs);
    expect(Array.from({ length: 5 }, () => c.next())).not.toEqual(xs);
    const r = createRng(7);
    let sum = 0;
    let sq = 0;
    let lo = Infinity;
    let hi = -Infinity;
    const counts = new Array(10).fill(0);
    for (let i = 0; i < 20000; i++) {
      const u = r.next();
      lo = Math.min(lo, u);
      hi = Math.max(hi, u);
      counts[r.int(10)]++;
      const z = r.normal();
      sum += z;
      sq += z * z;
    }
    expect(lo).toBeGreaterThanOrEqual(0);
    expect(hi).toBeLessThan(1);
    for (const n of counts) expect(Math.abs(n - 2000)).toBeLessThan(200);
    expect(Math.abs(sum / 20000)).toBeLessThan(0.03);
    expect(Math.abs(sq / 20000 - 1)).toBeLessThan(0.05);
    const perm = createRng(1).shuffle([0, 1, 2, 3, 4, 5, 6, 7]);
    expect([...perm].sort()).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
  });

  it('assertFinite names the row and column of the first bad value', () => {
    const m = createMatrix(3, 4);
    m.data[2 * 4 + 1] = Number.NaN;
    expect(() => assertFinite(m, 'features')).toThrow('features: NaN at row 2, column 1');
    m.data[2 * 4 + 1] = 0;
    m.data[5] = -Infinity;
    expect(() => assertFinite(m, 'features')).toThrow('features: -Infinity at row 1, column 1');
  });

  it('assertUsableMatrix checks structure and minimum rows; constantColumns finds zero-variance columns', () => {
    expect(() => assertUsableMatrix({ rows: 2, cols: 3, data: new Float64Array(5) }, 'X')).toThrow(/X: data has 5 values, expected 2 x 3/);
    expect(() => assertUsableMatrix(createMatrix(1, 3), 'X', 2)).toThrow(/X: 1 row, at least 2 needed/);
    const m = fromRows([
      [1, 2, 3],
      [1, 5, 3],
      [1, 7, 4],
    ]);
    expect(constantColumns(m)).toEqual([0]);
  });
});
