import { describeValue, type DensityScorer, type Matrix } from '@transformaly/core';
import {
  check,
  contractName,
  expectRefusal,
  firstDifference,
  instances,
  runChecks,
  subjectName,
  throughFile,
  type Check,
  type Subject,
  type SubjectOptions,
} from './checks.js';
import { asFloat32, gaussianRows, outlierRows, withValue } from './data.js';
import { EXPORT_RTOL, firstExportMismatch, runExportHook } from './export.js';

export interface ScorerCheckOptions extends SubjectOptions {
  /** Training rows (default 60) and feature columns (default 4) of the generated data. */
  rows?: number;
  cols?: number;
}

/**
 * The DensityScorer contract as checks, like scikit-learn's check_estimator: fits and scores, higher = more normal,
 * refuses unfitted use, NaN and wrong shapes, accepts float32, leaves its inputs alone, is deterministic, its state
 * round-trips through a saved file without aliasing the model, and every detector gets a new instance.
 */
export function densityScorerChecks(subject: Subject<'scorer'>, options: ScorerCheckOptions = {}): Check[] {
  const make = instances('scorer', subject, options);
  const n = options.rows ?? 60;
  const d = options.cols ?? 4;
  const X = gaussianRows(n, d, 1);
  const Y = gaussianRows(12, d, 2);
  const fitted = async (): Promise<DensityScorer> => {
    const scorer = await make();
    await scorer.fit(X);
    return scorer;
  };
  const scores = async (scorer: DensityScorer, rows: Matrix = Y) => scorer.scoreSamples(rows);

  return [
    check('fit-and-score', 'after fit, scoreSamples returns a Float64Array of one finite score per row', async (fail) => {
      const s = await scores(await fitted());
      if (!(s instanceof Float64Array)) fail(`scoreSamples returned ${describeValue(s)}, not a Float64Array`);
      if (s.length !== Y.rows) fail(`${s.length} scores for ${Y.rows} rows`);
      const bad = s.findIndex((v) => !Number.isFinite(v));
      if (bad >= 0) fail(`score ${bad} is ${s[bad]}`);
    }),
    check('normality-orientation', 'scores are normality scores: rows like the training data score higher than far outliers', async (fail) => {
      const scorer = await fitted();
      const inliers = await scores(scorer);
      const outliers = await scores(scorer, outlierRows(4, d));
      const worstInlier = Math.min(...inliers);
      const bestOutlier = Math.max(...outliers);
      if (!(worstInlier > bestOutlier)) fail(`the lowest score of rows like the training data is ${worstInlier}, not above the highest score of far outliers, ${bestOutlier} (higher must mean more normal)`);
    }),
    check('unfitted-use', 'scoreSamples and exportState refuse to run before fit or importState', async (fail) => {
      const scorer = await make();
      await expectRefusal(() => scorer.scoreSamples(Y), fail, 'scoreSamples before fit');
      await expectRefusal(() => scorer.exportState(), fail, 'exportState before fit');
    }),
    check('refuses-non-finite', 'fit and scoreSamples refuse NaN and infinite values', async (fail) => {
      const a = await make();
      await expectRefusal(() => a.fit(withValue(X, 5, Number.NaN)), fail, 'fit on rows holding NaN');
      const b = await make();
      await expectRefusal(() => b.fit(withValue(X, 7, Number.POSITIVE_INFINITY)), fail, 'fit on rows holding Infinity');
      const scorer = await fitted();
      await expectRefusal(() => scorer.scoreSamples(withValue(Y, 3, Number.NaN)), fail, 'scoreSamples on rows holding NaN');
    }),
    check('refuses-wrong-shape', 'scoreSamples refuses a width other than the fitted one, and a matrix whose data does not match rows x cols', async (fail) => {
      const scorer = await fitted();
      await expectRefusal(() => scorer.scoreSamples(gaussianRows(3, d + 1, 3)), fail, `scoreSamples on ${d + 1} columns after fitting on ${d}`);
      await expectRefusal(() => scorer.scoreSamples({ rows: 3, cols: d, data: new Float64Array(3 * d - 1) }), fail, 'scoreSamples on data shorter than rows x cols');
      const fresh = await make();
      await expectRefusal(() => fresh.fit({ rows: n, cols: d, data: X.data.subarray(0, n * d - 1) }), fail, 'fit on data shorter than rows x cols');
    }),
    check('float32-input', 'fit and scoreSamples accept float32 features', async (fail) => {
      const scorer = await make();
      await scorer.fit(asFloat32(X));
      const s = await scorer.scoreSamples(asFloat32(Y));
      if (s.length !== Y.rows || s.some((v) => !Number.isFinite(v))) fail(`float32 rows gave ${s.length} scores, not ${Y.rows} finite ones`);
    }),
    check('inputs-unchanged', 'fit and scoreSamples leave the matrices they are given unchanged', async (fail) => {
      const x = { ...X, data: X.data.slice() };
      const y = { ...Y, data: Y.data.slice() };
      const scorer = await make();
      await scorer.fit(x);
      let at = firstDifference(x.data, X.data);
      if (at >= 0) fail(`fit changed its input at flat index ${at}`);
      await scorer.scoreSamples(y);
      at = firstDifference(y.data, Y.data);
      if (at >= 0) fail(`scoreSamples changed its input at flat index ${at}`);
    }),
    check('deterministic', 'the same data give the same scores: two instances fitted alike, and two calls', async (fail) => {
      const a = await fitted();
      const b = await fitted();
      const first = await scores(a);
      let at = firstDifference(first, await scores(b));
      if (at >= 0) fail(`two instances fitted on the same rows score row ${at} differently`);
      at = firstDifference(first, await scores(a));
      if (at >= 0) fail(`scoring the same rows twice gives a different score for row ${at}`);
    }),
    check('state-round-trip', 'a new instance restored from exportState (through a saved file) scores exactly as the fitted one, and exports the same state', async (fail) => {
      const a = await fitted();
      const state = a.exportState();
      const saved = await throughFile(state, fail);
      const b = await make();
      b.importState(saved);
      const at = firstDifference(await scores(a), await scores(b));
      if (at >= 0) fail(`the restored instance scores row ${at} differently`);
      const again = await throughFile(b.exportState(), fail);
      if (JSON.stringify(again.meta) !== JSON.stringify(saved.meta)) fail('the restored instance exports different meta');
      for (const [name, entry] of Object.entries(saved.arrays)) {
        if (!again.arrays[name] || firstDifference(again.arrays[name].data, entry.data) >= 0) fail(`the restored instance exports a different array "${name}"`);
      }
    }),
    check('state-not-aliased', 'exported and imported states are copies: changing them later does not change the model', async (fail) => {
      const a = await fitted();
      const before = await scores(a);
      const state = a.exportState();
      for (const entry of Object.values(state.arrays)) entry.data.fill(0);
      if (firstDifference(before, await scores(a)) >= 0) fail('zeroing the arrays of an exported state changed the scores of the instance that exported it');
      const fresh = (await fitted()).exportState();
      const b = await make();
      b.importState(fresh);
      const restored = await scores(b);
      for (const entry of Object.values(fresh.arrays)) entry.data.fill(0);
      if (firstDifference(restored, await scores(b)) >= 0) fail('zeroing the arrays of an imported state changed the scores of the instance that imported it');
    }),
    check('foreign-state', 'importState refuses a state that is not its own', async (fail) => {
      const scorer = await make();
      await expectRefusal(() => scorer.importState({ meta: {}, arrays: {} }), fail, 'importState of an empty state');
    }),
    check('export-onnx', `a scorer with exportOnnx appends nodes (standard operators) that compute scoreSamples from float32 or float64 features to ${EXPORT_RTOL} relative`, async (fail) => {
      const scorer = await fitted();
      if (typeof scorer.exportOnnx !== 'function') return;
      for (const rows of [asFloat32(Y), Y]) {
        const type = rows.data instanceof Float32Array ? 'float32' : 'float64';
        const expected = await scores(scorer, rows);
        const actual = await runExportHook('scorers.pretrained', [{ name: 'features', tensor: { type, dims: [rows.rows, rows.cols], data: rows.data } }], (ctx, [features]) => scorer.exportOnnx!(ctx, features), fail);
        const at = firstExportMismatch(actual, expected);
        if (at >= 0) fail(`from ${type} features, the exported graph scores row ${at} as ${actual[at]}, scoreSamples as ${expected[at]}`);
      }
    }),
    check('fresh-instance', 'every detector and feature space gets a new, unfitted instance', async (fail) => {
      const a = await make();
      const b = await make();
      await a.fit(X);
      await expectRefusal(() => b.scoreSamples(Y), fail, 'scoring with the second instance after fitting only the first');
    }),
  ];
}

/** Runs `densityScorerChecks`; throws a ConformanceError listing every broken rule. */
export function checkDensityScorer(subject: Subject<'scorer'>, options: ScorerCheckOptions = {}): Promise<string[]> {
  return runChecks(densityScorerChecks(subject, options), subjectName(subject), contractName('scorer'));
}
