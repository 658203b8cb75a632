// Public surface of core/src/export (re-exported from core/src/index.ts).
export { exportDetector, EXPORT_FORMAT, type ExportOptions, type ExportedDetector, type ExportedInput, type ExportedOutput } from './detector.js';
export { StageExportContext, EXPORT_OPSET } from './context.js';
export { castGraph, subtractRowGraph, logGaussianDensitiesGraph, logSumExpGraph } from './graph-ops.js';
