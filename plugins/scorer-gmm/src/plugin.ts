import { definePlugin, pluginPackage } from '@transformaly/core';
import type { JsonSchema } from '@transformaly/core';
import { GmmScorer, resolveGmmOptions, type GmmScorerOptions } from './gmm.js';

const numberArray = { type: 'array', items: { type: 'number' } };

export const gmmOptionsSchema: JsonSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['components'],
  properties: {
    components: { type: 'integer', minimum: 1, description: 'number of Gaussian components' },
    nInit: { type: 'integer', minimum: 1, default: 1, description: 'k-means++ restarts; the best lower bound is kept' },
    seed: { type: 'integer', default: 0, description: 'seed of the k-means++ draws' },
    maxIter: { type: 'integer', minimum: 1, default: 100, description: 'EM iterations per restart' },
    tol: { type: 'number', minimum: 0, default: 1e-3, description: 'convergence threshold on the change of the mean log-likelihood' },
    regularization: { type: 'number', minimum: 0, default: 1e-6, description: 'added to every covariance diagonal' },
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

const { name, version, aliases } = pluginPackage(import.meta.url);

export const plugin = definePlugin({
  name,
  version,
  aliases,
  description: 'Gaussian mixture log-likelihood (full covariances, k-means++ + EM, sklearn GaussianMixture)',
  stages: {
    scorer: {
      optionsSchema: gmmOptionsSchema,
      checkOptions: (options: GmmScorerOptions) => void resolveGmmOptions(options),
      create: (options: GmmScorerOptions, ctx) => new GmmScorer(ctx.numeric, options),
    },
  },
});
