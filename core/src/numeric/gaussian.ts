import type { Matrix, NumericEngine } from '../types.js';
import { INTERMEDIATE_BUDGET, componentsPerCall } from './engine.js';
import { vecMat, type Matrix64 } from './matrix.js';

const LOG_2PI = Math.log(2 * Math.PI);

/**
 * log N(x | mean_k, covariance_k) for every row x of X and every component k, as an [n, K] matrix, where
 * covariance_k^{-1} = W_k W_k^T (`factors[k]`, sklearn's `precisions_cholesky_`) and `logDets[k]` = sum(log(diag(W_k))).
 * The Mahalanobis terms ||x W_k - mean_k W_k||^2 of several components come from one engine product per block of rows.
 */
export async function logGaussianDensities(
  engine: NumericEngine,
  X: Matrix, means: Matrix, factors: readonly Matrix[], logDets: ArrayLike<number>): Promise<Matrix64> {
  const K = means.rows;
  const d = means.cols;
  if (X.cols !== d) throw new RangeError(`logGaussianDensities: X has ${X.cols} columns, the means have ${d}`);
  if (factors.length !== K || logDets.length !== K) throw new RangeError(`logGaussianDensities: ${K} means but ${factors.length} factors and ${logDets.length} log-determinants`);
  factors.forEach((W, k) => {
    if (W.rows !== d || W.cols !== d) throw new RangeError(`logGaussianDensities: factor ${k} is ${W.rows} x ${W.cols}, expected ${d} x ${d}`);
  });
  const n = X.rows;
  const out = new Float64Array(n * K);
  const constant = d * LOG_2PI;
  const perCall = componentsPerCall(K, d);
  for (let k0 = 0; k0 < K; k0 += perCall) {
    const G = Math.min(perCall, K - k0);
    // [W_k0 | W_k0+1 | ...] side by side, and the matching offsets -mean_k W_k.
    const Wcat = new Float64Array(d * G * d);
    const offset = new Float64Array(G * d);
    for (let g = 0; g < G; g++) {
      const W = factors[k0 + g];
      for (let i = 0; i < d; i++) Wcat.set(W.data.subarray(i * d, (i + 1) * d), i * G * d + g * d);
      const muW = vecMat(means.data.subarray((k0 + g) * d, (k0 + g + 1) * d), W);
      for (let j = 0; j < d; j++) offset[g * d + j] = -muW[j];
    }
    const Wm: Matrix64 = { rows: d, cols: G * d, data: Wcat };
    const blockRows = Math.max(1, Math.floor(INTERMEDIATE_BUDGET / (G * d)));
    for (let start = 0; start < n; start += blockRows) {
      const end = Math.min(n, start + blockRows);
      const block: Matrix = start === 0 && end === n ? X : { rows: end - start, cols: d, data: X.data.subarray(start * d, end * d) };
      const S = await engine.groupedSqNorms(block, Wm, offset, G);
      for (let i = 0; i < end - start; i++) {
        for (let g = 0; g < G; g++) out[(start + i) * K + k0 + g] = -0.5 * (constant + S.data[i * G + g]) + logDets[k0 + g];
      }
    }
  }
  return { rows: n, cols: K, data: out };
}
