// The conformance kit checks every rule of the FeatureCombiner contract (one score per image, monotone in every
// space, refusals, state round-trips through a saved file, ...); the test below checks the sum by hand.
import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { combinerChecks, disposeKit, registerChecks } from '@transformaly/testing';
import plugin, { WeightedSumCombiner } from '../src/index.js';

registerChecks(combinerChecks({ plugin, options: { weights: { finetuned: 2 } } }), test, 'conformance: ');
after(() => disposeKit());

test('the combined score is the weighted sum of the spaces’ scores', () => {
  const combiner = new WeightedSumCombiner({ weights: { pretrained: 0.5 } });
  combiner.fit({ pretrained: Float64Array.of(0, 0), finetuned: Float64Array.of(0, 0) });
  const combined = combiner.combine({ finetuned: Float64Array.of(3, -1), pretrained: Float64Array.of(-10, 4) });
  // 0.5 * pretrained + 1 * finetuned.
  assert.deepEqual([...combined], [0.5 * -10 + 3, 0.5 * 4 - 1]);
});
