import type { Matrix, Matrix64 } from '../types.js';

export type { Matrix64 };

/** A `rows` x `cols` float64 matrix, zero-filled or wrapping `data` (not copied). */
export function createMatrix(rows: number, cols: number, data?: Float64Array): Matrix64 {
  if (!Number.isInteger(rows) || rows < 0 || !Number.isInteger(cols) || cols < 0) {
    throw new RangeError(`createMatrix: rows and cols must be non-negative integers, got ${rows} x ${cols}`);
  }
  if (data && data.length !== rows * cols) {
    throw new RangeError(`createMatrix: data has ${data.length} values, expected ${rows} x ${cols} = ${rows * cols}`);
  }
  return { rows, cols, data: data ?? new Float64Array(rows * cols) };
}

/** A matrix from nested arrays (one inner array per row). */
export function fromRows(rows: ArrayLike<ArrayLike<number>>, what = 'fromRows'): Matrix64 {
  const n = rows.length;
  const d = n > 0 ? rows[0].length : 0;
  const out = new Float64Array(n * d);
  for (let i = 0; i < n; i++) {
    const r = rows[i];
    if (r.length !== d) throw new RangeError(`${what}: row ${i} has ${r.length} values, expected ${d}`);
    for (let j = 0; j < d; j++) out[i * d + j] = r[j];
  }
  return { rows: n, cols: d, data: out };
}

/** Nested arrays, one per row (for JSON). */
export function toRows(m: Matrix): number[][] {
  const out: number[][] = [];
  for (let i = 0; i < m.rows; i++) out.push(Array.from(m.data.subarray(i * m.cols, (i + 1) * m.cols)));
  return out;
}

/** The matrix as float64; the same object when it already is. */
export function asFloat64(m: Matrix): Matrix64 {
  if (m.data instanceof Float64Array) return m as Matrix64;
  return { rows: m.rows, cols: m.cols, data: Float64Array.from(m.data) };
}

/** A view of row `i` (no copy). */
export function rowView(m: Matrix, i: number): Float32Array | Float64Array {
  return m.data.subarray(i * m.cols, (i + 1) * m.cols);
}

export function transpose(m: Matrix): Matrix64 {
  const { rows, cols, data } = m;
  const out = new Float64Array(rows * cols);
  for (let i = 0; i < rows; i++) {
    const base = i * cols;
    for (let j = 0; j < cols; j++) out[j * rows + i] = data[base + j];
  }
  return { rows: cols, cols: rows, data: out };
}

export function identity(n: number): Matrix64 {
  const out = createMatrix(n, n);
  for (let i = 0; i < n; i++) out.data[i * n + i] = 1;
  return out;
}

/** The rows listed in `indices`, in that order. */
export function selectRows(m: Matrix, indices: ArrayLike<number>): Matrix64 {
  const { cols } = m;
  const out = new Float64Array(indices.length * cols);
  for (let r = 0; r < indices.length; r++) {
    const i = indices[r];
    if (!Number.isInteger(i) || i < 0 || i >= m.rows) throw new RangeError(`selectRows: index ${i} outside 0..${m.rows - 1}`);
    out.set(m.data.subarray(i * cols, (i + 1) * cols), r * cols);
  }
  return { rows: indices.length, cols, data: out };
}

export function columnMeans(m: Matrix): Float64Array {
  const { rows, cols, data } = m;
  const sums = new Float64Array(cols);
  for (let i = 0; i < rows; i++) {
    const base = i * cols;
    for (let j = 0; j < cols; j++) sums[j] += data[base + j];
  }
  if (rows > 0) for (let j = 0; j < cols; j++) sums[j] /= rows;
  return sums;
}

/** `m - offset` with `offset` subtracted from every row (a new float64 matrix). */
export function subtractRow(m: Matrix, offset: ArrayLike<number>): Matrix64 {
  const { rows, cols, data } = m;
  if (offset.length !== cols) throw new RangeError(`subtractRow: offset has ${offset.length} values, matrix has ${cols} columns`);
  const out = new Float64Array(rows * cols);
  for (let i = 0; i < rows; i++) {
    const base = i * cols;
    for (let j = 0; j < cols; j++) out[base + j] = data[base + j] - offset[j];
  }
  return { rows, cols, data: out };
}

/** Squared Euclidean norm of every row. */
export function rowSqNorms(m: Matrix): Float64Array {
  const { rows, cols, data } = m;
  const out = new Float64Array(rows);
  for (let i = 0; i < rows; i++) {
    let s = 0;
    const base = i * cols;
    for (let j = 0; j < cols; j++) {
      const v = data[base + j];
      s += v * v;
    }
    out[i] = s;
  }
  return out;
}

/** Row vector times matrix: `v (1 x rows) * m (rows x cols)`. */
export function vecMat(v: ArrayLike<number>, m: Matrix): Float64Array {
  const { rows, cols, data } = m;
  if (v.length !== rows) throw new RangeError(`vecMat: vector has ${v.length} values, matrix has ${rows} rows`);
  const out = new Float64Array(cols);
  for (let i = 0; i < rows; i++) {
    const vi = v[i];
    if (vi === 0) continue;
    const base = i * cols;
    for (let j = 0; j < cols; j++) out[j] += vi * data[base + j];
  }
  return out;
}
