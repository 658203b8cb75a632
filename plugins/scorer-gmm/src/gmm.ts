import {
  assertCols,
  assertNonNegativeNumber,
  assertPositiveInteger,
  assertUsableMatrix,
  castGraph,
  componentsPerCall,
  cholesky,
  columnMeans,
  createRng,
  float64Entry,
  kmeansPlusPlus,
  logGaussianDensities,
  logGaussianDensitiesGraph,
  logSumExpGraph,
  logsumexpRows,
  metaNumber,
  precisionCholesky,
  stateArray,
  stateMeta,
  subtractRow,
  subtractRowGraph,
  type Matrix64,
  type Rng,
} from '@transformaly/core';
import type { DensityScorer, Matrix, NumericEngine, OnnxExportContext, StageState } from '@transformaly/core';

/** Explicit starting parameters, as sklearn's `means_init`, `weights_init` and `precisions_init`. */
export interface GmmInit {
  /** [components][features] */
  means: number[][];
  /** [components], non-negative, summing to 1. */
  weights: number[];
  /** [components][features][features] symmetric positive-definite precision (inverse covariance) matrices. */
  precisions: number[][][];
}

export interface GmmScorerOptions {
  components: number;
  /** Restarts from different k-means++ seeds; the one with the highest lower bound is kept (default 1). */
  nInit?: number;
  /** Seed of the k-means++ draws (default 0). */
  seed?: number;
  /** EM iterations per restart (default 100). */
  maxIter?: number;
  /** Convergence threshold on the change of the mean log-likelihood lower bound (default 1e-3). */
  tol?: number;
  /** Added to every covariance diagonal (default 1e-6). */
  regularization?: number;
  /** Start EM from these parameters instead of k-means++ (then a single run, whatever nInit says). */
  init?: GmmInit;
}

interface Params {
  weights: Float64Array;
  /** [K, d], in centred coordinates. */
  means: Float64Array;
  /** K upper-triangular [d, d] precision Cholesky factors. */
  factors: Float64Array[];
  logDets: Float64Array;
}

interface Fitted extends Params {
  /** [K, d] means in input coordinates; `means` holds meansOriginal - center. */
  meansOriginal: Float64Array;
  dim: number;
  samples: number;
  /** The training mean; the model works on X - center to keep the products free of cancellation. */
  center: Float64Array;
  lowerBound: number;
  nIter: number;
  converged: boolean;
  regularization: number;
}

const KIND = 'gmm';
const VERSION = 1;
const WHAT = 'GmmScorer';
const TINY = 10 * Number.EPSILON;

type ResolvedOptions = Required<Omit<GmmScorerOptions, 'init'>> & { init: GmmInit | undefined };

/** The options with their defaults, checked (the init's shapes against the component count included). */
export function resolveGmmOptions(options: GmmScorerOptions): Readonly<ResolvedOptions> {
  if (!options || typeof options !== 'object') throw new TypeError(`${WHAT}: options with at least { components } are required`);
  const resolved: ResolvedOptions = {
    components: options.components,
    nInit: options.nInit ?? 1,
    seed: options.seed ?? 0,
    maxIter: options.maxIter ?? 100,
    tol: options.tol ?? 1e-3,
    regularization: options.regularization ?? 1e-6,
    init: options.init,
  };
  assertPositiveInteger(resolved.components, `${WHAT}: options.components`);
  assertPositiveInteger(resolved.nInit, `${WHAT}: options.nInit`);
  assertPositiveInteger(resolved.maxIter, `${WHAT}: options.maxIter`);
  assertNonNegativeNumber(resolved.tol, `${WHAT}: options.tol`);
  assertNonNegativeNumber(resolved.regularization, `${WHAT}: options.regularization`);
  if (!Number.isSafeInteger(resolved.seed)) throw new RangeError(`${WHAT}: options.seed must be an integer, got ${JSON.stringify(resolved.seed)}`);
  if (resolved.init) checkInitShape(resolved.init, resolved.components);
  return resolved;
}

/**
 * A Gaussian mixture with full covariances fitted by EM, as sklearn's `GaussianMixture(covariance_type='full',
 * init_params='k-means++')`; `scoreSamples` returns each row's log-likelihood (`score_samples`).
 */
export class GmmScorer implements DensityScorer {
  readonly name = KIND;
  readonly options: Readonly<ResolvedOptions>;
  private model: Fitted | null = null;

  constructor(
    private readonly engine: NumericEngine,
    options: GmmScorerOptions,
  ) {
    this.options = Object.freeze(resolveGmmOptions(options));
  }

  get fitted(): boolean {
    return this.model !== null;
  }

  /** Fit diagnostics of the kept run: its lower bound (mean train log-likelihood before the last M-step), iterations, convergence. */
  get fitInfo(): { lowerBound: number; nIter: number; converged: boolean } | null {
    return this.model ? { lowerBound: this.model.lowerBound, nIter: this.model.nIter, converged: this.model.converged } : null;
  }

  async fit(X: Matrix): Promise<void> {
    const { components: K, nInit, maxIter, tol, regularization, init } = this.options;
    assertUsableMatrix(X, `${WHAT}.fit: X`, 2);
    if (X.rows < K) throw new RangeError(`${WHAT}.fit: X has ${X.rows} rows, fewer than the ${K} components`);
    const d = X.cols;
    const center = columnMeans(X);
    const Xc = subtractRow(X, center);
    const rng = createRng(this.options.seed);
    const runs = init ? 1 : nInit;
    let best: { params: Params; lowerBound: number; nIter: number; converged: boolean } | null = null;
    for (let run = 0; run < runs; run++) {
      let params = init ? paramsFromInit(init, d, center) : await kmeansPlusPlusParams(this.engine, Xc, K, rng, regularization);
      let lowerBound = -Infinity;
      let converged = false;
      let nIter = 0;
      for (nIter = 1; nIter <= maxIter; nIter++) {
        const previous = lowerBound;
        const { meanLogLikelihood, logResp } = await eStep(this.engine, Xc, params);
        params = await mStep(this.engine, Xc, logResp, regularization, 'sum');
        lowerBound = meanLogLikelihood;
        if (Math.abs(lowerBound - previous) < tol) {
          converged = true;
          break;
        }
      }
      nIter = Math.min(nIter, maxIter);
      if (!best || lowerBound > best.lowerBound) best = { params, lowerBound, nIter, converged };
    }
    const kept = best as NonNullable<typeof best>;
    // The model keeps the means in input coordinates (as exported) and scores with meansOriginal - center, which is
    // exactly what importState recomputes: an imported model scores bit-identically.
    const meansOriginal = new Float64Array(K * d);
    for (let k = 0; k < K; k++) for (let j = 0; j < d; j++) meansOriginal[k * d + j] = kept.params.means[k * d + j] + center[j];
    this.model = {
      ...kept.params,
      means: centredMeans(meansOriginal, center),
      meansOriginal,
      dim: d,
      samples: X.rows,
      center,
      lowerBound: kept.lowerBound,
      nIter: kept.nIter,
      converged: kept.converged,
      regularization,
    };
  }

  async scoreSamples(Y: Matrix): Promise<Float64Array> {
    const model = this.requireModel('scoreSamples');
    assertUsableMatrix(Y, `${WHAT}.scoreSamples: Y`, 0);
    assertCols(Y, model.dim, `${WHAT}.scoreSamples: Y`);
    if (Y.rows === 0) return new Float64Array(0);
    const weighted = await weightedLogProb(this.engine, subtractRow(Y, model.center), model);
    return logsumexpRows(weighted);
  }

  /** `scoreSamples` as float64 nodes: centring, each component's weighted log-density, a stable log-sum-exp. */
  exportOnnx(ctx: OnnxExportContext, features: string): string {
    const m = this.requireModel('exportOnnx');
    const K = m.weights.length;
    const d = m.dim;
    const centred = subtractRowGraph(ctx, castGraph(ctx, features, 'float64'), m.center, 'center');
    const logProb = logGaussianDensitiesGraph(ctx, centred, {
      means: { rows: K, cols: d, data: m.means },
      factors: m.factors.map((f) => ({ rows: d, cols: d, data: f })),
      logDets: m.logDets,
    });
    const weighted = ctx.graph.op('Add', [logProb, ctx.weight('log_weights', { dims: [K], data: m.weights.map(Math.log) })]);
    return logSumExpGraph(ctx, weighted);
  }

  exportState(): StageState {
    const m = this.requireModel('exportState');
    const K = m.weights.length;
    const d = m.dim;
    const factors = new Float64Array(K * d * d);
    m.factors.forEach((f, k) => factors.set(f, k * d * d));
    return {
      meta: {
        kind: KIND,
        version: VERSION,
        components: K,
        dim: d,
        samples: m.samples,
        regularization: m.regularization,
        lowerBound: m.lowerBound,
        nIter: m.nIter,
        converged: m.converged,
      },
      arrays: {
        weights: float64Entry(m.weights, [K]),
        means: float64Entry(m.meansOriginal, [K, d]),
        precisions_cholesky: float64Entry(factors, [K, d, d]),
        center: float64Entry(m.center, [d]),
      },
    };
  }

  importState(state: StageState): void {
    const what = `${WHAT}.importState`;
    const meta = stateMeta(state, what, KIND, VERSION);
    const K = metaNumber(meta, 'components', what, true);
    const d = metaNumber(meta, 'dim', what, true);
    const weights = stateArray(state, 'weights', [K], what);
    if (weights.some((w) => !(w > 0))) throw new RangeError(`${what}: weights must be positive`);
    const center = stateArray(state, 'center', [d], what);
    const meansOriginal = stateArray(state, 'means', [K, d], what);
    const all = stateArray(state, 'precisions_cholesky', [K, d, d], what);
    const factors: Float64Array[] = [];
    const logDets = new Float64Array(K);
    for (let k = 0; k < K; k++) {
      const f = all.slice(k * d * d, (k + 1) * d * d);
      for (let i = 0; i < d; i++) {
        if (!(f[i * d + i] > 0)) throw new RangeError(`${what}: precisions_cholesky[${k}] has a non-positive diagonal entry at ${i}`);
        logDets[k] += Math.log(f[i * d + i]);
      }
      factors.push(f);
    }
    const converged = meta.converged;
    if (typeof converged !== 'boolean') throw new TypeError(`${what}: meta.converged must be a boolean`);
    // The state describes the fitted model, whatever options this instance was constructed with.
    this.model = {
      weights,
      means: centredMeans(meansOriginal, center),
      meansOriginal,
      factors,
      logDets,
      dim: d,
      samples: metaNumber(meta, 'samples', what, true),
      center,
      lowerBound: metaNumber(meta, 'lowerBound', what),
      nIter: metaNumber(meta, 'nIter', what, true),
      converged,
      regularization: metaNumber(meta, 'regularization', what),
    };
  }

  private requireModel(method: string): Fitted {
    if (!this.model) throw new Error(`${WHAT}.${method}: the scorer is not fitted; call fit() or importState() first`);
    return this.model;
  }
}

function centredMeans(meansOriginal: Float64Array, center: Float64Array): Float64Array {
  const d = center.length;
  return meansOriginal.map((v, i) => v - center[i % d]);
}

/** log(weight_k) + log N(x | component k), [n, K]. */
async function weightedLogProb(engine: NumericEngine, Xc: Matrix, p: Params): Promise<Matrix64> {
  const K = p.weights.length;
  const d = Xc.cols;
  const out = await logGaussianDensities(
    engine,
    Xc,
    { rows: K, cols: d, data: p.means },
    p.factors.map((f) => ({ rows: d, cols: d, data: f })),
    p.logDets,
  );
  const logW = p.weights.map(Math.log);
  for (let i = 0; i < out.rows; i++) for (let k = 0; k < K; k++) out.data[i * K + k] += logW[k];
  return out;
}

async function eStep(engine: NumericEngine, Xc: Matrix, p: Params): Promise<{ meanLogLikelihood: number; logResp: Matrix64 }> {
  const weighted = await weightedLogProb(engine, Xc, p);
  const norm = logsumexpRows(weighted);
  const K = p.weights.length;
  let total = 0;
  for (let i = 0; i < weighted.rows; i++) {
    total += norm[i];
    for (let k = 0; k < K; k++) weighted.data[i * K + k] -= norm[i];
  }
  return { meanLogLikelihood: total / weighted.rows, logResp: weighted };
}

/**
 * sklearn's `_estimate_gaussian_parameters` (full covariances) from log-responsibilities, followed by the weight
 * normalisation of `_initialize` ('samples': nk / n) or of `_m_step` ('sum': nk / sum nk).
 */
async function mStep(engine: NumericEngine, Xc: Matrix64, logResp: Matrix64, reg: number, normalise: 'samples' | 'sum', respIsLinear = false): Promise<Params> {
  const n = Xc.rows;
  const d = Xc.cols;
  const K = logResp.cols;
  const resp = respIsLinear ? logResp.data : expInto(logResp.data);
  const nk = new Float64Array(K);
  for (let i = 0; i < n; i++) for (let k = 0; k < K; k++) nk[k] += resp[i * K + k];
  for (let k = 0; k < K; k++) nk[k] += TINY;
  const sums = await engine.matmul({ rows: n, cols: K, data: resp }, Xc, { transA: true });
  const means = sums.data;
  for (let k = 0; k < K; k++) for (let j = 0; j < d; j++) means[k * d + j] /= nk[k];
  // Scatter of component k: sum_i r_ik (x_i - mu_k)(x_i - mu_k)^T = Z_k^T Z_k with rows sqrt(r_ik)(x_i - mu_k); the
  // engine forms Z for several components at once and multiplies.
  const perChunk = componentsPerCall(K, d);
  const sqrtResp = new Float64Array(K * n);
  for (let i = 0; i < n; i++) for (let k = 0; k < K; k++) sqrtResp[k * n + i] = Math.sqrt(resp[i * K + k]);
  const factors: Float64Array[] = [];
  const logDets = new Float64Array(K);
  for (let k0 = 0; k0 < K; k0 += perChunk) {
    const chunk = Math.min(perChunk, K - k0);
    const scatter = await engine.weightedScatter(Xc, means.subarray(k0 * d, (k0 + chunk) * d), sqrtResp.subarray(k0 * n, (k0 + chunk) * n), chunk);
    for (let c = 0; c < chunk; c++) {
      const k = k0 + c;
      const cov = scatter.slice(c * d * d, (c + 1) * d * d);
      for (let i = 0; i < d * d; i++) cov[i] /= nk[k];
      for (let j = 0; j < d; j++) cov[j * d + j] += reg;
      const { factor, logDet } = precisionCholesky({ rows: d, cols: d, data: cov }, `${WHAT}.fit: covariance of component ${k} (+ regularization ${reg})`);
      factors.push(factor.data);
      logDets[k] = logDet;
    }
  }
  const denominator = normalise === 'samples' ? n : nk.reduce((a, b) => a + b, 0);
  const weights = nk.map((v) => v / denominator);
  return { weights, means, factors, logDets };
}

function expInto(values: Float64Array): Float64Array {
  const out = new Float64Array(values.length);
  for (let i = 0; i < values.length; i++) out[i] = Math.exp(values[i]);
  return out;
}

/**
 * sklearn's init_params='k-means++': responsibilities are one-hot on the k-means++ picks only (every other row has
 * none), so each component starts at its pick with covariance reg * I; the first E-step then assigns every row to its
 * nearest pick.
 */
async function kmeansPlusPlusParams(engine: NumericEngine, Xc: Matrix64, K: number, rng: Rng, reg: number): Promise<Params> {
  const { indices } = await kmeansPlusPlus(engine, Xc, K, rng);
  const resp = new Float64Array(Xc.rows * K);
  for (let k = 0; k < K; k++) resp[indices[k] * K + k] = 1;
  return mStep(engine, Xc, { rows: Xc.rows, cols: K, data: resp }, reg, 'samples', true);
}

function paramsFromInit(init: GmmInit, d: number, center: Float64Array): Params {
  const K = init.weights.length;
  const what = `${WHAT}.fit: options.init`;
  const means = new Float64Array(K * d);
  const factors: Float64Array[] = [];
  const logDets = new Float64Array(K);
  for (let k = 0; k < K; k++) {
    const mu = init.means[k];
    if (mu.length !== d) throw new RangeError(`${what}.means[${k}] has ${mu.length} values, X has ${d} columns`);
    for (let j = 0; j < d; j++) means[k * d + j] = mu[j] - center[j];
    const P = init.precisions[k];
    if (P.length !== d || P.some((row) => row.length !== d)) throw new RangeError(`${what}.precisions[${k}] must be ${d} x ${d}`);
    const flat = new Float64Array(d * d);
    for (let i = 0; i < d; i++) {
      for (let j = 0; j < d; j++) {
        flat[i * d + j] = P[i][j];
        if (Math.abs(P[i][j] - P[j][i]) > 1e-8 * Math.max(1, Math.abs(P[i][j]))) throw new RangeError(`${what}.precisions[${k}] is not symmetric`);
      }
    }
    // sklearn takes the lower Cholesky factor of each precision: any W with W W^T = P gives the same densities.
    const L = cholesky({ rows: d, cols: d, data: flat }, `${what}.precisions[${k}]`);
    let logDet = 0;
    for (let i = 0; i < d; i++) logDet += Math.log(L.data[i * d + i]);
    factors.push(L.data);
    logDets[k] = logDet;
  }
  return { weights: Float64Array.from(init.weights), means, factors, logDets };
}

function checkInitShape(init: GmmInit, K: number): void {
  const what = `${WHAT}: options.init`;
  if (!Array.isArray(init.means) || !Array.isArray(init.weights) || !Array.isArray(init.precisions)) {
    throw new TypeError(`${what} needs arrays means, weights and precisions`);
  }
  for (const [name, arr] of [['means', init.means], ['weights', init.weights], ['precisions', init.precisions]] as const) {
    if (arr.length !== K) throw new RangeError(`${what}.${name} has ${arr.length} entries, expected ${K} (the components)`);
  }
  let total = 0;
  for (const w of init.weights) {
    if (typeof w !== 'number' || !(w >= 0 && w <= 1)) throw new RangeError(`${what}.weights must lie in [0, 1], got ${w}`);
    total += w;
  }
  if (Math.abs(1 - total) > 1e-8) throw new RangeError(`${what}.weights must sum to 1, they sum to ${total}`);
  const flat = [...init.means.flat(), ...init.precisions.flat(2)];
  if (flat.some((v) => typeof v !== 'number' || !Number.isFinite(v))) throw new RangeError(`${what}: means and precisions must be finite numbers`);
}
