import { ContainerModule } from 'inversify';
import { TOKENS } from '@transformaly/core';
import type { DensityScorer, JsonSchema, TransformalyPlugin } from '@transformaly/core';
import { GaussianScorer, type GaussianScorerOptions } from './gaussian.js';

export const gaussianOptionsSchema: JsonSchema = {
  type: 'object',
  additionalProperties: false,
  properties: {
    whiten: {
      description: 'PCA-whiten first, keeping the leading components that explain this fraction of the variance; false to model the raw features',
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
    regularization: { type: 'number', minimum: 0, description: 'added to the covariance diagonal (default 1e-6)' },
  },
};

export const plugin: TransformalyPlugin<GaussianScorerOptions> = {
  name: '@transformaly/scorer-gaussian',
  description: 'full-covariance Gaussian log-likelihood, optionally on PCA-whitened features (sklearn GaussianMixture(1))',
  optionsSchema: gaussianOptionsSchema,
  register(options) {
    // Validate now, so a bad config fails at composition rather than at the first resolution.
    void new GaussianScorer(options);
    return new ContainerModule(({ bind }) => {
      // Transient: every resolution is a fresh, unfitted scorer (one per feature space).
      bind<DensityScorer>(TOKENS.DensityScorer)
        .toDynamicValue(() => new GaussianScorer(options))
        .inTransientScope();
    });
  },
};
