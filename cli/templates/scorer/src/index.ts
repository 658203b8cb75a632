// A density scorer for Transformaly: a Gaussian with a diagonal covariance. The normality score of a row is its
// log-likelihood, sum_j log N(y_j | mean_j, variance_j), what scikit-learn's
// GaussianMixture(1, covariance_type='diag', reg_covar=varianceFloor).score_samples gives.
import {
  assertCols,
  assertNonNegativeNumber,
  assertUsableMatrix,
  castGraph,
  columnMeans,
  definePlugin,
  float64Entry,
  metaNumber,
  pluginPackage,
  stateArray,
  stateMeta,
  subtractRowGraph,
  type DensityScorer,
  type JsonSchema,
  type Matrix,
  type OnnxExportContext,
  type StageState,
} from '@transformaly/core';

export interface DiagonalGaussianOptions {
  /** Added to every variance, so that a constant feature keeps a finite density; default 1e-6. */
  varianceFloor?: number;
}

export const optionsSchema: JsonSchema = {
  type: 'object',
  additionalProperties: false,
  properties: {
    varianceFloor: { type: 'number', minimum: 0, default: 1e-6, description: 'added to every variance (a constant feature keeps a finite density)' },
  },
};

const KIND = 'diagonal-gaussian';
/** The layout of the exported state: raise it when the layout changes, and keep reading the older ones if you can. */
const STATE_VERSION = 1;
const LOG_2PI = Math.log(2 * Math.PI);

interface Model {
  mean: Float64Array;
  variance: Float64Array;
  samples: number;
}

export class DiagonalGaussianScorer implements DensityScorer {
  readonly name = KIND;
  private readonly varianceFloor: number;
  private model: Model | undefined;

  constructor(options: DiagonalGaussianOptions = {}) {
    this.varianceFloor = options.varianceFloor ?? 1e-6;
    // The config's options are checked against optionsSchema; a caller that builds the class in code is checked here.
    assertNonNegativeNumber(this.varianceFloor, 'DiagonalGaussianScorer: options.varianceFloor');
  }

  fit(X: Matrix): void {
    assertUsableMatrix(X, 'DiagonalGaussianScorer.fit: X', 2);
    const { rows, cols, data } = X;
    const mean = columnMeans(X);
    const variance = new Float64Array(cols);
    for (let i = 0; i < rows; i++) {
      for (let j = 0; j < cols; j++) {
        const centred = data[i * cols + j] - mean[j];
        variance[j] += centred * centred;
      }
    }
    for (let j = 0; j < cols; j++) variance[j] = variance[j] / rows + this.varianceFloor;
    const flat = variance.findIndex((v) => !(v > 0));
    if (flat >= 0) throw new RangeError(`DiagonalGaussianScorer.fit: feature ${flat} is constant and varianceFloor is 0; set varianceFloor above 0`);
    this.model = { mean, variance, samples: rows };
  }

  scoreSamples(Y: Matrix): Float64Array {
    const { mean, variance } = this.fitted('scoreSamples');
    assertUsableMatrix(Y, 'DiagonalGaussianScorer.scoreSamples: Y', 0);
    assertCols(Y, mean.length, 'DiagonalGaussianScorer.scoreSamples: Y');
    const { rows, cols, data } = Y;
    const constant = this.logNormaliser(variance);
    const scores = new Float64Array(rows);
    for (let i = 0; i < rows; i++) {
      let distance = 0;
      for (let j = 0; j < cols; j++) {
        const centred = data[i * cols + j] - mean[j];
        distance += (centred * centred) / variance[j];
      }
      scores[i] = -0.5 * (constant + distance);
    }
    return scores;
  }

  /**
   * `scoreSamples` as ONNX nodes, for `transformaly export`: the same float64 arithmetic in standard operators, the
   * fitted mean and variances as constants of the graph.
   */
  exportOnnx(ctx: OnnxExportContext, features: string): string {
    const { mean, variance } = this.fitted('exportOnnx');
    const g = ctx.graph;
    const centred = subtractRowGraph(ctx, castGraph(ctx, features, 'float64'), mean, 'mean');
    const scaled = g.op('Div', [g.op('Mul', [centred, centred]), ctx.weight('variance', { dims: [variance.length], data: Float64Array.from(variance) })]);
    const distance = g.op('ReduceSum', [scaled, g.int64s([1])], { keepdims: 0 });
    return g.op('Mul', [g.op('Add', [distance, g.scalar(this.logNormaliser(variance), 'float64')]), g.scalar(-0.5, 'float64')]);
  }

  exportState(): StageState {
    const { mean, variance, samples } = this.fitted('exportState');
    return {
      meta: { kind: KIND, version: STATE_VERSION, dim: mean.length, samples, varianceFloor: this.varianceFloor },
      // float64Entry copies: the saved state must not change when the model does, nor the model when the state does.
      arrays: { mean: float64Entry(mean, [mean.length]), variance: float64Entry(variance, [variance.length]) },
    };
  }

  importState(state: StageState): void {
    const what = 'DiagonalGaussianScorer.importState';
    const meta = stateMeta(state, what, KIND, STATE_VERSION);
    const dim = metaNumber(meta, 'dim', what, true);
    const samples = metaNumber(meta, 'samples', what, true);
    const mean = stateArray(state, 'mean', [dim], what);
    const variance = stateArray(state, 'variance', [dim], what);
    const bad = variance.findIndex((v) => !(v > 0));
    if (bad >= 0) throw new RangeError(`${what}: variance ${bad} is ${variance[bad]}, not positive`);
    this.model = { mean, variance, samples };
  }

  /** d log 2 pi + sum_j log variance_j: the score is -0.5 (this + the scaled squared distance). */
  private logNormaliser(variance: Float64Array): number {
    let sum = variance.length * LOG_2PI;
    for (const v of variance) sum += Math.log(v);
    return sum;
  }

  private fitted(method: string): Model {
    if (!this.model) throw new Error(`DiagonalGaussianScorer.${method}: not fitted (call fit or importState first)`);
    return this.model;
  }
}

// Name, version and aliases come from this package's package.json, so they are written once.
const { name, version, aliases } = pluginPackage(import.meta.url);

export const plugin = definePlugin({
  name,
  version,
  aliases,
  description: 'a Gaussian with a diagonal covariance: the score is the log-likelihood',
  stages: {
    scorer: {
      optionsSchema,
      // A new instance for every detector and feature space. Heavy products (covariances, distances) belong on
      // ctx.numeric, the pipeline's float64 engine; a diagonal model needs none.
      create: (options: DiagonalGaussianOptions) => new DiagonalGaussianScorer(options),
    },
  },
});

export default plugin;
