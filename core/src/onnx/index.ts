// Public surface of core/src/onnx (re-exported from core/src/index.ts).
export {};
