import { readFileSync } from 'node:fs';
import { afterAll, describe, expect, it } from 'vitest';
import { createMatrix, createNumericEngine, createRng, fromRows } from '@transformaly/core';
import { OnnxRuntime } from '@transformaly/runtime-onnx';
import defaultPlugin, { GaussianScorer, plugin } from '@transformaly/scorer-gaussian';
import { densityScorerChecks, registerChecks } from '@transformaly/testing';
import { expectClose } from './fixtures/close.js';

// The numeric engine a pipeline would hand the scorer, made explicitly: onnxruntime, two threads.
const runtime = new OnnxRuntime({ threads: 2 });
const engine = createNumericEngine(runtime);
afterAll(async () => {
  await engine.dispose();
  await runtime.dispose();
});

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
    const scorer = new GaussianScorer(engine);
    await scorer.fit(fromRows(golden.train));
    expectMatchesSklearn(await scorer.scoreSamples(fromRows(golden.test)), golden.scores, 'test scores');
    expectMatchesSklearn(await scorer.scoreSamples(fromRows(golden.train)), golden.train_scores, 'train scores');
  });

  it('accepts float32 features', async () => {
    const toF32 = (rows: number[][]) => {
      const m = fromRows(rows);
      return { rows: m.rows, cols: m.cols, data: Float32Array.from(m.data) };
    };
    const scorer = new GaussianScorer(engine);
    await scorer.fit(toF32(golden.train));
    const scores = await scorer.scoreSamples(toF32(golden.test));
    // Only the float32 rounding of the inputs separates this from the float64 result.
    expectClose(scores, golden.scores, 1e-4, 'scores of float32 input');
  });

  it('with whitening equals PCA(k, whiten=True) + GaussianMixture(1), k chosen by the explained-variance fraction', async () => {
    const scorer = new GaussianScorer(engine, { whiten: { varianceFraction: golden.whitened.variance_fraction } });
    await scorer.fit(fromRows(golden.train));
    expect(scorer.components).toBe(golden.whitened.components);
    const state = scorer.exportState();
    const ev = state.arrays.pca_explained_variance.data;
    expectClose(ev, golden.whitened.explained_variance, 1e-10, 'explained variance');
    expectMatchesSklearn(await scorer.scoreSamples(fromRows(golden.test)), golden.whitened.scores);
  });

  it('fewer rows than columns: the regularisation alone makes the covariance invertible, as in sklearn', async () => {
    const scorer = new GaussianScorer(engine);
    await scorer.fit(fromRows(golden.few_rows.train));
    expectMatchesSklearn(await scorer.scoreSamples(fromRows(golden.test)), golden.few_rows.scores);
  });

  it('a constant column gives the scores of sklearn, with and without whitening', async () => {
    const scorer = new GaussianScorer(engine);
    await scorer.fit(fromRows(golden.constant_column.train));
    expectMatchesSklearn(await scorer.scoreSamples(fromRows(golden.constant_column.test)), golden.constant_column.scores);
    // Whitening never keeps the zero-variance axis, even when asked for all the variance: PCA(9, whiten=True).
    const whitened = new GaussianScorer(engine, { whiten: { varianceFraction: 1 } });
    await whitened.fit(fromRows(golden.constant_column.train));
    expect(whitened.components).toBe(golden.constant_column.whitened_all_variance.components);
    expectMatchesSklearn(await whitened.scoreSamples(fromRows(golden.constant_column.test)), golden.constant_column.whitened_all_variance.scores);
  });
});

describe('GaussianScorer state and errors', () => {
  it('rejects non-finite input, naming the row and column', async () => {
    const X = fromRows(golden.train);
    X.data[7 * 10 + 2] = Number.NaN;
    await expect(new GaussianScorer(engine).fit(X)).rejects.toThrow('GaussianScorer.fit: X: NaN at row 7, column 2');
    const scorer = new GaussianScorer(engine);
    await scorer.fit(fromRows(golden.train));
    const Y = fromRows(golden.test);
    Y.data[3 * 10 + 9] = Number.POSITIVE_INFINITY;
    await expect(scorer.scoreSamples(Y)).rejects.toThrow('GaussianScorer.scoreSamples: Y: Infinity at row 3, column 9');
  });

  it('rejects wrong widths, unfitted use, too few rows, bad options and foreign state', async () => {
    const scorer = new GaussianScorer(engine);
    await expect(scorer.scoreSamples(createMatrix(2, 10))).rejects.toThrow(/not fitted/);
    expect(() => scorer.exportState()).toThrow(/not fitted/);
    await expect(scorer.fit(createMatrix(1, 10))).rejects.toThrow(/1 row, at least 2 needed/);
    await scorer.fit(fromRows(golden.train));
    await expect(scorer.scoreSamples(createMatrix(2, 9))).rejects.toThrow(/9 columns, expected 10/);
    expect(await scorer.scoreSamples(createMatrix(0, 10))).toEqual(new Float64Array(0));
    expect(() => new GaussianScorer(engine, { whiten: { varianceFraction: 1.5 } })).toThrow(/varianceFraction must be a number in \(0, 1\]/);
    expect(() => new GaussianScorer(engine, { regularization: -1 })).toThrow(/regularization/);
    const state = scorer.exportState();
    expect(() => new GaussianScorer(engine).importState({ ...state, meta: { ...state.meta, kind: 'knn' } })).toThrow(/kind "knn", expected 'gaussian'/);
    const broken = { meta: state.meta, arrays: { ...state.arrays, mean: { dims: [3], data: new Float64Array(3) } } };
    expect(() => new GaussianScorer(engine).importState(broken)).toThrow(/array 'mean' has dims \[3\], expected \[10\]/);
  });

  it('zero regularisation on a singular covariance fails with a clear message, never NaN scores', async () => {
    const X = createMatrix(20, 3);
    const rng = createRng(3);
    for (let i = 0; i < 20; i++) {
      const v = rng.normal();
      X.data.set([v, 2 * v, rng.normal()], i * 3);
    }
    await expect(new GaussianScorer(engine, { regularization: 0 }).fit(X)).rejects.toThrow(/not positive definite.*increase the regularization/);
  });
});

describe('scorer-gaussian plugin', () => {
  it('is the default and the named export, carries its package name and version, with a closed options schema', () => {
    expect(defaultPlugin).toBe(plugin);
    expect(plugin.name).toBe('@transformaly/scorer-gaussian');
    expect(plugin.version).toBe(JSON.parse(readFileSync(new URL('../plugins/scorer-gaussian/package.json', import.meta.url), 'utf8')).version);
    expect(plugin.aliases).toEqual(['gaussian']);
    expect(plugin.stages.scorer.optionsSchema).toMatchObject({ type: 'object', additionalProperties: false });
  });
});

// The DensityScorer contract (state round trip through a saved file, refusals, determinism, a fresh instance per
// detector), through the core's binding of the plugin as a pipeline makes it.
describe('conformance: plain Gaussian', () => registerChecks(densityScorerChecks({ plugin, options: {} }, { numeric: engine }), it));
describe('conformance: whitened Gaussian', () => registerChecks(densityScorerChecks({ plugin, options: { whiten: { varianceFraction: 0.8 } } }, { numeric: engine }), it));
