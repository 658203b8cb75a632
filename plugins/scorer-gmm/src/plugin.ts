import { ContainerModule } from 'inversify';
import { TOKENS } from '@transformaly/core';
import type { DensityScorer, JsonSchema, TransformalyPlugin } from '@transformaly/core';
import { GmmScorer, type GmmScorerOptions } from './gmm.js';

const numberArray = { type: 'array', items: { type: 'number' } };

export const gmmOptionsSchema: JsonSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['components'],
  properties: {
    components: { type: 'integer', minimum: 1, description: 'number of Gaussian components' },
    nInit: { type: 'integer', minimum: 1, description: 'k-means++ restarts; the best lower bound is kept (default 1)' },
    seed: { type: 'integer', description: 'seed of the k-means++ draws (default 0)' },
    maxIter: { type: 'integer', minimum: 1, description: 'EM iterations per restart (default 100)' },
    tol: { type: 'number', minimum: 0, description: 'convergence threshold on the change of the mean log-likelihood (default 1e-3)' },
    regularization: { type: 'number', minimum: 0, description: 'added to every covariance diagonal (default 1e-6)' },
    init: {
      type: 'object',
      additionalProperties: false,
      required: ['means', 'weights', 'precisions'],
      description: "explicit starting parameters, as sklearn's means_init / weights_init / precisions_init",
      properties: {
        means: { type: 'array', items: numberArray },
        weights: numberArray,
        precisions: { type: 'array', items: { type: 'array', items: numberArray } },
      },
    },
  },
};

export const plugin: TransformalyPlugin<GmmScorerOptions> = {
  name: '@transformaly/scorer-gmm',
  description: 'Gaussian mixture log-likelihood (full covariances, k-means++ + EM, sklearn GaussianMixture)',
  optionsSchema: gmmOptionsSchema,
  register(options) {
    // Validate now, so a bad config fails at composition rather than at the first resolution.
    void new GmmScorer(options);
    return new ContainerModule(({ bind }) => {
      // Transient: every resolution is a fresh, unfitted scorer (one per feature space).
      bind<DensityScorer>(TOKENS.DensityScorer)
        .toDynamicValue(() => new GmmScorer(options))
        .inTransientScope();
    });
  },
};
