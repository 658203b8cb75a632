import { definePlugin, pluginPackage } from '@transformaly/core';
import type { JsonSchema } from '@transformaly/core';
import { GaussianScorer, type GaussianScorerOptions } from './gaussian.js';

export const gaussianOptionsSchema: JsonSchema = {
  type: 'object',
  additionalProperties: false,
  properties: {
    whiten: {
      description: 'PCA-whiten first, keeping the leading components that explain this fraction of the variance; false to model the raw features',
      default: false,
      oneOf: [
        { const: false },
        {
          type: 'object',
          additionalProperties: false,
          required: ['varianceFraction'],
          properties: { varianceFraction: { type: 'number', exclusiveMinimum: 0, maximum: 1 } },
        },
      ],
    },
    regularization: { type: 'number', minimum: 0, default: 1e-6, description: 'added to the covariance diagonal' },
  },
};

const { name, version, aliases } = pluginPackage(import.meta.url);

export const plugin = definePlugin({
  name,
  version,
  aliases,
  description: 'full-covariance Gaussian log-likelihood, optionally on PCA-whitened features (sklearn GaussianMixture(1))',
  stages: {
    scorer: {
      optionsSchema: gaussianOptionsSchema,
      create: (options: GaussianScorerOptions, ctx) => new GaussianScorer(ctx.numeric, options),
    },
  },
});
