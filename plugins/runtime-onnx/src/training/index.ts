// Training of student blocks on onnxruntime through explicit backward graphs.
export { createOnnxStudentTrainer, type OnnxTrainerOptions } from './trainer.js';
export { TRAINER_STATE_FORMAT } from '@transformaly/core';
export { adamUpdate, checkAdamSettings } from './adam.js';
export {
  buildStudentTrainingGraph,
  buildStudentForwardGraph,
  studentWeightShapes,
  checkBlockSpec,
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
