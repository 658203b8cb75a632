import { readFileSync } from 'node:fs';
import { afterAll, describe, expect, it } from 'vitest';
import { createMatrix, createNumericEngine, createRng, fromRows } from '@transformaly/core';
import { OnnxRuntime } from '@transformaly/runtime-onnx';
import defaultPlugin, { GmmScorer, plugin } from '@transformaly/scorer-gmm';
import { densityScorerChecks, registerChecks } from '@transformaly/testing';
import { expectClose } from './fixtures/close.js';

// The numeric engine a pipeline would hand the scorer, made explicitly: onnxruntime, two threads.
const runtime = new OnnxRuntime({ threads: 2 });
const engine = createNumericEngine(runtime);
afterAll(async () => {
  await engine.dispose();
  await runtime.dispose();
});

interface GmmGolden {
  reg_covar: number;
  train: number[][];
  test: number[][];
  given_init: {
    means: number[][];
    weights: number[];
    precisions: number[][][];
    max_iter: number;
    tol: number;
    n_iter: number;
    converged: boolean;
    lower_bound: number;
    weights_fitted: number[];
    means_fitted: number[][];
    scores: number[];
  };
  kmeanspp: {
    n_init: number;
    mean_train_log_likelihood: number;
    lower_bound: number;
    /** sklearn's best of `n_init` k-means++ restarts for random_state 0..9, with 2 and with 3 components. */
    mean_train_log_likelihood_by_seed: Record<'2' | '3', number[]>;
  };
  few_rows_constant_column: {
    train: number[][];
    test: number[][];
    init: { means: number[][]; weights: number[]; precisions: number[][][] };
    max_iter: number;
    tol: number;
    converged: boolean;
    n_iter: number;
    scores: number[];
    train_scores: number[];
  };
}

const golden = JSON.parse(readFileSync(new URL('./golden/scorers/gmm.json', import.meta.url), 'utf8')) as GmmGolden;
const g = golden.given_init;

const expectMatchesSklearn = (ours: ArrayLike<number>, sklearn: number[], label: string) => expectClose(ours, sklearn, 1e-6, label);

function mean(a: Float64Array): number {
  return a.reduce((s, v) => s + v, 0) / a.length;
}

describe('GmmScorer against scikit-learn', () => {
  it('from means_init / weights_init / precisions_init follows the same EM iterations', async () => {
    const scorer = new GmmScorer(engine, { components: 3, init: { means: g.means, weights: g.weights, precisions: g.precisions }, maxIter: g.max_iter, tol: g.tol });
    await scorer.fit(fromRows(golden.train));
    expect(scorer.fitInfo).toEqual({ lowerBound: expect.any(Number), nIter: g.n_iter, converged: g.converged });
    expectClose([scorer.fitInfo!.lowerBound], [g.lower_bound], 1e-10, 'lower bound');
    const state = scorer.exportState();
    expectMatchesSklearn(state.arrays.weights.data, g.weights_fitted, 'weights');
    expectMatchesSklearn(state.arrays.means.data, g.means_fitted.flat(), 'means');
    expectMatchesSklearn(await scorer.scoreSamples(fromRows(golden.test)), g.scores, 'scores');
  });

  it('with k-means++ restarts reaches the mean train log-likelihood of sklearn’s best of as many restarts', async () => {
    // Restarts from other seeds end in other local optima. Measured (best of 3, mean log-likelihood of the training
    // rows, seeds 0..9): sklearn with 3 components lies within 0.024 nat of its seed-0 value, this scorer within 0.035
    // (its seed 1 finds a poorer optimum), while a model with 2 components is at least 0.185 nat below, for sklearn and
    // for this scorer. 0.05 nat admits every correct fit and refuses the model with one component too few.
    const tolerance = 0.05;
    const reference = golden.kmeanspp.mean_train_log_likelihood;
    const bySeed = golden.kmeanspp.mean_train_log_likelihood_by_seed;
    expect(Math.max(...bySeed['3'].map((v) => Math.abs(v - reference)))).toBeLessThan(tolerance);
    expect(Math.min(...bySeed['2'].map((v) => Math.abs(v - reference)))).toBeGreaterThan(3 * tolerance);
    const X = fromRows(golden.train);
    const fitted = async (components: number, seed: number) => {
      const scorer = new GmmScorer(engine, { components, nInit: golden.kmeanspp.n_init, seed });
      await scorer.fit(X);
      expect(scorer.fitInfo!.converged).toBe(true);
      return mean(await scorer.scoreSamples(X));
    };
    for (const seed of [0, 1, 2]) {
      const ours = await fitted(3, seed);
      expect(Math.abs(ours - reference), `seed ${seed}: ${ours} vs sklearn ${reference}`).toBeLessThanOrEqual(tolerance);
    }
    // The check can fail: one component too few is far outside it.
    expect(Math.abs((await fitted(2, 0)) - reference)).toBeGreaterThan(3 * tolerance);
  });

  it('is reproducible for a seed, and more restarts never lower the kept lower bound', async () => {
    const X = fromRows(golden.train);
    const fitted = async (options: { nInit: number; seed: number }) => {
      const s = new GmmScorer(engine, { components: 4, ...options });
      await s.fit(X);
      return s;
    };
    const a = await fitted({ nInit: 1, seed: 7 });
    const b = await fitted({ nInit: 1, seed: 7 });
    expect(Array.from(await a.scoreSamples(X))).toEqual(Array.from(await b.scoreSamples(X)));
    const several = await fitted({ nInit: 4, seed: 7 });
    // The first of the four restarts is the single run above (same seed stream), so the best can only be higher.
    expect(several.fitInfo!.lowerBound).toBeGreaterThanOrEqual(a.fitInfo!.lowerBound);
  });
});

describe('GmmScorer state, degenerate data and errors', () => {
  it('fewer rows than columns and a constant column: the scores of sklearn from the same start', async () => {
    const f = golden.few_rows_constant_column;
    const scorer = new GmmScorer(engine, { components: 2, init: f.init, maxIter: f.max_iter, tol: f.tol });
    await scorer.fit(fromRows(f.train));
    expect(scorer.fitInfo).toEqual({ lowerBound: expect.any(Number), nIter: f.n_iter, converged: f.converged });
    expectMatchesSklearn(await scorer.scoreSamples(fromRows(f.test)), f.scores, 'test scores');
    expectMatchesSklearn(await scorer.scoreSamples(fromRows(f.train)), f.train_scores, 'train scores');
  });

  it('rejects NaN input naming the row and column', async () => {
    const X = fromRows(golden.train);
    X.data[12 * 5 + 4] = Number.NaN;
    await expect(new GmmScorer(engine, { components: 2 }).fit(X)).rejects.toThrow('GmmScorer.fit: X: NaN at row 12, column 4');
  });

  it('rejects bad options, too few rows and mismatched init', async () => {
    expect(() => new GmmScorer(engine, { components: 0 })).toThrow(/options.components: expected a positive integer/);
    expect(() => new GmmScorer(engine, { components: 2, tol: -1 })).toThrow(/options.tol/);
    expect(() => new GmmScorer(engine, { components: 3, init: { means: g.means, weights: [0.5, 0.6, 0.1], precisions: g.precisions } })).toThrow(/weights must sum to 1/);
    expect(() => new GmmScorer(engine, { components: 2, init: { means: g.means, weights: g.weights, precisions: g.precisions } })).toThrow(/means has 3 entries, expected 2/);
    await expect(new GmmScorer(engine, { components: 5 }).fit(fromRows(golden.train.slice(0, 4)))).rejects.toThrow(/4 rows, fewer than the 5 components/);
    const init = { means: g.means.map((m) => m.slice(0, 4)), weights: g.weights, precisions: g.precisions };
    await expect(new GmmScorer(engine, { components: 3, init }).fit(fromRows(golden.train))).rejects.toThrow(/init.means\[0\] has 4 values, X has 5 columns/);
    const notPd = { means: g.means, weights: g.weights, precisions: g.precisions.map((p) => p.map((row) => row.map((v) => -v))) };
    await expect(new GmmScorer(engine, { components: 3, init: notPd }).fit(fromRows(golden.train))).rejects.toThrow(/init.precisions\[0\].*not positive definite/);
    await expect(new GmmScorer(engine, { components: 2 }).scoreSamples(fromRows(golden.test))).rejects.toThrow(/not fitted/);
  });
});

describe('scorer-gmm plugin', () => {
  it('is the default and the named export, and refuses options the schema cannot check, with the config', () => {
    expect(defaultPlugin).toBe(plugin);
    expect(plugin.name).toBe('@transformaly/scorer-gmm');
    expect(plugin.aliases).toEqual(['gmm']);
    expect(plugin.stages.scorer.optionsSchema).toMatchObject({ type: 'object', additionalProperties: false, required: ['components'] });
    const { checkOptions } = plugin.stages.scorer;
    expect(() => checkOptions({ components: 2, init: { means: g.means, weights: g.weights, precisions: g.precisions } })).toThrow(/means has 3 entries, expected 2/);
    expect(() => checkOptions({ components: 3, init: { means: g.means, weights: g.weights, precisions: g.precisions } })).not.toThrow();
  });
});

// The DensityScorer contract through the core's binding of the plugin, with one and with three components.
describe('conformance: one component', () => registerChecks(densityScorerChecks({ plugin, options: { components: 1 } }, { numeric: engine }), it));
describe('conformance: three components, two restarts', () =>
  registerChecks(densityScorerChecks({ plugin, options: { components: 3, nInit: 2, seed: 5 } }, { numeric: engine }), it));
