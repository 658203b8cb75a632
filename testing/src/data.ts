// Seeded inputs for the checks: small, so every suite runs in well under a second, and fixed, so a failure repeats.
import { createRng, type Matrix64 } from '@transformaly/core';

/** `rows` x `cols` correlated Gaussian rows: z L^T + offset, with L a fixed lower-triangular mixing matrix. */
export function gaussianRows(rows: number, cols: number, seed: number): Matrix64 {
  const rng = createRng(seed);
  const data = new Float64Array(rows * cols);
  const z = new Float64Array(cols);
  for (let i = 0; i < rows; i++) {
    for (let j = 0; j < cols; j++) z[j] = rng.normal();
    for (let j = 0; j < cols; j++) {
      let v = 1 + j;
      for (let k = 0; k <= j; k++) v += z[k] * (k === j ? 1 : 0.5 / (1 + j - k));
      data[i * cols + j] = v;
    }
  }
  return { rows, cols, data };
}

/** Rows far outside the cloud of `gaussianRows` (25 units away in every column). */
export function outlierRows(rows: number, cols: number): Matrix64 {
  const data = new Float64Array(rows * cols);
  for (let i = 0; i < rows; i++) for (let j = 0; j < cols; j++) data[i * cols + j] = (i % 2 === 0 ? 25 : -25) + 1 + j;
  return { rows, cols, data };
}

/** Normality scores of `n` images per space, on different scales like a log-likelihood and a discrepancy score. */
export function spaceScores(n: number, seed: number): Record<string, Float64Array> {
  const rng = createRng(seed);
  const pretrained = Float64Array.from({ length: n }, () => -120 + 10 * rng.normal());
  const finetuned = Float64Array.from({ length: n }, () => 4 + 0.5 * rng.normal());
  return { pretrained, finetuned };
}

export function withValue(m: Matrix64, index: number, value: number): Matrix64 {
  const data = m.data.slice();
  data[index] = value;
  return { rows: m.rows, cols: m.cols, data };
}

export function asFloat32(m: Matrix64): { rows: number; cols: number; data: Float32Array } {
  return { rows: m.rows, cols: m.cols, data: Float32Array.from(m.data) };
}
