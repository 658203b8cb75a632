// Public surface of core/src/onnx (re-exported from core/src/index.ts).
export {
  OnnxGraph,
  onnxAttr,
  tensorElementType,
  elementBytes,
  type OnnxElementType,
  type OnnxDim,
  type OnnxTensorData,
  type OnnxValueType,
  type OnnxValueInfo,
  type OnnxAttributeValue,
  type OnnxNode,
  type OnnxInitializer,
} from './graph.js';
export {
  serializeOnnxModel,
  onnxDataType,
  DEFAULT_EXTERNAL_DATA_THRESHOLD,
  type OnnxSerializeOptions,
  type OnnxExternalDataOptions,
} from './serialize.js';
export { checkSessionFeeds, checkSessionOutputs } from './session-checks.js';
export { appendVitBlock, gemmLinear, type VitBlockWeights, type VitLinearLayer } from './vit-block.js';
