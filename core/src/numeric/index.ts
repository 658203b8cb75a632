// Public surface of core/src/numeric (re-exported from core/src/index.ts).
export {
  createMatrix,
  fromRows,
  toRows,
  asFloat64,
  rowView,
  transpose,
  identity,
  selectRows,
  columnMeans,
  subtractRow,
  rowSqNorms,
  vecMat,
} from './matrix.js';
export { createNumericEngine, offersNumerics, componentsPerCall, INTERMEDIATE_BUDGET, type NumericRuntime } from './engine.js';
export { covariance, logsumexpRows, type CovarianceOptions } from './stats.js';
export { logGaussianDensities } from './gaussian.js';
export {
  cholesky,
  invertLowerTriangular,
  precisionCholesky,
  logDetSPD,
  inverseSPD,
  symmetricEigen,
  NotPositiveDefiniteError,
  type PrecisionFactor,
  type SymmetricEigen,
} from './linalg.js';
export {
  pairwiseSqDist,
  forEachSqDistBlock,
  selectSmallest,
  NeighborIndex,
  type SqDistOptions,
  type NeighborSearchOptions,
  type NeighborSearchResult,
} from './distance.js';
export { Rng, createRng, mulberry32, seededPermutation } from './rng.js';
export {
  assertMatrix,
  assertFinite,
  assertMinRows,
  assertCols,
  assertUsableMatrix,
  assertPositiveInteger,
  assertNonNegativeNumber,
  constantColumns,
} from './validate.js';
export { float64Entry, stateArray, stateMeta, metaNumber } from './state.js';
export { kmeansPlusPlus, type KmeansPlusPlusResult } from './kmeans.js';
export { encodeHalf, decodeHalf, roundToHalf, type HalfType } from './half.js';
