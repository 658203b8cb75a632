// Public surface of core/src/persistence (re-exported from core/src/index.ts).
export {
  writeDetectorFolder,
  readDetectorFolder,
  checkDetectorDestination,
  DetectorLoadError,
  MANIFEST_FILE,
  MANIFEST_CHECKSUM_FILE,
  type DetectorLoadReason,
  type DetectorToSave,
  type LoadedDetector,
} from './detector.js';
export { DETECTOR_FORMAT, DETECTOR_FORMAT_VERSION, type DetectorManifest } from './manifest.js';
export { sha256File } from './checksum.js';
