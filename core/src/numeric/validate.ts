import type { Matrix } from '../types.js';

/**
 * Checks that `m` is a well-formed matrix: integer dimensions, a float typed array, and `rows * cols` values.
 * `what` names the argument in the error, e.g. `GaussianScorer.fit: X`.
 */
export function assertMatrix(m: Matrix, what: string): void {
  if (m === null || typeof m !== 'object') throw new TypeError(`${what}: expected a matrix {rows, cols, data}, got ${m}`);
  const { rows, cols, data } = m;
  if (!Number.isInteger(rows) || rows < 0 || !Number.isInteger(cols) || cols < 0) {
    throw new TypeError(`${what}: rows and cols must be non-negative integers, got ${rows} x ${cols}`);
  }
  if (!(data instanceof Float64Array) && !(data instanceof Float32Array)) {
    throw new TypeError(`${what}: data must be a Float32Array or Float64Array`);
  }
  if (data.length !== rows * cols) {
    throw new RangeError(`${what}: data has ${data.length} values, expected ${rows} x ${cols} = ${rows * cols}`);
  }
}

/** Throws on the first NaN or infinite value, naming its row and column. */
export function assertFinite(m: Matrix, what: string): void {
  const { cols, data } = m;
  for (let k = 0; k < data.length; k++) {
    const v = data[k];
    // `v - v` is NaN exactly for NaN and +-Infinity: one comparison per value on the common path.
    if (v - v !== 0) {
      const row = Math.floor(k / cols);
      throw new RangeError(`${what}: ${v} at row ${row}, column ${k - row * cols}; every value must be finite`);
    }
  }
}

export function assertMinRows(m: Matrix, min: number, what: string, why?: string): void {
  if (m.rows < min) {
    throw new RangeError(`${what}: ${m.rows} row${m.rows === 1 ? '' : 's'}, at least ${min} needed${why ? ` (${why})` : ''}`);
  }
}

export function assertCols(m: Matrix, cols: number, what: string): void {
  if (m.cols !== cols) throw new RangeError(`${what}: ${m.cols} columns, expected ${cols} (the number the model was fitted on)`);
}

/** Structure, at least `minRows` rows, at least one column, every value finite. */
export function assertUsableMatrix(m: Matrix, what: string, minRows = 1): void {
  assertMatrix(m, what);
  assertMinRows(m, minRows, what);
  if (m.cols < 1) throw new RangeError(`${what}: 0 columns, at least 1 needed`);
  assertFinite(m, what);
}

/** Indices of the columns whose values are all equal (zero variance); such columns make a covariance singular. */
export function constantColumns(m: Matrix): number[] {
  const { rows, cols, data } = m;
  if (rows === 0) return [];
  const varying = new Uint8Array(cols);
  for (let i = 1; i < rows; i++) {
    const base = i * cols;
    for (let j = 0; j < cols; j++) if (data[base + j] !== data[j]) varying[j] = 1;
  }
  const out: number[] = [];
  for (let j = 0; j < cols; j++) if (!varying[j]) out.push(j);
  return out;
}

export function assertPositiveInteger(value: unknown, what: string): asserts value is number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 1) {
    throw new RangeError(`${what}: expected a positive integer, got ${JSON.stringify(value)}`);
  }
}

export function assertNonNegativeNumber(value: unknown, what: string): asserts value is number {
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 0) {
    throw new RangeError(`${what}: expected a finite number >= 0, got ${JSON.stringify(value)}`);
  }
}
