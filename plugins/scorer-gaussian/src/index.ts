export { GaussianScorer, type GaussianScorerOptions } from './gaussian.js';
export { plugin, gaussianOptionsSchema } from './plugin.js';
export { plugin as default } from './plugin.js';
