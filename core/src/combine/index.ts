// Public surface of core/src/combine (re-exported from core/src/index.ts).
export { SumCombiner, ZScoreCombiner } from './combiners.js';
export { sumCombinerPlugin, zscoreCombinerPlugin, type CombinerOptions } from './plugins.js';
