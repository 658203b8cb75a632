import { existsSync } from 'node:fs';
import { copyFile, mkdir, readdir, readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { exportDetector, writeDirAtomic, writeFileAtomic, type Detector, type ExportedDetector, type OpenedDetector } from '@transformaly/core';
import { IMPORT_MAP, indexHtml } from './html.js';

/** `format` of a web folder's `detector.json`: what tells an older web export (which may be replaced) from other folders. */
export const WEB_FORMAT = 'transformaly-web/1';

/** The model file of a web folder. */
export const WEB_MODEL = 'detector.onnx';

export interface WebFolder {
  dir: string;
  /** The exported model (float32 NCHW input; the page preprocesses). */
  model: ExportedDetector;
  /** Every file of the folder, relative to it. */
  files: string[];
  /** The onnxruntime-web version whose wasm files were copied. */
  onnxruntimeWeb: string;
}

const require = createRequire(import.meta.url);
const packageRoot = fileURLToPath(new URL('..', import.meta.url));

/**
 * Writes a static folder that scores images in a browser, offline: `index.html`, the page's script, the detector as
 * one ONNX model with `detector.json` (its metadata), the project's preprocessing module, and onnxruntime-web's
 * WebAssembly build copied from the installed package. Any static file server works (wasm needs http, not file://).
 * The folder appears whole or not at all; it may replace an older web export, never another folder.
 */
export async function writeWebFolder(dir: string, source: Detector | OpenedDetector): Promise<WebFolder> {
  dir = resolve(dir);
  await checkReplaceable(dir);
  const assets = await locateAssets();
  let model: ExportedDetector | undefined;
  await writeDirAtomic(dir, async (tmp) => {
    // A browser loads one file: a detector whose weights exceed protobuf's limit cannot be a web export.
    model = await exportDetector(source, { out: join(tmp, WEB_MODEL), externalDataThreshold: false });
    const info: Record<string, unknown> = { web: WEB_FORMAT };
    for (const [key, value] of Object.entries(model.metadata)) info[key] = ['input', 'preprocessing', 'outputs', 'provenance'].includes(key) ? JSON.parse(value) : value;
    info.threshold = model.threshold;
    await writeFileAtomic(join(tmp, 'detector.json'), `${JSON.stringify(info, null, 2)}\n`);
    const untrained = JSON.parse(model.metadata.provenance).backbone.untrained as boolean;
    await writeFileAtomic(join(tmp, 'index.html'), indexHtml(`Transformaly detector${untrained ? ' (UNTRAINED backbone)' : ''}`));
    await writeFileAtomic(join(tmp, 'app.js'), await readFile(assets.page));
    await mkdir(join(tmp, 'lib'));
    for (const [name, file] of Object.entries(assets.preprocessing)) await writeFileAtomic(join(tmp, 'lib', name), stripSourceMap(await readFile(file, 'utf8')));
    await mkdir(join(tmp, 'ort'));
    for (const file of assets.ort.files) await copyFile(join(assets.ort.dir, file), join(tmp, 'ort', file));
    await writeFileAtomic(join(tmp, 'README.txt'), readme(assets.ort.version));
  });
  return { dir, model: { ...model!, file: join(dir, WEB_MODEL) }, files: await listFiles(dir), onnxruntimeWeb: assets.ort.version };
}

/** A folder the export may take: absent, empty, or an older web export. */
async function checkReplaceable(dir: string): Promise<void> {
  if (!existsSync(dir)) return;
  let entries: string[];
  try {
    entries = await readdir(dir);
  } catch (error) {
    throw new Error(`--web ${dir}: ${(error as NodeJS.ErrnoException).code === 'ENOTDIR' ? 'is a file, not a folder' : (error as Error).message}`, { cause: error });
  }
  if (entries.length === 0) return;
  let format: unknown;
  try {
    format = JSON.parse(await readFile(join(dir, 'detector.json'), 'utf8')).web;
  } catch {
    format = undefined;
  }
  if (format !== WEB_FORMAT) throw new Error(`--web ${dir}: the folder holds other files (${entries.slice(0, 3).join(', ')}${entries.length > 3 ? ', ...' : ''}); give a new or empty folder, or an older web export to replace`);
}

/** The files the folder is made of, from the installed packages. */
async function locateAssets() {
  const page = join(packageRoot, 'dist', 'page', 'app.js');
  // The core's built preprocessing module and what it imports: the page runs the very code `score` runs. (Resolved
  // through the package's root: a test runner may resolve the package to its sources.)
  const coreDist = join(packageRootOf(require.resolve('@transformaly/core')), 'dist');
  const preprocessing = { 'resize-normalize.js': join(coreDist, 'data', 'resize-normalize.js'), 'resize.js': join(coreDist, 'data', 'resize.js') };
  for (const file of [page, ...Object.values(preprocessing)]) {
    if (!existsSync(file)) throw new Error(`${file} is missing: build the packages first (npm run build)`);
  }
  for (const [name, file] of Object.entries(preprocessing)) {
    const imports = [...(await readFile(file, 'utf8')).matchAll(/^\s*(?:import|export)\b[^;]*?\bfrom\s+['"]([^'"]+)['"]/gm)].map((m) => m[1]);
    const foreign = imports.filter((specifier) => !(specifier.startsWith('./') && specifier.slice(2) in preprocessing));
    if (foreign.length > 0) throw new Error(`${file} (${name} of the web page) imports ${foreign.join(', ')}; the page ships only ${Object.keys(preprocessing).join(', ')}`);
  }
  const wasm = require.resolve('onnxruntime-web/ort-wasm-simd-threaded.wasm');
  const ortDir = dirname(wasm);
  const version = JSON.parse(await readFile(join(ortDir, '..', 'package.json'), 'utf8')).version as string;
  return { page, preprocessing, ort: { dir: ortDir, version, files: ['ort.wasm.min.mjs', 'ort-wasm-simd-threaded.mjs', 'ort-wasm-simd-threaded.wasm'] } };
}

function packageRootOf(file: string): string {
  for (let dir = dirname(file); dir !== dirname(dir); dir = dirname(dir)) if (existsSync(join(dir, 'package.json'))) return dir;
  throw new Error(`no package.json above ${file}`);
}

/** The copied modules' source maps are not shipped, so the comment pointing at them goes. */
function stripSourceMap(code: string): string {
  return code.replace(/\n\/\/# sourceMappingURL=\S+\s*$/, '\n');
}

function readme(ortVersion: string): string {
  return `A Transformaly detector that scores images in the browser (written by transformaly export --web).

Serve this folder with any static file server and open index.html, e.g.
  python3 -m http.server -d . 8000     (then http://localhost:8000/)
  npx http-server .
WebAssembly needs http(s); opening index.html as a file does not work. Nothing is loaded from outside this folder.

  index.html, app.js     the page
  detector.onnx          the detector as one ONNX model; detector.json holds its metadata
  lib/                   Transformaly's preprocessing (resize and normalisation), as the command line runs it
  ort/                   onnxruntime-web ${ortVersion} (WebAssembly build), MIT license, Copyright (c) Microsoft Corporation

${Object.entries(IMPORT_MAP.imports)
  .map(([name, path]) => `The page imports ${name} from ${path}.`)
  .join('\n')}
`;
}

async function listFiles(dir: string, prefix = ''): Promise<string[]> {
  const out: string[] = [];
  for (const entry of await readdir(join(dir, prefix), { withFileTypes: true })) {
    const path = prefix ? `${prefix}/${entry.name}` : entry.name;
    if (entry.isDirectory()) out.push(...(await listFiles(dir, path)));
    else out.push(path);
  }
  return out.sort();
}
