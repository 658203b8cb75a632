// Public surface of core/src/distill (re-exported from core/src/index.ts).
export { TransformalyDistiller } from './distiller.js';
export { trainStudents, type TrainingLoopSettings, type TrainedStudents } from './training-loop.js';
export { streamTeacherTaps, type BlockTap, type TapBatch, type TapSource } from './taps.js';
export {
  TeacherCache,
  defaultCacheMemoryBytes,
  type CachedImages,
  type CacheSplit,
  type IndexedPixels,
  type RecordedBatch,
  type TeacherCacheSettings,
} from './teacher-cache.js';
export { distillerPlugin } from './plugin.js';
export {
  distillerOptionsSchema,
  resolveDistillerOptions,
  selectBlocks,
  type BlockSelection,
  type DistillerOptions,
  type ResolvedDistillerOptions,
  type TeacherCacheOptions,
} from './options.js';
export {
  checkAdamSettings,
  checkBlockSpec,
  checkInitialWeights,
  checkTrainerArguments,
  checkTrainingBatch,
  decodeTrainerState,
  encodeTrainerState,
  TRAINER_STATE_FORMAT,
  type TrainerArrayKind,
} from './trainer-contract.js';
export { EngineStudentTrainer, type StudentEngine, type StudentGradients } from './student-trainer.js';
export { initStudentWeights, studentShapes, studentSeed } from './init.js';
export { CHECKPOINT_FILE, readCheckpoint, type Checkpoint, type LossHistory, type StudentCheckpoint } from './checkpoint.js';
