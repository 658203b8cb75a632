import { definePlugin, pluginPackage } from '@transformaly/core';
import type { JsonSchema } from '@transformaly/core';
import { KnnScorer, type KnnScorerOptions } from './knn.js';

export const knnOptionsSchema: JsonSchema = {
  type: 'object',
  additionalProperties: false,
  properties: {
    k: { type: 'integer', minimum: 1, default: 2, description: 'neighbours averaged per query' },
    blockRows: { type: 'integer', minimum: 1, description: 'queries per distance block (default: about 4M distances per block)' },
  },
};

const { name, version, aliases } = pluginPackage(import.meta.url);

export const plugin = definePlugin({
  name,
  version,
  aliases,
  description: 'minus the mean Euclidean distance to the k nearest training rows (exact brute force)',
  stages: {
    scorer: {
      optionsSchema: knnOptionsSchema,
      create: (options: KnnScorerOptions, ctx) => new KnnScorer(ctx.numeric, options),
    },
  },
});
