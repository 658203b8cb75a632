import { ContainerModule } from 'inversify';
import { TOKENS } from '../tokens.js';
import type { FeatureCombiner, TransformalyPlugin } from '../types.js';
import { SumCombiner, ZScoreCombiner } from './combiners.js';

export type CombinerOptions = Record<string, never>;

const noOptions = { type: 'object', properties: {}, additionalProperties: false } as const;

function combinerModule(create: () => FeatureCombiner): ContainerModule {
  // Transient: each resolution gets its own (unfitted) combiner, so cases never share fitted state.
  return new ContainerModule(({ bind }) => {
    bind<FeatureCombiner>(TOKENS.FeatureCombiner).toDynamicValue(create).inTransientScope();
  });
}

export const sumCombinerPlugin: TransformalyPlugin<CombinerOptions> = {
  name: 'sum',
  description: 'Feature combiner: sum of the per-space normality scores (the paper)',
  optionsSchema: noOptions,
  register: () => combinerModule(() => new SumCombiner()),
};

export const zscoreCombinerPlugin: TransformalyPlugin<CombinerOptions> = {
  name: 'zscore',
  description: 'Feature combiner: per-space scores standardised by their training mean and std, then summed',
  optionsSchema: noOptions,
  register: () => combinerModule(() => new ZScoreCombiner()),
};
