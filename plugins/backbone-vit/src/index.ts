export { ViTBackbone, loadVitBackbone, randomVit, type VitBackboneOptions, type RandomVitOptions, type VitLoadContext } from './backbone.js';
export { VIT_PRESETS, gridOf, blockShapes, expectedShapes, type VitArch, type VitWeights } from './arch.js';
export { buildVitGraph, buildVitModel, FEATURES, PIXELS, hiddenName, quantizeWeightPerChannel, vitOpsetImports, type VitModelOptions, type VitPrecision } from './graph.js';
export {
  readVitCheckpoint,
  locateCheckpoint,
  checkpointFiles,
  CheckpointError,
  hfPreprocess,
  timmPreprocess,
  timmHeads,
  type VitCheckpoint,
  type CheckpointLayout,
  type ArchOverrides,
} from './checkpoint.js';
export { resamplePositions } from './positions.js';
export { randomVitWeights } from './random.js';
export { resolveHubCheckpoint, hubCacheDir, HubError, type HubOptions } from './hub.js';
export { plugin, optionsSchema } from './plugin.js';
import { plugin } from './plugin.js';
export default plugin;
