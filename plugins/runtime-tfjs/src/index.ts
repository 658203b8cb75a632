export { TfjsRuntime, type TfjsRuntimeOptions } from './runtime.js';
export { TRAINER_STATE_FORMAT } from '@transformaly/core';
export { BACKEND_NAMES, NATIVE_PACKAGES, wasmBinaryDir, type BackendChoice, type TfjsBackendName } from './backend.js';
export { ADAPTER_POLICIES, type AdapterDescription, type AdapterPolicy } from './webgpu/device.js';
export { OPS as ONNX_OPS } from './onnx/ops.js';
export {
  bindingMicroBatch,
  createTfjsStudentTrainer,
  trainingBytesPerImage,
  wasmMicroBatch,
  WASM_WORKING_SET_BYTES,
  type TfjsTrainerOptions,
} from './training/trainer.js';
export {
  plugin,
  optionsSchema,
  studentsPlugin,
  studentsOptionsSchema,
  type TfjsRuntimePluginOptions,
  type TfjsStudentsOptions,
} from './plugin.js';
import { plugin } from './plugin.js';
export default plugin;
