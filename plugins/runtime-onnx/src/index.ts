export { OnnxRuntime, type OnnxRuntimeOptions } from './runtime.js';
export {
  createOrtSession,
  ortSessionOptions,
  resolveSessionSettings,
  type GraphOptimizationLevel,
  type OrtSessionSettings,
} from './sessions.js';
export { runBatched } from './batch.js';
export { CUDA_INSTALL_COMMAND } from './cuda.js';
export { plugin, optionsSchema, type OnnxRuntimePluginOptions } from './plugin.js';
import { plugin } from './plugin.js';
export default plugin;
