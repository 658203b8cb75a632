import { readFileSync } from 'node:fs';
import { afterAll, describe, expect, it } from 'vitest';
import { createMatrix, createNumericEngine, createRng, fromRows } from '@transformaly/core';
import { OnnxRuntime } from '@transformaly/runtime-onnx';
import defaultPlugin, { KnnScorer, plugin } from '@transformaly/scorer-knn';
import { densityScorerChecks, registerChecks } from '@transformaly/testing';
import { expectClose } from './fixtures/close.js';

// The numeric engine a pipeline would hand the scorer, made explicitly: onnxruntime, two threads.
const runtime = new OnnxRuntime({ threads: 2 });
const engine = createNumericEngine(runtime);
afterAll(async () => {
  await engine.dispose();
  await runtime.dispose();
});

interface KnnGolden {
  train: number[][];
  test: number[][];
  k2: { mean_distance: number[] };
  k5: { mean_distance: number[] };
}

const golden = JSON.parse(readFileSync(new URL('./golden/scorers/knn.json', import.meta.url), 'utf8')) as KnnGolden;

const expectMatchesSklearn = (ours: Float64Array, sklearn: number[]) => expectClose(ours, sklearn, 1e-6, 'scores');

describe('KnnScorer against scikit-learn', () => {
  for (const k of [2, 5] as const) {
    it(`k = ${k}: minus the mean NearestNeighbors(n_neighbors=${k}).kneighbors distance`, async () => {
      const scorer = new KnnScorer(engine, { k, blockRows: 16 });
      scorer.fit(fromRows(golden.train));
      const expected = golden[`k${k}`].mean_distance.map((v) => -v);
      expectMatchesSklearn(await scorer.scoreSamples(fromRows(golden.test)), expected);
    });
  }

  it('a query equal to a training row has that row at distance 0, as kneighbors(Y) does', async () => {
    const scorer = new KnnScorer(engine, { k: 1 });
    scorer.fit(fromRows(golden.train));
    const scores = await scorer.scoreSamples(fromRows(golden.train.slice(0, 3)));
    expect(Array.from(scores)).toEqual([0, 0, 0]);
  });
});

describe('KnnScorer state, degenerate data and errors', () => {
  it('k larger than the training rows is an error', () => {
    expect(() => new KnnScorer(engine, { k: 4 }).fit(createMatrix(3, 2))).toThrow('KnnScorer.fit: k = 4 neighbours requested but there are only 3 training rows');
    expect(() => new KnnScorer(engine, { k: 0 })).toThrow(/options.k: expected a positive integer/);
  });

  it('rejects NaN input naming the row and column, and wrong widths', async () => {
    const X = fromRows(golden.train);
    X.data[4 * 10 + 6] = Number.NaN;
    expect(() => new KnnScorer(engine).fit(X)).toThrow('KnnScorer.fit: X: NaN at row 4, column 6');
    const scorer = new KnnScorer(engine);
    scorer.fit(fromRows(golden.train));
    const Y = fromRows(golden.test);
    Y.data[10] = Number.NaN;
    await expect(scorer.scoreSamples(Y)).rejects.toThrow('KnnScorer.scoreSamples: Y: NaN at row 1, column 0');
    await expect(scorer.scoreSamples(createMatrix(1, 3))).rejects.toThrow(/3 columns, expected 10/);
    await expect(new KnnScorer(engine).scoreSamples(createMatrix(1, 3))).rejects.toThrow(/not fitted/);
  });

  it('duplicated training rows, constant columns and fewer rows than columns give exact, finite scores', async () => {
    const rng = createRng(5);
    const d = 40;
    const train = createMatrix(12, d);
    for (let i = 0; i < train.data.length; i++) train.data[i] = rng.normal();
    for (let i = 0; i < 12; i++) train.data[i * d + 7] = 3; // constant column
    train.data.copyWithin(d, 0, d); // rows 0 and 1 identical
    const queries = createMatrix(6, d);
    for (let i = 0; i < queries.data.length; i++) queries.data[i] = rng.normal();
    const scorer = new KnnScorer(engine, { k: 3 });
    scorer.fit(train);
    const scores = await scorer.scoreSamples(queries);
    for (let q = 0; q < 6; q++) {
      const dists: number[] = [];
      for (let t = 0; t < 12; t++) {
        let s = 0;
        for (let j = 0; j < d; j++) s += (queries.data[q * d + j] - train.data[t * d + j]) ** 2;
        dists.push(Math.sqrt(s));
      }
      dists.sort((a, b) => a - b);
      expectClose([scores[q]], [-(dists[0] + dists[1] + dists[2]) / 3], 1e-12, `query ${q}`);
    }
  });
});

describe('scorer-knn plugin', () => {
  it('is the default and the named export, with a closed options schema', () => {
    expect(defaultPlugin).toBe(plugin);
    expect(plugin.name).toBe('@transformaly/scorer-knn');
    expect(plugin.aliases).toEqual(['knn']);
    expect(plugin.stages.scorer.optionsSchema).toMatchObject({ type: 'object', additionalProperties: false });
  });
});

// The DensityScorer contract through the core's binding of the plugin; small blocks exercise the blocked search.
describe('conformance: k = 3, blocks of 5 queries', () => registerChecks(densityScorerChecks({ plugin, options: { k: 3, blockRows: 5 } }, { numeric: engine }), it));
