import { corePlugin } from '../plugins/define.js';
import type { TransformalyPlugin } from '../types.js';
import { SumCombiner, ZScoreCombiner } from './combiners.js';

export type CombinerOptions = Record<string, never>;

const noOptions = { type: 'object', properties: {}, additionalProperties: false } as const;

export const sumCombinerPlugin: TransformalyPlugin = corePlugin({
  name: 'sum',
  description: 'Feature combiner: sum of the per-space normality scores (the paper)',
  stages: { combiner: { optionsSchema: noOptions, create: () => new SumCombiner() } },
});

export const zscoreCombinerPlugin: TransformalyPlugin = corePlugin({
  name: 'zscore',
  description: 'Feature combiner: per-space scores standardised by their training mean and std, then summed',
  stages: { combiner: { optionsSchema: noOptions, create: () => new ZScoreCombiner() } },
});
