// Training of student blocks on onnxruntime through explicit backward graphs.
export { createOnnxStudentTrainer, type OnnxTrainerOptions } from './trainer.js';
export { buildStudentScoringGraph, createOnnxStudentScorer } from './scorer.js';
// The trainer contract's checks and checkpoint format live in core, shared with every runtime.
export { TRAINER_STATE_FORMAT, checkAdamSettings, checkBlockSpec } from '@transformaly/core';
export { adamUpdate } from './adam.js';
export {
  buildStudentTrainingGraph,
  buildStudentForwardGraph,
  studentWeightShapes,
  STUDENT_INPUT,
  STUDENT_TARGET,
  STUDENT_OPSET_IMPORTS,
  type StudentTrainingGraph,
} from './student-block.js';
export { Tape, type Var } from './autodiff.js';
export {
  addGrad,
  subGrad,
  mulGrad,
  matMulGrad,
  gemmGrad,
  layerNormGrad,
  softmaxGrad,
  geluErfGrad,
  reshapeGrad,
  transposeGrad,
  reduceMeanGrad,
  splitGrad,
  emitMatMul,
  sumLeadingAxes,
  sumToShape,
  broadcastShapes,
  shapeTensor,
  type Operand,
  type Shape,
  type GemmAttributes,
  type MatMulOptions,
} from './grad-rules.js';
