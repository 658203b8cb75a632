export { KnnScorer, type KnnScorerOptions } from './knn.js';
export { plugin, knnOptionsSchema } from './plugin.js';
export { plugin as default } from './plugin.js';
