export type * from './types.js';
export { TOKENS, type TokenName } from './tokens.js';
export { writeFileAtomic, writeDirAtomic } from './io/atomic.js';
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
