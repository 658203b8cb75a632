// Public surface of core/src/data (re-exported from core/src/index.ts).
export { ImageDecodeError, DataSourceError } from './errors.js';
export { decodeImage, DEFAULT_MAX_PIXELS, type DecodeOptions } from './decode.js';
export { IMAGE_EXTENSIONS, isImageFile, listImages } from './files.js';
export {
  FolderSource,
  NormalAbnormalSource,
  folderSourceSchema,
  normalAbnormalSourceSchema,
  type FolderSourceOptions,
  type NormalAbnormalSourceOptions,
} from './folder.js';
export { IdxSource, idxSourceSchema, FASHION_MNIST_CLASSES, type IdxSourceOptions } from './idx.js';
export {
  CifarSource,
  cifarSourceSchema,
  cifar10SourceSchema,
  cifar100SourceSchema,
  type CifarSourceOptions,
} from './cifar.js';
export { createPreprocessor, preprocessSpecSchema } from './preprocess.js';
export { batches, type Batch, type BatchOptions, type SkippedFile } from './batches.js';
export { makeCases, heldOutSplit, type CaseOptions } from './protocol.js';
