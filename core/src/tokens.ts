// DI tokens: the only names under which stages are bound. The container that resolves them exists only at the
// composition root (`createPipeline`); stages never see it.
export const TOKENS = {
  ImageSource: Symbol.for('transformaly.ImageSource'),
  Preprocessor: Symbol.for('transformaly.Preprocessor'),
  Runtime: Symbol.for('transformaly.Runtime'),
  Backbone: Symbol.for('transformaly.Backbone'),
  Distiller: Symbol.for('transformaly.Distiller'),
  FeatureCombiner: Symbol.for('transformaly.FeatureCombiner'),
  DensityScorer: Symbol.for('transformaly.DensityScorer'),
  ProgressReporter: Symbol.for('transformaly.ProgressReporter'),
  NumericEngine: Symbol.for('transformaly.NumericEngine'),
} as const;

export type TokenName = keyof typeof TOKENS;
