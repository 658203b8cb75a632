import {
  assertCols,
  assertNonNegativeNumber,
  assertUsableMatrix,
  castGraph,
  covariance,
  float64Entry,
  logGaussianDensities,
  logGaussianDensitiesGraph,
  metaNumber,
  precisionCholesky,
  stateArray,
  stateMeta,
  subtractRow,
  subtractRowGraph,
  symmetricEigen,
  type Matrix64,
} from '@transformaly/core';
import type { DensityScorer, JsonObject, Matrix, NumericEngine, OnnxExportContext, StageState } from '@transformaly/core';

export interface GaussianScorerOptions {
  /**
   * PCA-whiten first, keeping the smallest number of leading components whose cumulative explained-variance ratio
   * reaches `varianceFraction` (0 < f <= 1). `false` (default) models the features as they are.
   */
  whiten?: { varianceFraction: number } | false;
  /** Added to the covariance diagonal (sklearn's `reg_covar`); default 1e-6. */
  regularization?: number;
}

interface Whitening {
  varianceFraction: number;
  mean: Float64Array;
  /** [k, d] principal axes, largest variance first. */
  components: Float64Array;
  /** [k] variance along each axis (divisor N - 1, as sklearn's PCA). */
  explainedVariance: Float64Array;
  /** Fraction of the total variance the k axes explain. */
  explainedRatio: number;
}

interface Fitted {
  inputDim: number;
  /** Dimension the Gaussian lives in: k when whitened, else inputDim. */
  dim: number;
  samples: number;
  regularization: number;
  whitening: Whitening | null;
  mean: Float64Array;
  /** Upper-triangular W with W W^T = (covariance + reg I)^{-1}. */
  precisionCholesky: Float64Array;
  logDet: number;
}

const KIND = 'gaussian';
const VERSION = 1;
const WHAT = 'GaussianScorer';

/**
 * A full-covariance Gaussian density (optionally on PCA-whitened features). `scoreSamples` returns each row's
 * log-likelihood, equal to sklearn's `GaussianMixture(1, covariance_type='full', reg_covar=regularization)`
 * `.score_samples` (after `PCA(k, whiten=True)` when whitening).
 */
export class GaussianScorer implements DensityScorer {
  readonly name = KIND;
  readonly options: Readonly<{ whiten: { varianceFraction: number } | false; regularization: number }>;
  private model: Fitted | null = null;

  constructor(
    private readonly engine: NumericEngine,
    options: GaussianScorerOptions = {},
  ) {
    const regularization = options.regularization ?? 1e-6;
    assertNonNegativeNumber(regularization, `${WHAT}: options.regularization`);
    const whiten = options.whiten ?? false;
    if (whiten !== false) {
      const f = whiten?.varianceFraction;
      if (typeof f !== 'number' || !(f > 0 && f <= 1)) {
        throw new RangeError(`${WHAT}: options.whiten.varianceFraction must be a number in (0, 1], got ${JSON.stringify(f)}`);
      }
    }
    this.options = Object.freeze({ whiten: whiten === false ? false : { varianceFraction: whiten.varianceFraction }, regularization });
  }

  get fitted(): boolean {
    return this.model !== null;
  }

  /** Number of whitened components kept (null without whitening or before fitting). */
  get components(): number | null {
    return this.model?.whitening ? this.model.dim : null;
  }

  async fit(X: Matrix): Promise<void> {
    assertUsableMatrix(X, `${WHAT}.fit: X`, 2);
    const inputDim = X.cols;
    let whitening: Whitening | null = null;
    let Z: Matrix = X;
    if (this.options.whiten !== false) {
      whitening = await fitWhitening(this.engine, X, this.options.whiten.varianceFraction);
      Z = await whiten(this.engine, X, whitening);
    }
    // The maximum-likelihood estimate (divisor N) plus the regularization on the diagonal, as sklearn's mixture.
    const { mean, covariance: cov } = await covariance(this.engine, Z);
    const dim = cov.rows;
    for (let i = 0; i < dim; i++) cov.data[i * dim + i] += this.options.regularization;
    const { factor, logDet } = precisionCholesky(cov, `${WHAT}.fit: covariance (+ regularization ${this.options.regularization})`);
    this.model = { inputDim, dim, samples: X.rows, regularization: this.options.regularization, whitening, mean, precisionCholesky: factor.data, logDet };
  }

  async scoreSamples(Y: Matrix): Promise<Float64Array> {
    const model = this.requireModel('scoreSamples');
    assertUsableMatrix(Y, `${WHAT}.scoreSamples: Y`, 0);
    assertCols(Y, model.inputDim, `${WHAT}.scoreSamples: Y`);
    if (Y.rows === 0) return new Float64Array(0);
    const Z = model.whitening ? await whiten(this.engine, Y, model.whitening) : Y;
    // Centring on the fitted mean first keeps ||(z - mu) W||^2 free of cancellation between z W and mu W.
    const Zc = subtractRow(Z, model.mean);
    const d = model.dim;
    const logProb = await logGaussianDensities(
      this.engine,
      Zc,
      { rows: 1, cols: d, data: new Float64Array(d) },
      [{ rows: d, cols: d, data: model.precisionCholesky }],
      [model.logDet],
    );
    return logProb.data;
  }

  /** `scoreSamples` as float64 nodes, step for step: whitening, centring, the log-density. */
  exportOnnx(ctx: OnnxExportContext, features: string): string {
    const m = this.requireModel('exportOnnx');
    const g = ctx.graph;
    let z = castGraph(ctx, features, 'float64');
    if (m.whitening) {
      const w = m.whitening;
      const components = ctx.weight('pca_components', { dims: [m.dim, m.inputDim], data: w.components.slice() });
      const projected = g.op('Gemm', [subtractRowGraph(ctx, z, w.mean, 'pca_mean'), components], { transB: 1 });
      z = g.op('Div', [projected, ctx.weight('pca_scale', { dims: [m.dim], data: w.explainedVariance.map(Math.sqrt) })]);
    }
    const d = m.dim;
    const logProb = logGaussianDensitiesGraph(ctx, subtractRowGraph(ctx, z, m.mean, 'mean'), {
      means: { rows: 1, cols: d, data: new Float64Array(d) },
      factors: [{ rows: d, cols: d, data: m.precisionCholesky }],
      logDets: [m.logDet],
    });
    return g.op('Squeeze', [logProb, g.int64s([1])]);
  }

  exportState(): StageState {
    const m = this.requireModel('exportState');
    const meta: JsonObject = {
      kind: KIND,
      version: VERSION,
      inputDim: m.inputDim,
      dim: m.dim,
      samples: m.samples,
      regularization: m.regularization,
      whiten: m.whitening ? { varianceFraction: m.whitening.varianceFraction, components: m.dim, explainedVarianceRatio: m.whitening.explainedRatio } : false,
    };
    const arrays: StageState['arrays'] = {
      mean: float64Entry(m.mean, [m.dim]),
      precision_cholesky: float64Entry(m.precisionCholesky, [m.dim, m.dim]),
    };
    if (m.whitening) {
      arrays.pca_mean = float64Entry(m.whitening.mean, [m.inputDim]);
      arrays.pca_components = float64Entry(m.whitening.components, [m.dim, m.inputDim]);
      arrays.pca_explained_variance = float64Entry(m.whitening.explainedVariance, [m.dim]);
    }
    return { meta, arrays };
  }

  importState(state: StageState): void {
    const what = `${WHAT}.importState`;
    const meta = stateMeta(state, what, KIND, VERSION);
    const inputDim = metaNumber(meta, 'inputDim', what, true);
    const dim = metaNumber(meta, 'dim', what, true);
    const samples = metaNumber(meta, 'samples', what, true);
    const regularization = metaNumber(meta, 'regularization', what);
    let whitening: Whitening | null = null;
    const w = meta.whiten;
    if (w !== false) {
      if (!w || typeof w !== 'object' || Array.isArray(w)) throw new TypeError(`${what}: meta.whiten must be false or an object`);
      const varianceFraction = metaNumber(w, 'varianceFraction', `${what} (whiten)`);
      const explainedRatio = metaNumber(w, 'explainedVarianceRatio', `${what} (whiten)`);
      const explainedVariance = stateArray(state, 'pca_explained_variance', [dim], what);
      if (explainedVariance.some((v) => !(v > 0))) throw new RangeError(`${what}: pca_explained_variance must be positive`);
      whitening = {
        varianceFraction,
        explainedRatio,
        mean: stateArray(state, 'pca_mean', [inputDim], what),
        components: stateArray(state, 'pca_components', [dim, inputDim], what),
        explainedVariance,
      };
    } else if (dim !== inputDim) {
      throw new RangeError(`${what}: meta.dim ${dim} differs from meta.inputDim ${inputDim} without whitening`);
    }
    const mean = stateArray(state, 'mean', [dim], what);
    const factor = stateArray(state, 'precision_cholesky', [dim, dim], what);
    let logDet = 0;
    for (let i = 0; i < dim; i++) {
      const v = factor[i * dim + i];
      if (!(v > 0)) throw new RangeError(`${what}: precision_cholesky has a non-positive diagonal entry at ${i}`);
      logDet += Math.log(v);
    }
    // The state describes the fitted model, whatever options this instance was constructed with.
    this.model = { inputDim, dim, samples, regularization, whitening, mean, precisionCholesky: factor, logDet };
  }

  private requireModel(method: string): Fitted {
    if (!this.model) throw new Error(`${WHAT}.${method}: the scorer is not fitted; call fit() or importState() first`);
    return this.model;
  }
}

/**
 * PCA as sklearn's `PCA(k, whiten=True)` with the smallest k whose cumulative explained-variance ratio reaches
 * `fraction`. Axes with (numerically) zero variance are never kept, so whitening cannot divide by zero.
 */
async function fitWhitening(engine: NumericEngine, X: Matrix, fraction: number): Promise<Whitening> {
  const { mean, covariance: cov } = await covariance(engine, X, { ddof: 1 });
  const { values, vectors } = symmetricEigen(cov, `${WHAT}.fit: PCA covariance`);
  const d = cov.rows;
  const variances = values.map((v) => Math.max(v, 0));
  let total = 0;
  for (const v of variances) total += v;
  if (!(total > 0)) throw new RangeError(`${WHAT}.fit: X has zero variance in every column; nothing to whiten`);
  // Below this, an eigenvalue is rounding noise of the largest one.
  const floor = variances[0] * d * Number.EPSILON * 16;
  let k = 0;
  let cumulative = 0;
  while (k < d && variances[k] > floor) {
    cumulative += variances[k];
    k++;
    if (cumulative / total >= fraction) break;
  }
  const components = new Float64Array(k * d);
  for (let c = 0; c < k; c++) for (let j = 0; j < d; j++) components[c * d + j] = vectors.data[j * d + c];
  return { varianceFraction: fraction, mean, components, explainedVariance: variances.slice(0, k), explainedRatio: cumulative / total };
}

/** (X - mean) components^T / sqrt(explained variance), in sklearn's order of operations. */
async function whiten(engine: NumericEngine, X: Matrix, w: Whitening): Promise<Matrix64> {
  const k = w.explainedVariance.length;
  const projected = await engine.matmul(subtractRow(X, w.mean), { rows: k, cols: X.cols, data: w.components }, { transB: true });
  const scale = w.explainedVariance.map(Math.sqrt);
  const z = projected.data;
  for (let i = 0; i < projected.rows; i++) for (let c = 0; c < k; c++) z[i * k + c] /= scale[c];
  return projected;
}
