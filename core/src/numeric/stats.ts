import type { Matrix, NumericEngine } from '../types.js';
import { columnMeans, subtractRow, type Matrix64 } from './matrix.js';

export interface CovarianceOptions {
  /** Divisor is rows - ddof: 0 for the maximum-likelihood estimate (sklearn's GaussianMixture), 1 for PCA. */
  ddof?: number;
  /** Use this mean instead of the column means. */
  mean?: Float64Array;
}

/**
 * Column means and the covariance matrix. The data are centred first and the product (X - mean)^T (X - mean) runs on
 * the engine in float64, which keeps the accuracy of the two-pass formula.
 */
export async function covariance(engine: NumericEngine, X: Matrix, options: CovarianceOptions = {}): Promise<{ mean: Float64Array; covariance: Matrix64 }> {
  const ddof = options.ddof ?? 0;
  const mean = options.mean ?? columnMeans(X);
  const divisor = X.rows - ddof;
  if (divisor <= 0) throw new RangeError(`covariance: ${X.rows} rows with ddof ${ddof} leave no degrees of freedom`);
  const centred = subtractRow(X, mean);
  const cov = await engine.matmul(centred, centred, { transA: true });
  const d = cov.rows;
  const c = cov.data;
  // The engine's blocked product need not be bit-symmetric; mirror the lower triangle.
  for (let i = 0; i < d; i++) {
    for (let j = 0; j < i; j++) {
      const v = c[i * d + j] / divisor;
      c[i * d + j] = v;
      c[j * d + i] = v;
    }
    c[i * d + i] /= divisor;
  }
  return { mean, covariance: cov };
}

/** log(sum(exp(row))) of every row, stable (the row maximum is factored out, as scipy's logsumexp). */
export function logsumexpRows(m: Matrix): Float64Array {
  const { rows, cols, data } = m;
  const out = new Float64Array(rows);
  for (let i = 0; i < rows; i++) {
    const base = i * cols;
    let max = -Infinity;
    for (let j = 0; j < cols; j++) if (data[base + j] > max) max = data[base + j];
    if (max === -Infinity || !Number.isFinite(max)) {
      out[i] = max;
      continue;
    }
    let s = 0;
    for (let j = 0; j < cols; j++) s += Math.exp(data[base + j] - max);
    out[i] = max + Math.log(s);
  }
  return out;
}
