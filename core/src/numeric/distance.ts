import type { FloatType, Matrix, NumericEngine } from '../types.js';
import { asFloat64, columnMeans, rowSqNorms, type Matrix64 } from './matrix.js';

export interface SqDistOptions {
  /** Rows of A per engine call (default: enough for about 4M distances per block). */
  blockRows?: number;
  precision?: FloatType;
}

function defaultBlockRows(bRows: number, budget = 1 << 22): number {
  return Math.max(16, Math.min(8192, Math.floor(budget / Math.max(1, bRows))));
}

function sliceRows(m: Matrix64, start: number, end: number): Matrix64 {
  return { rows: end - start, cols: m.cols, data: m.data.subarray(start * m.cols, end * m.cols) };
}

/**
 * Calls `fn` with consecutive blocks of the squared Euclidean distance matrix between the rows of A and of B
 * (||a||^2 + ||b||^2 - 2 a.b, clipped at 0, as sklearn's euclidean_distances), `rowStart` being the first row of A in
 * the block. Both inputs are centred on B's mean first, which shrinks the norms and so the cancellation error.
 */
export async function forEachSqDistBlock(
  engine: NumericEngine,
  A: Matrix,
  B: Matrix,
  fn: (block: Matrix64, rowStart: number) => void | Promise<void>,
  options: SqDistOptions = {},
): Promise<void> {
  if (A.cols !== B.cols) throw new RangeError(`pairwiseSqDist: A has ${A.cols} columns, B has ${B.cols}`);
  const blockRows = options.blockRows ?? defaultBlockRows(B.rows);
  if (!Number.isInteger(blockRows) || blockRows < 1) throw new RangeError(`pairwiseSqDist: blockRows must be a positive integer, got ${blockRows}`);
  const mean = columnMeans(B);
  const Bc = centre(B, mean);
  const bn = rowSqNorms(Bc);
  for (let start = 0; start < A.rows; start += blockRows) {
    const end = Math.min(A.rows, start + blockRows);
    const Ac = centre(sliceRows(asFloat64(A), start, end), mean);
    const block = await engine.sqDistWithNorms(Ac, Bc, rowSqNorms(Ac), bn, options.precision ?? 'float64');
    await fn(block, start);
  }
}

/** The full [A.rows, B.rows] squared distance matrix (computed in blocks). */
export async function pairwiseSqDist(engine: NumericEngine, A: Matrix, B: Matrix, options: SqDistOptions = {}): Promise<Matrix64> {
  const out = new Float64Array(A.rows * B.rows);
  await forEachSqDistBlock(engine, A, B, (block, start) => out.set(block.data, start * B.rows), options);
  return { rows: A.rows, cols: B.rows, data: out };
}

function centre(m: Matrix, mean: Float64Array): Matrix64 {
  const { rows, cols, data } = m;
  const out = new Float64Array(rows * cols);
  for (let i = 0; i < rows; i++) {
    const base = i * cols;
    for (let j = 0; j < cols; j++) out[base + j] = data[base + j] - mean[j];
  }
  return { rows, cols, data: out };
}

/**
 * Keeps the `k` smallest of `values[from..to)` in ascending order in `outValues/outIndices[0..k)` (indices relative
 * to `from`). A bounded insertion buffer: linear in the row length for small k, no full sort.
 */
export function selectSmallest(values: ArrayLike<number>, from: number, to: number, k: number, outValues: Float64Array, outIndices: Int32Array): number {
  let filled = 0;
  for (let p = from; p < to; p++) {
    const v = values[p];
    if (filled === k && !(v < outValues[k - 1])) continue;
    let q = filled === k ? k - 1 : filled++;
    while (q > 0 && outValues[q - 1] > v) {
      outValues[q] = outValues[q - 1];
      outIndices[q] = outIndices[q - 1];
      q--;
    }
    outValues[q] = v;
    outIndices[q] = p - from;
  }
  return filled;
}

export interface NeighborSearchOptions {
  /** Queries per engine call (default: enough for about 4M screened distances per block). */
  blockRows?: number;
}

export interface NeighborSearchResult {
  /** Neighbours per query. */
  k: number;
  /** [queries, k] Euclidean distances, ascending per row. */
  distances: Float64Array;
  /** [queries, k] row indices into the indexed matrix. */
  indices: Int32Array;
  /** Queries whose float32 screening could not certify the candidate set and were recomputed in float64. */
  fallbackRows: number;
}

const F32_UNIT_ROUNDOFF = 2 ** -24;

/**
 * Exact k-nearest-neighbour search (Euclidean, brute force) over a fixed set of rows.
 *
 * Each block of queries is screened with a float32 product ||t||^2 - 2 q.t and a TopK on the engine, keeping a few more
 * candidates than k. A worst-case bound on the float32 rounding error certifies, per query, that no row outside the
 * candidates can be among the k nearest; the candidates' distances are then recomputed exactly in float64. Queries the
 * bound cannot certify (near-ties, duplicated rows) are redone with a float64 product. The result equals a float64
 * brute-force search, at the speed of float32 products.
 */
export class NeighborIndex {
  readonly size: number;
  readonly dim: number;
  private readonly rows64: Float64Array;
  private readonly mean: Float64Array;
  private readonly centred32: Float32Array;
  private readonly norms32: Float32Array;
  private readonly maxNorm: number;
  private centred64: Matrix64 | null = null;
  private scratchVals = new Float64Array(0);
  private scratchPos = new Int32Array(0);

  constructor(
    private readonly engine: NumericEngine,
    rows: Matrix,
  ) {
    const X = asFloat64(rows);
    this.size = X.rows;
    this.dim = X.cols;
    this.rows64 = X.data;
    this.mean = columnMeans(X);
    const c = centre(X, this.mean);
    this.centred32 = Float32Array.from(c.data);
    const norms = rowSqNorms(c);
    this.norms32 = Float32Array.from(norms);
    let max = 0;
    for (const v of norms) if (v > max) max = v;
    this.maxNorm = Math.sqrt(max);
  }

  async search(queries: Matrix, k: number, options: NeighborSearchOptions = {}): Promise<NeighborSearchResult> {
    if (!Number.isInteger(k) || k < 1) throw new RangeError(`NeighborIndex.search: k must be a positive integer, got ${k}`);
    if (k > this.size) throw new RangeError(`NeighborIndex.search: k = ${k} neighbours requested but only ${this.size} rows are indexed`);
    if (queries.cols !== this.dim) throw new RangeError(`NeighborIndex.search: queries have ${queries.cols} columns, the index has ${this.dim}`);
    const blockRows = options.blockRows ?? defaultBlockRows(this.size);
    if (!Number.isInteger(blockRows) || blockRows < 1) throw new RangeError(`NeighborIndex.search: blockRows must be a positive integer, got ${blockRows}`);

    const m = queries.rows;
    const d = this.dim;
    const distances = new Float64Array(m * k);
    const indices = new Int32Array(m * k);
    // A margin of extra candidates makes the certificate succeed unless the (k+1)-th..k'-th are within rounding of the k-th.
    const kk = Math.min(this.size, 2 * k + 4);
    const Q = asFloat64(queries);
    const fallback: number[] = [];
    const T32: Matrix = { rows: this.size, cols: d, data: this.centred32 };
    const errScale = 2 * F32_UNIT_ROUNDOFF;
    const candVals = new Float64Array(kk);
    const candIdx = new Int32Array(kk);

    const block = new Float32Array(Math.min(m, blockRows) * d);
    const qNorms = new Float64Array(Math.min(m, blockRows));
    for (let start = 0; start < m; start += blockRows) {
      const end = Math.min(m, start + blockRows);
      const rows = end - start;
      for (let i = 0; i < rows; i++) {
        let s = 0;
        const src = (start + i) * d;
        for (let j = 0; j < d; j++) {
          const v = Q.data[src + j] - this.mean[j];
          block[i * d + j] = v;
          s += v * v;
        }
        qNorms[i] = Math.sqrt(s);
      }
      const Qb: Matrix = { rows, cols: d, data: rows * d === block.length ? block : block.subarray(0, rows * d) };
      const { values, indices: screened } = await this.engine.screenNearest(Qb, T32, this.norms32, kk, 'float32');
      for (let i = 0; i < rows; i++) {
        const q = start + i;
        const base = i * kk;
        // Bound on |screened - exact| for every row: input rounding, a length-d float32 dot product and the additions.
        const err = errScale * ((2 * d + 8) * qNorms[i] * this.maxNorm + 2 * this.maxNorm * this.maxNorm);
        if (kk < this.size && !(values[base + kk - 1] - values[base + k - 1] > 2 * err)) {
          fallback.push(q);
          continue;
        }
        for (let c = 0; c < kk; c++) {
          const t = Number(screened[base + c]);
          candIdx[c] = t;
          candVals[c] = this.exactSqDist(Q.data, q, t);
        }
        this.writeSmallest(candVals, candIdx, kk, k, distances, indices, q);
      }
    }
    if (fallback.length > 0) await this.searchFloat64(Q, fallback, k, blockRows, distances, indices);
    return { k, distances, indices, fallbackRows: fallback.length };
  }

  private exactSqDist(q: Float64Array, row: number, t: number): number {
    const d = this.dim;
    const qb = row * d;
    const tb = t * d;
    const x = this.rows64;
    let s = 0;
    for (let j = 0; j < d; j++) {
      const diff = q[qb + j] - x[tb + j];
      s += diff * diff;
    }
    return s;
  }

  /** The k smallest of `count` candidates (squared distances `vals`, row numbers `idx`) into row q of the result. */
  private writeSmallest(vals: Float64Array, idx: Int32Array, count: number, k: number, distances: Float64Array, indices: Int32Array, q: number): void {
    const bestVals = (this.scratchVals = this.scratchVals.length >= k ? this.scratchVals : new Float64Array(k));
    const bestPos = (this.scratchPos = this.scratchPos.length >= k ? this.scratchPos : new Int32Array(k));
    selectSmallest(vals, 0, count, k, bestVals, bestPos);
    for (let c = 0; c < k; c++) {
      distances[q * k + c] = Math.sqrt(bestVals[c]);
      indices[q * k + c] = idx[bestPos[c]];
    }
  }

  private async searchFloat64(Q: Matrix64, rows: number[], k: number, blockRows: number, distances: Float64Array, indices: Int32Array): Promise<void> {
    const d = this.dim;
    if (!this.centred64) {
      const c = new Float64Array(this.size * d);
      for (let i = 0; i < this.size; i++) for (let j = 0; j < d; j++) c[i * d + j] = this.rows64[i * d + j] - this.mean[j];
      this.centred64 = { rows: this.size, cols: d, data: c };
    }
    const tNorms = rowSqNorms(this.centred64);
    const bestVals = new Float64Array(k);
    const bestPos = new Int32Array(k);
    for (let start = 0; start < rows.length; start += blockRows) {
      const end = Math.min(rows.length, start + blockRows);
      const block = new Float64Array((end - start) * d);
      for (let i = start; i < end; i++) for (let j = 0; j < d; j++) block[(i - start) * d + j] = Q.data[rows[i] * d + j] - this.mean[j];
      const A: Matrix64 = { rows: end - start, cols: d, data: block };
      const D = await this.engine.sqDistWithNorms(A, this.centred64, rowSqNorms(A), tNorms, 'float64');
      for (let i = start; i < end; i++) {
        const q = rows[i];
        selectSmallest(D.data, (i - start) * this.size, (i - start + 1) * this.size, k, bestVals, bestPos);
        for (let c = 0; c < k; c++) bestVals[c] = this.exactSqDist(Q.data, q, bestPos[c]);
        this.writeSmallest(bestVals, bestPos, k, k, distances, indices, q);
      }
    }
  }
}
