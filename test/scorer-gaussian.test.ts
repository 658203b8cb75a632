import { readFileSync } from 'node:fs';
import { Container } from 'inversify';
import { describe, expect, it } from 'vitest';
import { TOKENS, createMatrix, createRng, fromRows, type DensityScorer } from '@transformaly/core';
import defaultPlugin, { GaussianScorer, plugin } from '@transformaly/scorer-gaussian';
import { expectClose } from './fixtures/close.js';

interface GaussianGolden {
  reg_covar: number;
  train: number[][];
  test: number[][];
  scores: number[];
  train_scores: number[];
  few_rows: { train: number[][]; scores: number[] };
  constant_column: {
    train: number[][];
    test: number[][];
    column: number;
    scores: number[];
    whitened_all_variance: { components: number; scores: number[] };
  };
  whitened: { variance_fraction: number; components: number; explained_variance: number[]; scores: number[] };
}

const golden = JSON.parse(readFileSync(new URL('./golden/scorers/gaussian.json', import.meta.url), 'utf8')) as GaussianGolden;

const expectMatchesSklearn = (ours: ArrayLike<number>, sklearn: number[], label = 'scores') => expectClose(ours, sklearn, 1e-6, label);

describe('GaussianScorer against scikit-learn', () => {
  it('equals GaussianMixture(1, full, reg_covar=1e-6).score_samples on test and train rows', async () => {
    const scorer = new GaussianScorer();
    await scorer.fit(fromRows(golden.train));
    expectMatchesSklearn(await scorer.scoreSamples(fromRows(golden.test)), golden.scores, 'test scores');
    expectMatchesSklearn(await scorer.scoreSamples(fromRows(golden.train)), golden.train_scores, 'train scores');
  });

  it('accepts float32 features', async () => {
    const toF32 = (rows: number[][]) => {
      const m = fromRows(rows);
      return { rows: m.rows, cols: m.cols, data: Float32Array.from(m.data) };
    };
    const scorer = new GaussianScorer();
    await scorer.fit(toF32(golden.train));
    const scores = await scorer.scoreSamples(toF32(golden.test));
    // Only the float32 rounding of the inputs separates this from the float64 result.
    expectClose(scores, golden.scores, 1e-4, 'scores of float32 input');
  });

  it('with whitening equals PCA(k, whiten=True) + GaussianMixture(1), k chosen by the explained-variance fraction', async () => {
    const scorer = new GaussianScorer({ whiten: { varianceFraction: golden.whitened.variance_fraction } });
    await scorer.fit(fromRows(golden.train));
    expect(scorer.components).toBe(golden.whitened.components);
    const state = scorer.exportState();
    const ev = state.arrays.pca_explained_variance.data;
    expectClose(ev, golden.whitened.explained_variance, 1e-10, 'explained variance');
    expectMatchesSklearn(await scorer.scoreSamples(fromRows(golden.test)), golden.whitened.scores);
  });

  it('fewer rows than columns: the regularisation alone makes the covariance invertible, as in sklearn', async () => {
    const scorer = new GaussianScorer();
    await scorer.fit(fromRows(golden.few_rows.train));
    expectMatchesSklearn(await scorer.scoreSamples(fromRows(golden.test)), golden.few_rows.scores);
  });

  it('a constant column gives the scores of sklearn, with and without whitening', async () => {
    const scorer = new GaussianScorer();
    await scorer.fit(fromRows(golden.constant_column.train));
    expectMatchesSklearn(await scorer.scoreSamples(fromRows(golden.constant_column.test)), golden.constant_column.scores);
    // Whitening never keeps the zero-variance axis, even when asked for all the variance: PCA(9, whiten=True).
    const whitened = new GaussianScorer({ whiten: { varianceFraction: 1 } });
    await whitened.fit(fromRows(golden.constant_column.train));
    expect(whitened.components).toBe(golden.constant_column.whitened_all_variance.components);
    expectMatchesSklearn(await whitened.scoreSamples(fromRows(golden.constant_column.test)), golden.constant_column.whitened_all_variance.scores);
  });
});

describe('GaussianScorer state and errors', () => {
  it('exportState/importState round-trips to identical scores, with and without whitening', async () => {
    for (const options of [{}, { whiten: { varianceFraction: 0.8 } }]) {
      const a = new GaussianScorer(options);
      await a.fit(fromRows(golden.train));
      const state = a.exportState();
      // Through JSON and fresh typed arrays, as a safetensors round trip would give.
      const copy = {
        meta: JSON.parse(JSON.stringify(state.meta)),
        arrays: Object.fromEntries(Object.entries(state.arrays).map(([k, v]) => [k, { dims: [...v.dims], data: Float64Array.from(v.data) }])),
      };
      const b = new GaussianScorer();
      b.importState(copy);
      const test = fromRows(golden.test);
      expect(Array.from(await b.scoreSamples(test))).toEqual(Array.from(await a.scoreSamples(test)));
      expect(b.exportState().meta).toEqual(state.meta);
    }
  });

  it('rejects non-finite input, naming the row and column', async () => {
    const X = fromRows(golden.train);
    X.data[7 * 10 + 2] = Number.NaN;
    await expect(new GaussianScorer().fit(X)).rejects.toThrow('GaussianScorer.fit: X: NaN at row 7, column 2');
    const scorer = new GaussianScorer();
    await scorer.fit(fromRows(golden.train));
    const Y = fromRows(golden.test);
    Y.data[3 * 10 + 9] = Number.POSITIVE_INFINITY;
    await expect(scorer.scoreSamples(Y)).rejects.toThrow('GaussianScorer.scoreSamples: Y: Infinity at row 3, column 9');
  });

  it('rejects wrong widths, unfitted use, too few rows, bad options and foreign state', async () => {
    const scorer = new GaussianScorer();
    await expect(scorer.scoreSamples(createMatrix(2, 10))).rejects.toThrow(/not fitted/);
    expect(() => scorer.exportState()).toThrow(/not fitted/);
    await expect(scorer.fit(createMatrix(1, 10))).rejects.toThrow(/1 row, at least 2 needed/);
    await scorer.fit(fromRows(golden.train));
    await expect(scorer.scoreSamples(createMatrix(2, 9))).rejects.toThrow(/9 columns, expected 10/);
    expect(await scorer.scoreSamples(createMatrix(0, 10))).toEqual(new Float64Array(0));
    expect(() => new GaussianScorer({ whiten: { varianceFraction: 1.5 } })).toThrow(/varianceFraction must be a number in \(0, 1\]/);
    expect(() => new GaussianScorer({ regularization: -1 })).toThrow(/regularization/);
    const state = scorer.exportState();
    expect(() => new GaussianScorer().importState({ ...state, meta: { ...state.meta, kind: 'knn' } })).toThrow(/kind "knn", expected 'gaussian'/);
    const broken = { meta: state.meta, arrays: { ...state.arrays, mean: { dims: [3], data: new Float64Array(3) } } };
    expect(() => new GaussianScorer().importState(broken)).toThrow(/array 'mean' has dims \[3\], expected \[10\]/);
  });

  it('zero regularisation on a singular covariance fails with a clear message, never NaN scores', async () => {
    const X = createMatrix(20, 3);
    const rng = createRng(3);
    for (let i = 0; i < 20; i++) {
      const v = rng.normal();
      X.data.set([v, 2 * v, rng.normal()], i * 3);
    }
    await expect(new GaussianScorer({ regularization: 0 }).fit(X)).rejects.toThrow(/not positive definite.*increase the regularization/);
  });
});

describe('scorer-gaussian plugin', () => {
  it('is the default and the named export, with a closed options schema', () => {
    expect(defaultPlugin).toBe(plugin);
    expect(plugin.name).toBe('@transformaly/scorer-gaussian');
    expect(plugin.optionsSchema).toMatchObject({ type: 'object', additionalProperties: false });
  });

  it('binds a fresh scorer per resolution', async () => {
    const container = new Container();
    await container.load(plugin.register({ whiten: { varianceFraction: 0.9 } }));
    const a = container.get<DensityScorer>(TOKENS.DensityScorer);
    const b = container.get<DensityScorer>(TOKENS.DensityScorer);
    expect(a).toBeInstanceOf(GaussianScorer);
    expect(a).not.toBe(b);
    expect((a as GaussianScorer).options.whiten).toEqual({ varianceFraction: 0.9 });
  });
});
