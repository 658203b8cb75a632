// The conformance kit checks every rule of the DensityScorer contract (fitting, orientation, refusals, state
// round-trips through a saved file, ...); the test below checks the model's values against hand arithmetic.
import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { densityScorerChecks, disposeKit, registerChecks } from '@transformaly/testing';
import plugin, { DiagonalGaussianScorer } from '../src/index.js';

registerChecks(densityScorerChecks({ plugin, options: { varianceFloor: 1e-6 } }), test, 'conformance: ');
after(() => disposeKit());

test('the score is the log-likelihood under the per-feature means and variances', () => {
  const scorer = new DiagonalGaussianScorer({ varianceFloor: 0 });
  // Two features: means 1 and 2, variances 1 and 4 (divisor n, as a maximum-likelihood fit has it).
  scorer.fit({ rows: 2, cols: 2, data: Float64Array.from([0, 0, 2, 4]) });
  const [atMean, away] = scorer.scoreSamples({ rows: 2, cols: 2, data: Float64Array.from([1, 2, 3, 2]) });
  // log N(y | m, v) summed over the features: -0.5 * (2 log 2 pi + log 1 + log 4 + (y1 - 1)^2 / 1 + (y2 - 2)^2 / 4).
  const constant = 2 * Math.log(2 * Math.PI) + Math.log(4);
  assert.ok(Math.abs(atMean - -0.5 * constant) < 1e-12, `at the mean: ${atMean}`);
  assert.ok(Math.abs(away - -0.5 * (constant + 4)) < 1e-12, `two units from the first mean: ${away}`);
});
