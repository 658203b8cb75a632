// Decompositions of small dense matrices (d x d with d up to a few thousand): ml-matrix for Cholesky and the symmetric
// eigen-decomposition, flat-array triangular inversion, engine products where the work is cubic.
import { CholeskyDecomposition, EigenvalueDecomposition, Matrix as MlMatrix } from 'ml-matrix';
import type { Matrix, NumericEngine } from '../types.js';
import type { Matrix64 } from './matrix.js';

export class NotPositiveDefiniteError extends Error {
  constructor(what: string) {
    super(
      `${what}: the matrix is not positive definite (a singular or ill-conditioned covariance); ` +
        'increase the regularization, or remove duplicated / constant features',
    );
    this.name = 'NotPositiveDefiniteError';
  }
}

function assertSquare(a: Matrix, what: string): number {
  if (a.rows !== a.cols) throw new RangeError(`${what}: expected a square matrix, got ${a.rows} x ${a.cols}`);
  if (a.rows === 0) throw new RangeError(`${what}: empty matrix`);
  return a.rows;
}

/** The matrix with its upper triangle replaced by the lower one, as nested rows for ml-matrix. */
function symmetricFromLower(a: Matrix): number[][] {
  const n = a.rows;
  const rows: number[][] = [];
  for (let i = 0; i < n; i++) rows.push(new Array<number>(n));
  for (let i = 0; i < n; i++) {
    for (let j = 0; j <= i; j++) {
      const v = a.data[i * n + j];
      rows[i][j] = v;
      rows[j][i] = v;
    }
  }
  return rows;
}

/**
 * Lower Cholesky factor L (A = L L^T). Only the lower triangle of A is read, as LAPACK's potrf does, so a product
 * whose two triangles differ in the last bit is accepted. Throws NotPositiveDefiniteError when a pivot is not positive
 * or is below n * eps times its diagonal entry (singular to working precision).
 */
export function cholesky(a: Matrix, what = 'cholesky'): Matrix64 {
  const n = assertSquare(a, what);
  const dec = new CholeskyDecomposition(new MlMatrix(symmetricFromLower(a)));
  if (!dec.isPositiveDefinite()) throw new NotPositiveDefiniteError(what);
  const L = dec.lowerTriangularMatrix;
  const out = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    const row = L.getRow(i);
    for (let j = 0; j <= i; j++) out[i * n + j] = row[j];
  }
  // A pivot within rounding of zero relative to its diagonal entry means the matrix is singular to working precision;
  // LAPACK would accept it and hand back a factor made of rounding noise.
  const tiny = n * Number.EPSILON;
  for (let i = 0; i < n; i++) {
    const v = out[i * n + i];
    if (!(v > 0) || !Number.isFinite(v) || v * v <= tiny * a.data[i * n + i]) throw new NotPositiveDefiniteError(what);
  }
  return { rows: n, cols: n, data: out };
}

/** L^{-1} of a lower-triangular L (row-oriented forward substitution on contiguous rows). */
export function invertLowerTriangular(L: Matrix, what = 'invertLowerTriangular'): Matrix64 {
  const n = assertSquare(L, what);
  const l = L.data;
  const m = new Float64Array(n * n);
  const acc = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    const lii = l[i * n + i];
    if (lii === 0 || !Number.isFinite(lii)) throw new RangeError(`${what}: zero or non-finite diagonal at ${i}`);
    acc.fill(0, 0, i);
    // Row i of L^{-1}: (e_i - sum_{k<i} L[i,k] M[k,:]) / L[i,i]; row k of M is zero beyond column k.
    for (let k = 0; k < i; k++) {
      const a = l[i * n + k];
      if (a === 0) continue;
      const base = k * n;
      for (let j = 0; j <= k; j++) acc[j] += a * m[base + j];
    }
    const base = i * n;
    const inv = 1 / lii;
    for (let j = 0; j < i; j++) m[base + j] = -acc[j] * inv;
    m[base + i] = inv;
  }
  return { rows: n, cols: n, data: m };
}

export interface PrecisionFactor {
  /** Upper-triangular W with W W^T = covariance^{-1} (sklearn's `precisions_cholesky_`). */
  factor: Matrix64;
  /** sum(log(diag(W))) = -0.5 log det(covariance). */
  logDet: number;
}

/** sklearn's `_compute_precision_cholesky` for one full covariance: W = (L^{-1})^T with covariance = L L^T. */
export function precisionCholesky(covariance: Matrix, what = 'covariance'): PrecisionFactor {
  const L = cholesky(covariance, what);
  const M = invertLowerTriangular(L, what);
  const n = M.rows;
  const w = new Float64Array(n * n);
  let logDet = 0;
  for (let i = 0; i < n; i++) {
    for (let j = 0; j <= i; j++) w[j * n + i] = M.data[i * n + j];
    logDet += Math.log(M.data[i * n + i]);
  }
  return { factor: { rows: n, cols: n, data: w }, logDet };
}

/** log det of a symmetric positive-definite matrix, through its Cholesky factor. */
export function logDetSPD(a: Matrix, what = 'logDetSPD'): number {
  const L = cholesky(a, what);
  const n = L.rows;
  let s = 0;
  for (let i = 0; i < n; i++) s += Math.log(L.data[i * n + i]);
  return 2 * s;
}

/** Inverse of a symmetric positive-definite matrix: (L^{-1})^T L^{-1}, the product on the engine. */
export async function inverseSPD(engine: NumericEngine, a: Matrix, what = 'inverseSPD'): Promise<Matrix64> {
  const M = invertLowerTriangular(cholesky(a, what), what);
  return engine.matmul(M, M, { transA: true });
}

export interface SymmetricEigen {
  /** Eigenvalues, largest first. */
  values: Float64Array;
  /** Eigenvectors as columns, in the order of `values`. */
  vectors: Matrix64;
}

/** Eigen-decomposition of a symmetric matrix (Householder tridiagonalisation + QL); only the lower triangle is read. */
export function symmetricEigen(a: Matrix, what = 'symmetricEigen'): SymmetricEigen {
  const n = assertSquare(a, what);
  const evd = new EigenvalueDecomposition(new MlMatrix(symmetricFromLower(a)), { assumeSymmetric: true });
  const raw = evd.realEigenvalues;
  const V = evd.eigenvectorMatrix;
  const order = Array.from({ length: n }, (_, i) => i).sort((x, y) => raw[y] - raw[x]);
  const values = new Float64Array(n);
  const vectors = new Float64Array(n * n);
  for (let c = 0; c < n; c++) {
    const src = order[c];
    values[c] = raw[src];
    for (let r = 0; r < n; r++) vectors[r * n + c] = V.get(r, src);
  }
  return { values, vectors: { rows: n, cols: n, data: vectors } };
}
