export { OnnxRuntime, type OnnxRuntimeOptions, type GraphOptimizationLevel } from './runtime.js';
export { runBatched } from './batch.js';
export { CUDA_INSTALL_COMMAND } from './cuda.js';
export { plugin, optionsSchema, type OnnxRuntimePluginOptions } from './plugin.js';
import { plugin } from './plugin.js';
export default plugin;
