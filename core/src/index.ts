export type * from './types.js';
export { TOKENS, type TokenName } from './tokens.js';
export { writeFileAtomic, writeDirAtomic, writeFully, FileWriteError } from './io/atomic.js';
export { SAFE_NAME, checkSafeName, resolveInside, UnsafePathError } from './io/paths.js';
export { ensureWritableFolder, removeStaleTemps, OutputFolderError, STALE_TEMP_AGE_MS } from './io/folders.js';
export {
  openSafetensors,
  readSafetensors,
  writeSafetensors,
  encodeSafetensors,
  SafetensorsError,
  type SafetensorsFile,
  type SafetensorsEntry,
  type SafetensorsDtype,
} from './io/safetensors.js';
export * from './numeric/index.js';
export * from './data/index.js';
export * from './metrics/index.js';
export * from './persistence/index.js';
export * from './onnx/index.js';
export * from './combine/index.js';
export * from './io/npy.js';
export { ConsoleProgress, SilentProgress, formatDuration, type ConsoleProgressOptions } from './progress.js';
export { defineConfig, loadConfigFile, ConfigFileError, CONFIG_FILE_NAMES } from './config/load.js';
export { ConfigError, type ConfigIssue, compileSchema } from './config/validate.js';
export { resolveConfig, CONFIG_DEFAULTS, type Resolution, type LoadedStage, type ResolveOptions } from './config/resolve.js';
export { STAGE_SLOTS, STAGE_KINDS, STAGE_KIND_NAMES, stageSlot, stateName, type StageSlot, type StagePath, type StageScope } from './stages.js';
export { coreConfigSchema } from './config/schema.js';
export {
  loadPlugin,
  locatePlugin,
  checkedPlugin,
  closestNames,
  knownPluginNames,
  isPathReference,
  PluginError,
  type LoadOptions,
  type LocatedPlugin,
} from './plugins/loader.js';
export { pluginPackage, discoverPlugins, type PluginPackageInfo, type DiscoveredPlugins } from './plugins/packages.js';
export { definePlugin, isCorePlugin } from './plugins/define.js';
export { stageModule, registeredModule, providedKinds, stageResolver, type StageDependencies } from './plugins/bind.js';
export { CONTRACTS, ContractError, checkedStage, stageOwner, stageStateProblem, describeValue, type StageOwner } from './plugins/contract.js';
export { BUILTIN_PLUGINS } from './plugins/builtins.js';
export { createPipeline, createPipelineFromFile, Pipeline, NUMERIC_FALLBACK, type PipelineOptions } from './pipeline/compose.js';
export {
  Detector,
  quantile,
  epochOrder,
  type DetectorParts,
  type DetectorProvenance,
  type DetectorSettings,
  type DetectorScores,
  type FitSummary,
} from './pipeline/detector.js';
export { openDetector, type OpenDetectorOptions, type OpenedDetector } from './pipeline/open.js';
export {
  runProtocol,
  prepareRun,
  runCases,
  runCase,
  isCaseDone,
  assembleRunResults,
  runIdOf,
  runDirOf,
  caseFolderName,
  formatRunTable,
  RunConflictError,
  type CaseResult,
  type CaseSettings,
  type FailedCase,
  type RunCase,
  type RunOptions,
  type RunResults,
} from './pipeline/run.js';
export {
  SCORES_CSV_HEADER,
  DETECTOR_SCORES_CSV_HEADER,
  SCORE_SPACES,
  caseScoresCsv,
  csvField,
  detectorScoresCsv,
  evaluateScoresCsv,
  mergeScoresCsv,
  parseCsv,
  readScoresCsv,
  type CaseScores,
  type ScoreSpace,
  type ScoresEvaluation,
} from './pipeline/scores.js';
export { packageVersions } from './pipeline/versions.js';
export * from './distill/index.js';
export { stageProfile, timed, type StageTime } from './profile.js';
export * from './export/index.js';
