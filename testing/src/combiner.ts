import { describeValue, type FeatureCombiner } from '@transformaly/core';
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
import { spaceScores } from './data.js';
import { EXPORT_RTOL, firstExportMismatch, runExportHook } from './export.js';

const copy = (scores: Record<string, Float64Array>) => Object.fromEntries(Object.entries(scores).map(([k, v]) => [k, v.slice()]));

/**
 * The FeatureCombiner contract as checks: combines one score per image, works with the pre-trained space alone,
 * rises with every space's score, ignores key order, refuses unfitted use and mismatched spaces, never hides a NaN,
 * leaves its inputs alone, is deterministic, its state round-trips, and every detector gets a new instance.
 */
export function combinerChecks(subject: Subject<'combiner'>, options: SubjectOptions = {}): Check[] {
  const make = instances('combiner', subject, options);
  const train = spaceScores(40, 1);
  const test = spaceScores(10, 2);
  const fitted = async (): Promise<FeatureCombiner> => {
    const combiner = await make();
    await combiner.fit(copy(train));
    return combiner;
  };

  return [
    check('fit-and-combine', 'after fit, combine returns a Float64Array of one finite score per image', async (fail) => {
      const out = (await fitted()).combine(copy(test));
      if (!(out instanceof Float64Array)) fail(`combine returned ${describeValue(out)}, not a Float64Array`);
      if (out.length !== 10) fail(`${out.length} combined scores for 10 images`);
      const bad = out.findIndex((v) => !Number.isFinite(v));
      if (bad >= 0) fail(`combined score ${bad} is ${out[bad]}`);
    }),
    check('single-space', 'works with the pre-trained space alone (a pipeline without a distiller)', async (fail) => {
      const combiner = await make();
      await combiner.fit({ pretrained: train.pretrained.slice() });
      const out = combiner.combine({ pretrained: test.pretrained.slice() });
      if (out.length !== 10 || out.some((v) => !Number.isFinite(v))) fail('combining one space did not give 10 finite scores');
    }),
    check('monotone', "the combined score rises when any one space's score rises (normality: higher = more normal)", async (fail) => {
      const combiner = await fitted();
      const base = combiner.combine(copy(test));
      for (const space of Object.keys(test)) {
        const raised = copy(test);
        raised[space][3] += 50;
        const out = combiner.combine(raised);
        if (!(out[3] > base[3])) fail(`raising the ${space} score of image 3 by 50 moved its combined score from ${base[3]} to ${out[3]}`);
        if (firstDifference(out.subarray(0, 3), base.subarray(0, 3)) >= 0) fail(`raising the ${space} score of image 3 changed the combined score of another image`);
      }
    }),
    check('key-order', 'the order of the spaces in the record does not matter', async (fail) => {
      const combiner = await fitted();
      const reversed = Object.fromEntries(Object.entries(copy(test)).reverse());
      const at = firstDifference(combiner.combine(copy(test)), combiner.combine(reversed));
      if (at >= 0) fail(`image ${at} combines differently when the spaces come in another order`);
    }),
    check('unfitted-use', 'combine and exportState refuse to run before fit or importState', async (fail) => {
      const combiner = await make();
      await expectRefusal(() => combiner.combine(copy(test)), fail, 'combine before fit');
      await expectRefusal(() => combiner.exportState(), fail, 'exportState before fit');
    }),
    check('mismatched-spaces', 'combine refuses spaces other than those it was fitted on, and spaces of unequal lengths', async (fail) => {
      const combiner = await fitted();
      await expectRefusal(() => combiner.combine({ pretrained: test.pretrained.slice() }), fail, 'combine without the finetuned space');
      await expectRefusal(() => combiner.combine({ ...copy(test), other: test.pretrained.slice() }), fail, 'combine with an extra space');
      await expectRefusal(() => combiner.combine({ pretrained: test.pretrained.slice(), finetuned: test.finetuned.slice(0, 9) }), fail, 'combine with 10 and 9 scores');
    }),
    check('no-hidden-nan', 'a NaN score is refused or stays NaN in the combined score, never turned into a number', async (fail) => {
      const combiner = await fitted();
      const scores = copy(test);
      scores.finetuned[4] = Number.NaN;
      let out: Float64Array;
      try {
        out = combiner.combine(scores);
      } catch {
        return;
      }
      if (!Number.isNaN(out[4])) fail(`a NaN finetuned score became the combined score ${out[4]}`);
    }),
    check('inputs-unchanged', 'fit and combine leave the score arrays they are given unchanged', async (fail) => {
      const t = copy(train);
      const combiner = await make();
      await combiner.fit(t);
      for (const space of Object.keys(train)) if (firstDifference(t[space], train[space]) >= 0) fail(`fit changed the ${space} scores`);
      const s = copy(test);
      combiner.combine(s);
      for (const space of Object.keys(test)) if (firstDifference(s[space], test[space]) >= 0) fail(`combine changed the ${space} scores`);
    }),
    check('deterministic', 'the same scores combine the same way: two instances fitted alike, and two calls', async (fail) => {
      const a = await fitted();
      const first = a.combine(copy(test));
      if (firstDifference(first, (await fitted()).combine(copy(test))) >= 0) fail('two instances fitted alike combine differently');
      if (firstDifference(first, a.combine(copy(test))) >= 0) fail('combining the same scores twice gives different results');
    }),
    check('state-round-trip', 'a new instance restored from exportState (through a saved file) combines exactly as the fitted one', async (fail) => {
      const a = await fitted();
      const b = await make();
      b.importState(await throughFile(a.exportState(), fail));
      const at = firstDifference(a.combine(copy(test)), b.combine(copy(test)));
      if (at >= 0) fail(`the restored instance combines image ${at} differently`);
    }),
    check('state-not-aliased', 'exported and imported states are copies: changing them later does not change the model', async (fail) => {
      const a = await fitted();
      const before = a.combine(copy(test));
      const state = a.exportState();
      for (const entry of Object.values(state.arrays)) entry.data.fill(1);
      if (firstDifference(before, a.combine(copy(test))) >= 0) fail('changing an exported state changed the instance that exported it');
      const fresh = (await fitted()).exportState();
      const b = await make();
      b.importState(fresh);
      const restored = b.combine(copy(test));
      for (const entry of Object.values(fresh.arrays)) entry.data.fill(1);
      if (firstDifference(restored, b.combine(copy(test))) >= 0) fail('changing an imported state changed the instance that imported it');
    }),
    check('foreign-state', 'importState refuses a state that is not its own', async (fail) => {
      const combiner = await make();
      await expectRefusal(() => combiner.importState({ meta: {}, arrays: {} }), fail, 'importState of an empty state');
    }),
    check('export-onnx', `a combiner with exportOnnx appends nodes (standard operators) that combine float64 scores as combine does, to ${EXPORT_RTOL} relative`, async (fail) => {
      for (const spaces of [['pretrained', 'finetuned'], ['pretrained']]) {
        const combiner = await make();
        await combiner.fit(Object.fromEntries(spaces.map((s) => [s, train[s].slice()])));
        if (typeof combiner.exportOnnx !== 'function') return;
        const expected = combiner.combine(Object.fromEntries(spaces.map((s) => [s, test[s].slice()])));
        const inputs = spaces.map((name) => ({ name, tensor: { type: 'float64' as const, dims: [test[name].length], data: test[name].slice() } }));
        const actual = await runExportHook('combiner', inputs, (ctx, names) => combiner.exportOnnx!(ctx, Object.fromEntries(spaces.map((s, i) => [s, names[i]]))), fail);
        const at = firstExportMismatch(actual, expected);
        if (at >= 0) fail(`with spaces [${spaces}], the exported graph combines image ${at} to ${actual[at]}, combine to ${expected[at]}`);
      }
    }),
    check('fresh-instance', 'every detector gets a new, unfitted instance', async (fail) => {
      const a = await make();
      const b = await make();
      await a.fit(copy(train));
      await expectRefusal(() => b.combine(copy(test)), fail, 'combining with the second instance after fitting only the first');
    }),
  ];
}

/** Runs `combinerChecks`; throws a ConformanceError listing every broken rule. */
export function checkCombiner(subject: Subject<'combiner'>, options: SubjectOptions = {}): Promise<string[]> {
  return runChecks(combinerChecks(subject, options), subjectName(subject), contractName('combiner'));
}
