// @transformaly/web: `transformaly export --web`, a static folder that scores images with an exported detector in a
// browser (onnxruntime-web, WebAssembly), offline.
export { writeWebFolder, WEB_FORMAT, WEB_MODEL, type WebFolder } from './write.js';
