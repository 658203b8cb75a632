// An example third-party Transformaly plugin: a Gaussian density scorer whose covariance is shrunk towards a scaled
// identity by the Ledoit-Wolf rule (scikit-learn's `sklearn.covariance.LedoitWolf`). A config loads this file by path:
//
//   scorers: { finetuned: { use: './examples/scorer-ledoit-wolf/index.ts', options: { shrinkage: 0.2 } } }
//
// Only the public API of @transformaly/core is used: the DensityScorer contract, `definePlugin`, the numeric engine
// the pipeline hands the stage (products on its runtime, Cholesky through ml-matrix), and the graph pieces its
// `exportOnnx` hook appends to an exported detector (`transformaly export`).
import {
  definePlugin,
  assertCols,
  assertPositiveInteger,
  assertUsableMatrix,
  castGraph,
  columnMeans,
  float64Entry,
  logGaussianDensities,
  logGaussianDensitiesGraph,
  metaNumber,
  precisionCholesky,
  rowSqNorms,
  stateArray,
  stateMeta,
  subtractRow,
  subtractRowGraph,
  type DensityScorer,
  type JsonSchema,
  type Matrix,
  type Matrix64,
  type NumericEngine,
  type OnnxExportContext,
  type StageState,
} from '@transformaly/core';

export interface LedoitWolfOptions {
  /** Fixed shrinkage in [0, 1] (sklearn's `ShrunkCovariance(shrinkage)`) instead of the Ledoit-Wolf estimate. */
  shrinkage?: number;
  /** Rows per engine call when fitting and scoring: bounds memory (a block x d float64 copy); results do not depend on it. */
  blockSize?: number;
}

interface Fitted {
  dim: number;
  samples: number;
  shrinkage: number;
  /** Whether `shrinkage` was fixed by the options rather than estimated. */
  fixed: boolean;
  location: Float64Array;
  /** The shrunk covariance, [dim, dim] (sklearn's `covariance_`). */
  covariance: Float64Array;
  /** Upper-triangular W with W W^T = covariance^{-1}. */
  precisionCholesky: Float64Array;
  logDet: number;
}

const KIND = 'ledoit-wolf';
const VERSION = 1;
const WHAT = 'LedoitWolfScorer';
const DEFAULT_BLOCK_SIZE = 4096;

/**
 * Normality score = log N(x | location, shrunk covariance), where the covariance is
 * (1 - s) * S + s * (trace(S) / d) * I, S the maximum-likelihood sample covariance and s the Ledoit-Wolf shrinkage
 * (`sklearn.covariance.ledoit_wolf_shrinkage`, assume_centered=False) or the fixed `options.shrinkage`.
 * Unlike a plain Gaussian it stays well defined with fewer training rows than feature dimensions.
 */
export class LedoitWolfScorer implements DensityScorer {
  readonly name = KIND;
  readonly options: Readonly<{ shrinkage: number | null; blockSize: number }>;
  private model: Fitted | null = null;

  constructor(
    private readonly engine: NumericEngine,
    options: LedoitWolfOptions = {},
  ) {
    const { shrinkage, blockSize = DEFAULT_BLOCK_SIZE } = options;
    if (shrinkage !== undefined && !(typeof shrinkage === 'number' && shrinkage >= 0 && shrinkage <= 1)) {
      throw new RangeError(`${WHAT}: options.shrinkage must be a number in [0, 1], got ${JSON.stringify(shrinkage)}`);
    }
    assertPositiveInteger(blockSize, `${WHAT}: options.blockSize`);
    this.options = Object.freeze({ shrinkage: shrinkage ?? null, blockSize });
  }

  /** The shrinkage used by the fitted model (estimated or fixed); null before fitting. */
  get shrinkage(): number | null {
    return this.model?.shrinkage ?? null;
  }

  /** A copy of the fitted shrunk covariance; null before fitting. */
  get covariance(): Matrix64 | null {
    const m = this.model;
    return m ? { rows: m.dim, cols: m.dim, data: Float64Array.from(m.covariance) } : null;
  }

  /** A copy of the fitted mean; null before fitting. */
  get location(): Float64Array | null {
    return this.model ? Float64Array.from(this.model.location) : null;
  }

  async fit(X: Matrix): Promise<void> {
    assertUsableMatrix(X, `${WHAT}.fit: X`, 2);
    const n = X.rows;
    const d = X.cols;
    const location = columnMeans(X);
    // Scatter matrix Xc^T Xc summed over row blocks on the engine. sklearn's beta_ = sum(X2^T X2) equals the sum over
    // rows of ||x_c||^4, so it needs the row norms only, not a second d x d product.
    const scatter = new Float64Array(d * d);
    let sumFourth = 0;
    for (const block of rowBlocks(X, this.options.blockSize)) {
      const centred = subtractRow(block, location);
      const product = await this.engine.matmul(centred, centred, { transA: true });
      for (let k = 0; k < scatter.length; k++) scatter[k] += product.data[k];
      for (const r of rowSqNorms(centred)) sumFourth += r * r;
    }
    // The engine's blocked product need not be bit-symmetric: keep the lower triangle, which Cholesky reads.
    const empirical = new Float64Array(d * d);
    let trace = 0;
    let sumSquares = 0;
    for (let i = 0; i < d; i++) {
      for (let j = 0; j <= i; j++) {
        const v = scatter[i * d + j] / n;
        empirical[i * d + j] = v;
        empirical[j * d + i] = v;
        sumSquares += i === j ? v * v : 2 * v * v;
      }
      trace += empirical[i * d + i];
    }
    const mu = trace / d;
    const fixed = this.options.shrinkage !== null;
    const shrinkage = fixed ? this.options.shrinkage! : ledoitWolfShrinkage(n, d, sumFourth, sumSquares, trace);
    const covariance = new Float64Array(d * d);
    for (let k = 0; k < covariance.length; k++) covariance[k] = (1 - shrinkage) * empirical[k];
    for (let i = 0; i < d; i++) covariance[i * d + i] += shrinkage * mu;
    const { factor, logDet } = precisionCholesky(
      { rows: d, cols: d, data: covariance },
      `${WHAT}.fit: shrunk covariance (shrinkage ${shrinkage}${fixed ? ', fixed' : ''}, ${n} rows, ${d} columns)`,
    );
    this.model = { dim: d, samples: n, shrinkage, fixed, location, covariance, precisionCholesky: factor.data, logDet };
  }

  async scoreSamples(Y: Matrix): Promise<Float64Array> {
    const model = this.requireModel('scoreSamples');
    assertUsableMatrix(Y, `${WHAT}.scoreSamples: Y`, 0);
    assertCols(Y, model.dim, `${WHAT}.scoreSamples: Y`);
    const d = model.dim;
    const out = new Float64Array(Y.rows);
    const zero: Matrix = { rows: 1, cols: d, data: new Float64Array(d) };
    const factor: Matrix = { rows: d, cols: d, data: model.precisionCholesky };
    let offset = 0;
    for (const block of rowBlocks(Y, this.options.blockSize)) {
      // Centring first keeps ||(y - mu) W||^2 free of cancellation between y W and mu W.
      const logProb = await logGaussianDensities(this.engine, subtractRow(block, model.location), zero, [factor], [model.logDet]);
      out.set(logProb.data, offset);
      offset += block.rows;
    }
    return out;
  }

  /**
   * The export hook: `scoreSamples` as nodes of an exported detector's graph. `features` names a float32 [N, dim]
   * value; the returned name is the float64 [N] log-likelihood. Same steps as above: centre on the location, then the
   * Gaussian log-density with the precision's Cholesky factor, both in float64.
   */
  exportOnnx(ctx: OnnxExportContext, features: string): string {
    const m = this.requireModel('exportOnnx');
    const centred = subtractRowGraph(ctx, castGraph(ctx, features, 'float64'), m.location, 'location');
    const logProb = logGaussianDensitiesGraph(ctx, centred, {
      means: { rows: 1, cols: m.dim, data: new Float64Array(m.dim) },
      factors: [{ rows: m.dim, cols: m.dim, data: m.precisionCholesky }],
      logDets: [m.logDet],
    });
    // [N, 1] -> [N]
    return ctx.graph.op('Squeeze', [logProb, ctx.graph.int64s([1])]);
  }

  exportState(): StageState {
    const m = this.requireModel('exportState');
    return {
      meta: { kind: KIND, version: VERSION, dim: m.dim, samples: m.samples, shrinkage: m.shrinkage, fixed: m.fixed },
      arrays: {
        location: float64Entry(m.location, [m.dim]),
        covariance: float64Entry(m.covariance, [m.dim, m.dim]),
      },
    };
  }

  importState(state: StageState): void {
    const what = `${WHAT}.importState`;
    const meta = stateMeta(state, what, KIND, VERSION);
    const dim = metaNumber(meta, 'dim', what, true);
    const samples = metaNumber(meta, 'samples', what, true);
    const shrinkage = metaNumber(meta, 'shrinkage', what);
    if (shrinkage < 0 || shrinkage > 1) throw new RangeError(`${what}: meta.shrinkage must be in [0, 1], got ${shrinkage}`);
    const location = stateArray(state, 'location', [dim], what);
    const covariance = stateArray(state, 'covariance', [dim, dim], what);
    // Only the covariance is stored; its factor is derived again, so the two can never disagree.
    const { factor, logDet } = precisionCholesky({ rows: dim, cols: dim, data: covariance }, `${what}: covariance`);
    this.model = { dim, samples, shrinkage, fixed: meta.fixed === true, location, covariance, precisionCholesky: factor.data, logDet };
  }

  private requireModel(method: string): Fitted {
    if (!this.model) throw new Error(`${WHAT}.${method}: the scorer is not fitted; call fit() or importState() first`);
    return this.model;
  }
}

/**
 * sklearn's `ledoit_wolf_shrinkage` from the sums it needs: `sumFourth` = sum over rows of ||x - mean||^4,
 * `sumSquares` = sum of the squared entries of the sample covariance S, `trace` = trace(S).
 */
export function ledoitWolfShrinkage(n: number, d: number, sumFourth: number, sumSquares: number, trace: number): number {
  // With one feature the estimate is the same whatever the shrinkage; sklearn reports 0.
  if (d === 1) return 0;
  const mu = trace / d;
  let beta = (sumFourth / n - sumSquares) / (d * n);
  const delta = (sumSquares - 2 * mu * trace + d * mu * mu) / d;
  // Never shrink past 1, which would invert the covariances.
  beta = Math.min(beta, delta);
  return beta === 0 ? 0 : beta / delta;
}

/** Consecutive row ranges of at most `size` rows, as views on `m`'s data. */
function* rowBlocks(m: Matrix, size: number): Generator<Matrix> {
  if (m.rows <= size) {
    yield m;
    return;
  }
  for (let start = 0; start < m.rows; start += size) {
    const rows = Math.min(size, m.rows - start);
    yield { rows, cols: m.cols, data: m.data.subarray(start * m.cols, (start + rows) * m.cols) };
  }
}

export const optionsSchema: JsonSchema = {
  type: 'object',
  additionalProperties: false,
  properties: {
    shrinkage: { type: 'number', minimum: 0, maximum: 1, description: 'fixed shrinkage instead of the Ledoit-Wolf estimate' },
    blockSize: { type: 'integer', minimum: 1, default: DEFAULT_BLOCK_SIZE, description: 'rows per engine call; a memory bound only' },
  },
};

/**
 * The plugin: a plain object. `create` runs once per detector and feature space, so each gets a fresh, unfitted
 * scorer; `ctx.numeric` is the pipeline's numeric engine.
 */
export const plugin = definePlugin({
  name: 'transformaly-scorer-ledoit-wolf',
  version: '1.0.0',
  aliases: ['ledoit-wolf'],
  description: 'Gaussian log-likelihood with a Ledoit-Wolf shrunk covariance (sklearn LedoitWolf)',
  stages: {
    scorer: {
      optionsSchema,
      create: (options: LedoitWolfOptions, ctx) => new LedoitWolfScorer(ctx.numeric, options),
    },
  },
});

export default plugin;
