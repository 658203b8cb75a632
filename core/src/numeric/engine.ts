// The numeric engine: large matrix products run as small ONNX graphs on the pipeline's runtime (multi-threaded
// BLAS-class kernels, float64), one lazily compiled session per graph signature, reused for every shape.
import type { FloatType, Matrix, Matrix64, MatmulOptions, NumericEngine, NumericSession, NumericTensor, Runtime } from '../types.js';
import { gemmGraph, weightedScatterGraph, groupedSqNormsGraph, screenTopKGraph, sqDistGraph } from './graphs.js';

/** What the engine needs of a runtime: its name and its numeric sessions. */
export type NumericRuntime = Pick<Runtime, 'name'> & Required<Pick<Runtime, 'createNumericSession'>>;

/** Whether `runtime` offers float64 numeric kernels (`createNumericSession`). */
export function offersNumerics(runtime: Runtime): runtime is Runtime & NumericRuntime {
  return typeof runtime.createNumericSession === 'function';
}

/** A compiled graph; released once no run uses it after the engine is disposed. */
class CachedSession {
  private active = 0;
  private retired = false;
  private released = false;

  constructor(private readonly session: Promise<NumericSession>) {
    // A failed compilation is reported by run(); never as an unhandled rejection.
    session.catch(() => undefined);
  }

  async run(feeds: Record<string, NumericTensor>): Promise<Record<string, NumericTensor>> {
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
    await session?.dispose();
  }
}

/**
 * Values of a large intermediate per engine call (2 MB of float64). Products whose output outgrows the caches run far
 * below the kernels' speed, so row-blocked callers aim at this size.
 */
export const INTERMEDIATE_BUDGET = 1 << 18;

/** Mixture components per engine call for d-dimensional components: enough rows per call (>= 256) to amortise it. */
export function componentsPerCall(components: number, d: number): number {
  return Math.max(1, Math.min(components, Math.floor(INTERMEDIATE_BUDGET / 256 / Math.max(1, d))));
}

/** `data` in the requested element type, copied only when it differs. */
export function toFloatArray(data: Float32Array | Float64Array, type: FloatType): Float32Array | Float64Array {
  if (type === 'float64') return data instanceof Float64Array ? data : Float64Array.from(data);
  return data instanceof Float32Array ? data : Float32Array.from(data);
}

function tensor(type: FloatType, data: Float32Array | Float64Array, dims: number[]): NumericTensor {
  return { type, data: toFloatArray(data, type), dims };
}

function int64(values: number[]): NumericTensor {
  return { type: 'int64', data: BigInt64Array.from(values.map(BigInt)), dims: [values.length] };
}

function output64(value: NumericTensor | undefined, name: string): Float64Array {
  if (!value || value.type === 'int64') throw new Error(`numeric engine: the runtime returned no float output '${name}'`);
  const data = value.data as Float32Array | Float64Array;
  return data instanceof Float64Array ? data : Float64Array.from(data);
}

/** The numeric engine on `runtime`'s kernels (its threads, its device). Dispose it before the runtime. */
export function createNumericEngine(runtime: NumericRuntime): NumericEngine {
  return new RuntimeNumericEngine(runtime);
}

class RuntimeNumericEngine implements NumericEngine {
  private readonly sessions = new Map<string, CachedSession>();

  constructor(private readonly backend: NumericRuntime) {}

  get runtime(): string {
    return this.backend.name;
  }

  private session(key: string, build: () => Uint8Array): CachedSession {
    let s = this.sessions.get(key);
    if (!s) {
      s = new CachedSession(this.backend.createNumericSession(build()));
      this.sessions.set(key, s);
    }
    return s;
  }

  async dispose(): Promise<void> {
    const old = [...this.sessions.values()];
    this.sessions.clear();
    await Promise.all(old.map((s) => s.retire()));
  }

  async matmul(a: Matrix, b: Matrix, options: MatmulOptions = {}): Promise<Matrix64> {
    const { transA = false, transB = false, precision = 'float64' } = options;
    const m = transA ? a.cols : a.rows;
    const ka = transA ? a.rows : a.cols;
    const kb = transB ? b.cols : b.rows;
    const n = transB ? b.rows : b.cols;
    if (ka !== kb) {
      throw new RangeError(`matmul: inner dimensions differ (${transA ? 'A^T' : 'A'} is ${m} x ${ka}, ${transB ? 'B^T' : 'B'} is ${kb} x ${n})`);
    }
    if (m === 0 || n === 0 || ka === 0) return { rows: m, cols: n, data: new Float64Array(m * n) };
    const s = this.session(`gemm:${precision}:${+transA}${+transB}`, () => gemmGraph(precision, transA, transB));
    const out = await s.run({ A: tensor(precision, a.data, [a.rows, a.cols]), B: tensor(precision, b.data, [b.rows, b.cols]) });
    return { rows: m, cols: n, data: output64(out.Y, 'Y') };
  }

  /**
   * For every row x of X and every group g: sum over the group's `width` columns of (x W + offset)^2, an [n, groups]
   * float64 matrix. W is [d, groups * width], offset has groups * width values. One engine call; the [n, groups * width]
   * intermediate never reaches JavaScript.
   */
  async groupedSqNorms(X: Matrix, W: Matrix, offset: Float64Array, groups: number, precision: FloatType = 'float64'): Promise<Matrix64> {
    const width = W.cols / groups;
    if (!Number.isInteger(width) || width < 1) throw new RangeError(`groupedSqNorms: ${W.cols} columns do not split into ${groups} groups`);
    if (X.cols !== W.rows) throw new RangeError(`groupedSqNorms: X has ${X.cols} columns, W has ${W.rows} rows`);
    if (offset.length !== W.cols) throw new RangeError(`groupedSqNorms: offset has ${offset.length} values, expected ${W.cols}`);
    if (X.rows === 0) return { rows: 0, cols: groups, data: new Float64Array(0) };
    const s = this.session(`groupedSqNorms:${precision}`, () => groupedSqNormsGraph(precision));
    const out = await s.run({
      X: tensor(precision, X.data, [X.rows, X.cols]),
      W: tensor(precision, W.data, [W.rows, W.cols]),
      C: tensor(precision, offset, [1, W.cols]),
      shape: int64([-1, groups, width]),
    });
    return { rows: X.rows, cols: groups, data: output64(out.S, 'S') };
  }

  /**
   * For every row q of Q: the `k` smallest values of ||t||^2 - 2 q.t over the rows t of T (ascending) and their row
   * indices. `tn` holds ||t||^2. Adding ||q||^2 gives squared distances; the selection is a partial one (TopK).
   */
  async screenNearest(
    Q: Matrix,
    T: Matrix,
    tn: Float32Array | Float64Array,
    k: number,
    precision: FloatType,
  ): Promise<{ values: Float64Array; indices: BigInt64Array }> {
    const s = this.session(`screenTopK:${precision}`, () => screenTopKGraph(precision));
    const out = await s.run({
      Q: tensor(precision, Q.data, [Q.rows, Q.cols]),
      T: tensor(precision, T.data, [T.rows, T.cols]),
      tn: tensor(precision, tn, [1, T.rows]),
      k: int64([k]),
    });
    return { values: output64(out.values, 'values'), indices: out.indices.data as BigInt64Array };
  }

  /** Squared Euclidean distances between the rows of A and of B, given their squared row norms (one engine call). */
  async sqDistWithNorms(
    A: Matrix,
    B: Matrix,
    an: Float64Array,
    bn: Float64Array,
    precision: FloatType = 'float64',
  ): Promise<Matrix64> {
    if (A.cols !== B.cols) throw new RangeError(`sqDist: A has ${A.cols} columns, B has ${B.cols}`);
    if (A.rows === 0 || B.rows === 0) return { rows: A.rows, cols: B.rows, data: new Float64Array(A.rows * B.rows) };
    const s = this.session(`sqDist:${precision}`, () => sqDistGraph(precision));
    const out = await s.run({
      A: tensor(precision, A.data, [A.rows, A.cols]),
      B: tensor(precision, B.data, [B.rows, B.cols]),
      an: tensor(precision, an, [A.rows, 1]),
      bn: tensor(precision, bn, [1, B.rows]),
    });
    return { rows: A.rows, cols: B.rows, data: output64(out.D, 'D') };
  }

  /**
   * For K components: sum_i w_ik (x_i - m_k)(x_i - m_k)^T, the weighted scatter matrices of a mixture's M-step, as K
   * concatenated [d, d] matrices. `means` is [K, d], `sqrtWeights` is [K, n] (component-major) and holds sqrt(w_ik).
   * The differences, weighting and products run on the engine, one call per block of rows (callers keep K * d moderate,
   * see `componentsPerCall`).
   */
  async weightedScatter(X: Matrix, means: Float64Array, sqrtWeights: Float64Array, components: number): Promise<Float64Array> {
    const { rows: n, cols: d } = X;
    if (means.length !== components * d) throw new RangeError(`weightedScatter: means has ${means.length} values, expected ${components} x ${d}`);
    if (sqrtWeights.length !== components * n) throw new RangeError(`weightedScatter: weights have ${sqrtWeights.length} values, expected ${components} x ${n}`);
    if (components === 0 || d === 0) return new Float64Array(0);
    if (n === 0) return new Float64Array(components * d * d);
    const s = this.session('weightedScatter:float64', () => weightedScatterGraph('float64'));
    const M = tensor('float64', means, [components, 1, d]);
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
        X: tensor('float64', X64.subarray(start * d, (start + rows) * d), [rows, d]),
        M,
        S: tensor('float64', weights, [components, rows, 1]),
      });
      const block = output64(out.Y, 'Y');
      if (!total) total = block;
      else for (let i = 0; i < total.length; i++) total[i] += block[i];
    }
    return total as Float64Array;
  }
}
