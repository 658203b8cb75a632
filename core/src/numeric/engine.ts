// The numeric engine: large matrix products run in onnxruntime (multi-threaded BLAS-class kernels), one lazily created
// session per graph signature, reused for every shape.
import os from 'node:os';
import * as ort from 'onnxruntime-node';
import type { Matrix } from '../types.js';
import { gemmGraph, weightedScatterGraph, groupedSqNormsGraph, screenTopKGraph, sqDistGraph, type FloatType } from './graphs.js';
import type { Matrix64 } from './matrix.js';

export type { FloatType } from './graphs.js';

function defaultThreads(): number {
  return typeof os.availableParallelism === 'function' ? os.availableParallelism() : os.cpus().length;
}

let threads = defaultThreads();

/** A cached session; retired when the thread setting changes and released once no run uses it. */
class CachedSession {
  private active = 0;
  private retired = false;
  private released = false;
  private readonly session: Promise<ort.InferenceSession>;

  constructor(model: Uint8Array, intraOpNumThreads: number) {
    this.session = ort.InferenceSession.create(model, {
      intraOpNumThreads,
      interOpNumThreads: 1,
      executionMode: 'sequential',
      graphOptimizationLevel: 'all',
      // Between engine calls the JavaScript side works (E-step bookkeeping, selections); spinning pool threads would
      // only burn the cores it needs, and on a shared machine they slow every parallel region down.
      extra: { session: { intra_op: { allow_spinning: '0' } } },
    });
  }

  async run(feeds: Record<string, ort.Tensor>): Promise<ort.InferenceSession.OnnxValueMapType> {
    // Counted before the first await, so a concurrent retire() cannot release the session under this run.
    this.active++;
    try {
      const session = await this.session;
      return await session.run(feeds);
    } finally {
      this.active--;
      if (this.retired && this.active === 0) await this.release();
    }
  }

  async retire(): Promise<void> {
    this.retired = true;
    if (this.active === 0) await this.release();
  }

  private async release(): Promise<void> {
    if (this.released) return;
    this.released = true;
    const session = await this.session.catch(() => null);
    await session?.release();
  }
}

const sessions = new Map<string, CachedSession>();

/**
 * Values of a large intermediate per engine call (2 MB of float64). Products whose output outgrows the caches run far
 * below the kernels' speed, so row-blocked callers aim at this size.
 */
export const INTERMEDIATE_BUDGET = 1 << 18;

/** Mixture components per engine call for d-dimensional components: enough rows per call (>= 256) to amortise it. */
export function componentsPerCall(components: number, d: number): number {
  return Math.max(1, Math.min(components, Math.floor(INTERMEDIATE_BUDGET / 256 / Math.max(1, d))));
}

/**
 * Sets the intra-op thread count of every engine operation (default: `os.availableParallelism()`). Sessions compiled
 * for another count are released once their in-flight runs finish.
 */
export function setNumericThreads(n: number): void {
  if (!Number.isInteger(n) || n < 1) throw new RangeError(`setNumericThreads: expected a positive integer, got ${n}`);
  if (n === threads) return;
  threads = n;
  const old = [...sessions.values()];
  sessions.clear();
  for (const s of old) void s.retire();
}

export function getNumericThreads(): number {
  return threads;
}

/** Releases every cached engine session (they are recreated on demand). */
export async function disposeNumeric(): Promise<void> {
  const old = [...sessions.values()];
  sessions.clear();
  await Promise.all(old.map((s) => s.retire()));
}

function session(key: string, build: () => Uint8Array): CachedSession {
  let s = sessions.get(key);
  if (!s) {
    s = new CachedSession(build(), threads);
    sessions.set(key, s);
  }
  return s;
}

/** `data` in the requested element type, copied only when it differs. */
export function toFloatArray(data: Float32Array | Float64Array, type: FloatType): Float32Array | Float64Array {
  if (type === 'float64') return data instanceof Float64Array ? data : Float64Array.from(data);
  return data instanceof Float32Array ? data : Float32Array.from(data);
}

function tensor(type: FloatType, data: Float32Array | Float64Array, dims: number[]): ort.Tensor {
  return new ort.Tensor(type, toFloatArray(data, type), dims);
}

function output64(value: ort.Tensor): Float64Array {
  const data = value.data;
  return data instanceof Float64Array ? data : Float64Array.from(data as Float32Array);
}

export interface MatmulOptions {
  transA?: boolean;
  transB?: boolean;
  /** Element type of the product (default float64). float32 halves the time at ~1e-7 relative rounding per term. */
  precision?: FloatType;
}

/** `op(A) * op(B)` on the engine. The result is float64 whatever the precision of the product. */
export async function matmul(a: Matrix, b: Matrix, options: MatmulOptions = {}): Promise<Matrix64> {
  const { transA = false, transB = false, precision = 'float64' } = options;
  const m = transA ? a.cols : a.rows;
  const ka = transA ? a.rows : a.cols;
  const kb = transB ? b.cols : b.rows;
  const n = transB ? b.rows : b.cols;
  if (ka !== kb) {
    throw new RangeError(`matmul: inner dimensions differ (${transA ? 'A^T' : 'A'} is ${m} x ${ka}, ${transB ? 'B^T' : 'B'} is ${kb} x ${n})`);
  }
  if (m === 0 || n === 0 || ka === 0) return { rows: m, cols: n, data: new Float64Array(m * n) };
  const s = session(`gemm:${precision}:${+transA}${+transB}`, () => gemmGraph(precision, transA, transB));
  const out = await s.run({ A: tensor(precision, a.data, [a.rows, a.cols]), B: tensor(precision, b.data, [b.rows, b.cols]) });
  return { rows: m, cols: n, data: output64(out.Y as ort.Tensor) };
}

/**
 * For every row x of X and every group g: sum over the group's `width` columns of (x W + offset)^2, an [n, groups]
 * float64 matrix. W is [d, groups * width], offset has groups * width values. One engine call; the [n, groups * width]
 * intermediate never reaches JavaScript.
 */
export async function groupedSqNorms(X: Matrix, W: Matrix, offset: Float64Array, groups: number, precision: FloatType = 'float64'): Promise<Matrix64> {
  const width = W.cols / groups;
  if (!Number.isInteger(width) || width < 1) throw new RangeError(`groupedSqNorms: ${W.cols} columns do not split into ${groups} groups`);
  if (X.cols !== W.rows) throw new RangeError(`groupedSqNorms: X has ${X.cols} columns, W has ${W.rows} rows`);
  if (offset.length !== W.cols) throw new RangeError(`groupedSqNorms: offset has ${offset.length} values, expected ${W.cols}`);
  if (X.rows === 0) return { rows: 0, cols: groups, data: new Float64Array(0) };
  const s = session(`groupedSqNorms:${precision}`, () => groupedSqNormsGraph(precision));
  const out = await s.run({
    X: tensor(precision, X.data, [X.rows, X.cols]),
    W: tensor(precision, W.data, [W.rows, W.cols]),
    C: tensor(precision, offset, [1, W.cols]),
    shape: new ort.Tensor('int64', BigInt64Array.from([-1n, BigInt(groups), BigInt(width)]), [3]),
  });
  return { rows: X.rows, cols: groups, data: output64(out.S as ort.Tensor) };
}

/**
 * For every row q of Q: the `k` smallest values of ||t||^2 - 2 q.t over the rows t of T (ascending) and their row
 * indices. `tn` holds ||t||^2. Adding ||q||^2 gives squared distances; the selection is a partial one (TopK).
 */
export async function screenNearest(
  Q: Matrix,
  T: Matrix,
  tn: Float32Array | Float64Array,
  k: number,
  precision: FloatType,
): Promise<{ values: Float64Array; indices: BigInt64Array }> {
  const s = session(`screenTopK:${precision}`, () => screenTopKGraph(precision));
  const out = await s.run({
    Q: tensor(precision, Q.data, [Q.rows, Q.cols]),
    T: tensor(precision, T.data, [T.rows, T.cols]),
    tn: tensor(precision, tn, [1, T.rows]),
    k: new ort.Tensor('int64', BigInt64Array.from([BigInt(k)]), [1]),
  });
  return { values: output64(out.values as ort.Tensor), indices: (out.indices as ort.Tensor).data as BigInt64Array };
}

/** Squared Euclidean distances between the rows of A and of B, given their squared row norms (one engine call). */
export async function sqDistWithNorms(
  A: Matrix,
  B: Matrix,
  an: Float64Array,
  bn: Float64Array,
  precision: FloatType = 'float64',
): Promise<Matrix64> {
  if (A.cols !== B.cols) throw new RangeError(`sqDist: A has ${A.cols} columns, B has ${B.cols}`);
  if (A.rows === 0 || B.rows === 0) return { rows: A.rows, cols: B.rows, data: new Float64Array(A.rows * B.rows) };
  const s = session(`sqDist:${precision}`, () => sqDistGraph(precision));
  const out = await s.run({
    A: tensor(precision, A.data, [A.rows, A.cols]),
    B: tensor(precision, B.data, [B.rows, B.cols]),
    an: tensor(precision, an, [A.rows, 1]),
    bn: tensor(precision, bn, [1, B.rows]),
  });
  return { rows: A.rows, cols: B.rows, data: output64(out.D as ort.Tensor) };
}

/**
 * For K components: sum_i w_ik (x_i - m_k)(x_i - m_k)^T, the weighted scatter matrices of a mixture's M-step, as K
 * concatenated [d, d] matrices. `means` is [K, d], `sqrtWeights` is [K, n] (component-major) and holds sqrt(w_ik).
 * The differences, weighting and products run on the engine, one call per block of rows (callers keep K * d moderate,
 * see `componentsPerCall`).
 */
export async function weightedScatter(X: Matrix, means: Float64Array, sqrtWeights: Float64Array, components: number): Promise<Float64Array> {
  const { rows: n, cols: d } = X;
  if (means.length !== components * d) throw new RangeError(`weightedScatter: means has ${means.length} values, expected ${components} x ${d}`);
  if (sqrtWeights.length !== components * n) throw new RangeError(`weightedScatter: weights have ${sqrtWeights.length} values, expected ${components} x ${n}`);
  if (components === 0 || d === 0) return new Float64Array(0);
  if (n === 0) return new Float64Array(components * d * d);
  const s = session('weightedScatter:float64', () => weightedScatterGraph('float64'));
  const M = new ort.Tensor('float64', means, [components, 1, d]);
  const X64 = toFloatArray(X.data, 'float64');
  // Row blocks keep the [K, rows, d] intermediates cache-sized; the blocks' scatters add up.
  const blockRows = Math.max(1, Math.floor(INTERMEDIATE_BUDGET / (components * d)));
  let total: Float64Array | null = null;
  const S = components === 1 ? sqrtWeights : new Float64Array(components * Math.min(n, blockRows));
  for (let start = 0; start < n; start += blockRows) {
    const rows = Math.min(n, start + blockRows) - start;
    let weights: Float64Array;
    if (components === 1) weights = sqrtWeights.subarray(start, start + rows);
    else {
      weights = S.subarray(0, components * rows);
      for (let k = 0; k < components; k++) weights.set(sqrtWeights.subarray(k * n + start, k * n + start + rows), k * rows);
    }
    const out = await s.run({
      X: new ort.Tensor('float64', X64.subarray(start * d, (start + rows) * d), [rows, d]),
      M,
      S: new ort.Tensor('float64', weights, [components, rows, 1]),
    });
    const block = output64(out.Y as ort.Tensor);
    if (!total) total = block;
    else for (let i = 0; i < total.length; i++) total[i] += block[i];
  }
  return total as Float64Array;
}
