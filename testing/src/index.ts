// @transformaly/testing: the stage contracts as checks a plugin's own test suite runs, like scikit-learn's
// check_estimator. Each `check*` runs every rule and throws a ConformanceError listing the broken ones; each `*Checks`
// returns the rules as named checks for `registerChecks(checks, it)` (vitest, jest) or `registerChecks(checks, test)`
// (node:test).
export { CheckFailure, ConformanceError, disposeKit, kitNumericEngine, kitRuntime, registerChecks, runChecks, type Check, type Subject, type SubjectOptions } from './checks.js';
export { checkDensityScorer, densityScorerChecks, type ScorerCheckOptions } from './scorer.js';
export { checkCombiner, combinerChecks } from './combiner.js';
export { checkBackbone, backboneChecks, type BackboneCheckOptions } from './backbone.js';
export { checkRuntime, runtimeChecks } from './runtime.js';
export { checkImageSource, imageSourceChecks } from './source.js';
