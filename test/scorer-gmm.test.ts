import { readFileSync } from 'node:fs';
import { Container } from 'inversify';
import { describe, expect, it } from 'vitest';
import { TOKENS, createMatrix, createRng, fromRows, type DensityScorer } from '@transformaly/core';
import defaultPlugin, { GmmScorer, plugin } from '@transformaly/scorer-gmm';

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
  kmeanspp: { n_init: number; mean_train_log_likelihood: number; lower_bound: number };
}

const golden = JSON.parse(readFileSync(new URL('./golden/scorers/gmm.json', import.meta.url), 'utf8')) as GmmGolden;
const g = golden.given_init;

function expectMatchesSklearn(ours: ArrayLike<number>, sklearn: number[]): void {
  expect(ours.length).toBe(sklearn.length);
  const scale = Math.max(...sklearn.map(Math.abs));
  let worst = 0;
  for (let i = 0; i < ours.length; i++) worst = Math.max(worst, Math.abs(ours[i] - sklearn[i]));
  expect(worst).toBeLessThanOrEqual(1e-6 * scale);
}

function mean(a: Float64Array): number {
  return a.reduce((s, v) => s + v, 0) / a.length;
}

describe('GmmScorer against scikit-learn', () => {
  it('from means_init / weights_init / precisions_init follows the same EM iterations', async () => {
    const scorer = new GmmScorer({ components: 3, init: { means: g.means, weights: g.weights, precisions: g.precisions }, maxIter: g.max_iter, tol: g.tol });
    await scorer.fit(fromRows(golden.train));
    expect(scorer.fitInfo).toEqual({ lowerBound: expect.any(Number), nIter: g.n_iter, converged: g.converged });
    expect(Math.abs(scorer.fitInfo!.lowerBound - g.lower_bound)).toBeLessThan(1e-9);
    const state = scorer.exportState();
    expectMatchesSklearn(state.arrays.weights.data, g.weights_fitted);
    expectMatchesSklearn(state.arrays.means.data, g.means_fitted.flat());
    expectMatchesSklearn(await scorer.scoreSamples(fromRows(golden.test)), g.scores);
  });

  it('with k-means++ restarts reaches the mean train log-likelihood of sklearn’s best of as many restarts', async () => {
    const scorer = new GmmScorer({ components: 3, nInit: golden.kmeanspp.n_init, seed: 0 });
    const X = fromRows(golden.train);
    await scorer.fit(X);
    const ours = mean(await scorer.scoreSamples(X));
    expect(Math.abs(ours - golden.kmeanspp.mean_train_log_likelihood)).toBeLessThanOrEqual(0.5);
    expect(scorer.fitInfo!.converged).toBe(true);
  });

  it('is reproducible for a seed, and more restarts never lower the kept lower bound', async () => {
    const X = fromRows(golden.train);
    const fitted = async (options: { nInit: number; seed: number }) => {
      const s = new GmmScorer({ components: 4, ...options });
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
  it('exportState/importState round-trips to identical scores', async () => {
    const a = new GmmScorer({ components: 3, seed: 1 });
    await a.fit(fromRows(golden.train));
    const state = a.exportState();
    const b = new GmmScorer({ components: 1 });
    b.importState({
      meta: JSON.parse(JSON.stringify(state.meta)),
      arrays: Object.fromEntries(Object.entries(state.arrays).map(([k, v]) => [k, { dims: [...v.dims], data: Float64Array.from(v.data) }])),
    });
    const test = fromRows(golden.test);
    expect(Array.from(await b.scoreSamples(test))).toEqual(Array.from(await a.scoreSamples(test)));
    expect(b.fitInfo).toEqual(a.fitInfo);
  });

  it('fewer rows than columns and a constant column give finite scores', async () => {
    const rng = createRng(11);
    const d = 12;
    const X = createMatrix(9, d);
    for (let i = 0; i < X.data.length; i++) X.data[i] = rng.normal() + (i % d === 0 ? 0 : (Math.floor(i / d) % 3) * 3);
    for (let i = 0; i < 9; i++) X.data[i * d + 5] = -2;
    const scorer = new GmmScorer({ components: 2, seed: 3 });
    await scorer.fit(X);
    const Y = createMatrix(5, d);
    for (let i = 0; i < Y.data.length; i++) Y.data[i] = rng.normal();
    const scores = await scorer.scoreSamples(Y);
    expect(scores.every(Number.isFinite)).toBe(true);
    expect((await scorer.scoreSamples(X)).every(Number.isFinite)).toBe(true);
  });

  it('rejects NaN input naming the row and column', async () => {
    const X = fromRows(golden.train);
    X.data[12 * 5 + 4] = Number.NaN;
    await expect(new GmmScorer({ components: 2 }).fit(X)).rejects.toThrow('GmmScorer.fit: X: NaN at row 12, column 4');
  });

  it('rejects bad options, too few rows and mismatched init', async () => {
    expect(() => new GmmScorer({ components: 0 })).toThrow(/options.components: expected a positive integer/);
    expect(() => new GmmScorer({ components: 2, tol: -1 })).toThrow(/options.tol/);
    expect(() => new GmmScorer({ components: 3, init: { means: g.means, weights: [0.5, 0.6, 0.1], precisions: g.precisions } })).toThrow(/weights must sum to 1/);
    expect(() => new GmmScorer({ components: 2, init: { means: g.means, weights: g.weights, precisions: g.precisions } })).toThrow(/means has 3 entries, expected 2/);
    await expect(new GmmScorer({ components: 5 }).fit(fromRows(golden.train.slice(0, 4)))).rejects.toThrow(/4 rows, fewer than the 5 components/);
    const init = { means: g.means.map((m) => m.slice(0, 4)), weights: g.weights, precisions: g.precisions };
    await expect(new GmmScorer({ components: 3, init }).fit(fromRows(golden.train))).rejects.toThrow(/init.means\[0\] has 4 values, X has 5 columns/);
    const notPd = { means: g.means, weights: g.weights, precisions: g.precisions.map((p) => p.map((row) => row.map((v) => -v))) };
    await expect(new GmmScorer({ components: 3, init: notPd }).fit(fromRows(golden.train))).rejects.toThrow(/init.precisions\[0\].*not positive definite/);
    await expect(new GmmScorer({ components: 2 }).scoreSamples(fromRows(golden.test))).rejects.toThrow(/not fitted/);
  });
});

describe('scorer-gmm plugin', () => {
  it('is the default and the named export, and binds a fresh scorer per resolution', async () => {
    expect(defaultPlugin).toBe(plugin);
    expect(plugin.name).toBe('@transformaly/scorer-gmm');
    expect(plugin.optionsSchema).toMatchObject({ type: 'object', additionalProperties: false, required: ['components'] });
    expect(() => plugin.register({ components: -1 })).toThrow(/components/);
    const container = new Container();
    await container.load(plugin.register({ components: 2, nInit: 2 }));
    const a = container.get<DensityScorer>(TOKENS.DensityScorer);
    expect(a).toBeInstanceOf(GmmScorer);
    expect(a).not.toBe(container.get<DensityScorer>(TOKENS.DensityScorer));
    expect((a as GmmScorer).options.nInit).toBe(2);
  });
});
