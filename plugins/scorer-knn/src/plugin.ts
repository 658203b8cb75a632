import { ContainerModule } from 'inversify';
import { TOKENS } from '@transformaly/core';
import type { DensityScorer, JsonSchema, TransformalyPlugin } from '@transformaly/core';
import { KnnScorer, type KnnScorerOptions } from './knn.js';

export const knnOptionsSchema: JsonSchema = {
  type: 'object',
  additionalProperties: false,
  properties: {
    k: { type: 'integer', minimum: 1, description: 'neighbours averaged per query (default 2)' },
    blockRows: { type: 'integer', minimum: 1, description: 'queries per distance block' },
  },
};

export const plugin: TransformalyPlugin<KnnScorerOptions> = {
  name: '@transformaly/scorer-knn',
  description: 'minus the mean Euclidean distance to the k nearest training rows (exact brute force)',
  optionsSchema: knnOptionsSchema,
  register(options) {
    // Validate now, so a bad config fails at composition rather than at the first resolution.
    void new KnnScorer(options);
    return new ContainerModule(({ bind }) => {
      // Transient: every resolution is a fresh, unfitted scorer (one per feature space).
      bind<DensityScorer>(TOKENS.DensityScorer)
        .toDynamicValue(() => new KnnScorer(options))
        .inTransientScope();
    });
  },
};
