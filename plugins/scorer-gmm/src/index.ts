export { GmmScorer, resolveGmmOptions, type GmmScorerOptions, type GmmInit } from './gmm.js';
export { plugin, gmmOptionsSchema } from './plugin.js';
export { plugin as default } from './plugin.js';
