// The one home of the detector folder's format: what is written, and what is checked before anything is read.
// Nothing here imports code: plugins are resolved by name elsewhere (core/src/pipeline/open.ts).
import { createHash } from 'node:crypto';
import { lstat, readdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { writeDirAtomic, writeFileAtomic } from '../io/atomic.js';
import { resolveInside, SAFE_NAME } from '../io/paths.js';
import { encodeSafetensors, readSafetensors } from '../io/safetensors.js';
import type { ArrayEntry, JsonObject, PluginRecord, StageState } from '../types.js';
import { sha256File } from './checksum.js';
import { DETECTOR_FORMAT, DETECTOR_FORMAT_VERSION, manifestProblem, type DetectorManifest } from './manifest.js';

export const MANIFEST_FILE = 'manifest.json';
/** The manifest's own checksum, in `sha256sum` format (`sha256sum -c manifest.sha256` checks it). */
export const MANIFEST_CHECKSUM_FILE = 'manifest.sha256';

/** Why a folder could not be loaded as a detector. */
export type DetectorLoadReason = 'not-a-detector' | 'corrupted' | 'newer-format' | 'older-format' | 'invalid-manifest';

export class DetectorLoadError extends Error {
  constructor(
    readonly reason: DetectorLoadReason,
    /** The detector folder. */
    readonly dir: string,
    /** The file at fault, relative to `dir`. */
    readonly file: string,
    detail: string,
  ) {
    super(`cannot load detector ${dir}: ${file}: ${detail}`);
    this.name = 'DetectorLoadError';
  }
}

export interface DetectorToSave {
  /** The resolved config. */
  config: JsonObject;
  /** Package name -> version of what fitted the detector. */
  packages: Record<string, string>;
  /** The plugin of each stage and extra plugin, by name and version (see `DetectorManifest.plugins`). */
  plugins: Record<string, PluginRecord>;
  /** Fitted stages by name; each becomes `<name>.safetensors` plus its meta in the manifest. */
  stages: Record<string, StageState>;
  extra?: JsonObject;
}

export interface LoadedDetector {
  manifest: DetectorManifest;
  stages: Record<string, StageState>;
}

const safeName = new RegExp(SAFE_NAME);

/**
 * Rejects what JSON would silently change (NaN becomes null, a typed array becomes an object, undefined in an array
 * becomes null). An undefined object property is allowed: it is absent after loading, which means the same.
 */
function assertJson(value: unknown, path: string): void {
  if (value === null || typeof value === 'string' || typeof value === 'boolean') return;
  if (typeof value === 'number') {
    if (!Number.isFinite(value)) throw new Error(`writeDetectorFolder: ${path} is ${value}; JSON holds only finite numbers`);
    return;
  }
  if (Array.isArray(value)) {
    value.forEach((v, i) => assertJson(v, `${path}[${i}]`));
    return;
  }
  if (typeof value === 'object') {
    const proto = Object.getPrototypeOf(value);
    if (proto === Object.prototype || proto === null) {
      for (const [k, v] of Object.entries(value)) if (v !== undefined) assertJson(v, `${path}.${k}`);
      return;
    }
  }
  const kind = value === undefined ? 'undefined' : typeof value === 'object' ? `a ${value.constructor?.name ?? 'object'}` : `a ${typeof value}`;
  throw new Error(`writeDetectorFolder: ${path} is ${kind}, which JSON cannot hold (put numeric arrays in the stage's arrays)`);
}

function assertArray(entry: ArrayEntry, where: string): void {
  const { data, dims } = entry ?? {};
  if (!(data instanceof Float32Array || data instanceof Float64Array || data instanceof Int32Array || data instanceof Uint8Array)) {
    throw new Error(`writeDetectorFolder: ${where} must be a Float32Array, Float64Array, Int32Array or Uint8Array`);
  }
  if (!Array.isArray(dims) || !dims.every((d) => Number.isInteger(d) && d >= 0)) {
    throw new Error(`writeDetectorFolder: ${where} dims must be non-negative integers, got ${JSON.stringify(dims)}`);
  }
}

/**
 * Refuses to let a detector replace anything but an empty folder or an older detector: a detector folder is written
 * by replacing the whole folder, so any other content would be lost.
 */
export async function checkDetectorDestination(dir: string): Promise<void> {
  let info;
  try {
    info = await lstat(dir);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw error;
  }
  if (!info.isDirectory()) throw new Error(`${dir} exists and is not a folder; refusing to replace it with a detector (choose a new folder)`);
  const entries = await readdir(dir);
  if (entries.length === 0) return;
  let format: unknown;
  try {
    format = (JSON.parse(await readFile(join(dir, MANIFEST_FILE), 'utf8')) as { format?: unknown }).format;
  } catch {
    // No readable manifest: not a detector.
  }
  if (format === DETECTOR_FORMAT) return;
  const shown = entries.sort().slice(0, 3).join(', ') + (entries.length > 3 ? ', ...' : '');
  throw new Error(
    `${dir} is not empty (${entries.length} entr${entries.length === 1 ? 'y' : 'ies'}: ${shown}) and is not a Transformaly detector; ` +
      'refusing to replace it: choose a new or empty folder',
  );
}

/**
 * Writes a fitted detector as a folder: one safetensors file per stage, `manifest.json` with the config, the plugins
 * by name and version, the stages' metadata and the checksums of the stage files, and `manifest.sha256` covering the
 * manifest. The folder appears complete or not at all, replacing an older detector (never any other folder).
 */
export async function writeDetectorFolder(dir: string, detector: DetectorToSave): Promise<void> {
  assertJson(detector.config, 'config');
  if (detector.extra !== undefined) assertJson(detector.extra, 'extra');
  const lowerNames = new Set<string>();
  for (const [name, state] of Object.entries(detector.stages)) {
    if (!safeName.test(name)) {
      throw new Error(`writeDetectorFolder: stage name "${name}" cannot be a file name (use letters, digits, '.', '_' or '-', not starting with '.')`);
    }
    // Two stages differing only in case would overwrite each other on case-insensitive file systems.
    if (lowerNames.has(name.toLowerCase())) throw new Error(`writeDetectorFolder: stage names "${name}" and another differ only in case`);
    lowerNames.add(name.toLowerCase());
    assertJson(state.meta, `stages.${name}.meta`);
    for (const [arrayName, entry] of Object.entries(state.arrays)) assertArray(entry, `stage "${name}" array "${arrayName}"`);
  }
  await checkDetectorDestination(dir);

  await writeDirAtomic(dir, async (tmp) => {
    const manifest: DetectorManifest = {
      format: DETECTOR_FORMAT,
      formatVersion: DETECTOR_FORMAT_VERSION,
      createdAt: new Date().toISOString(),
      packages: { ...detector.packages },
      config: detector.config,
      plugins: structuredClone(detector.plugins),
      stages: {},
      checksums: {},
    };
    if (detector.extra !== undefined) manifest.extra = detector.extra;
    for (const name of Object.keys(detector.stages).sort()) {
      const state = detector.stages[name];
      const file = `${name}.safetensors`;
      const chunks = encodeSafetensors(state.arrays);
      // Hash the bytes being written rather than re-reading the file.
      const hash = createHash('sha256');
      for (const chunk of chunks) hash.update(chunk);
      await writeFileAtomic(join(tmp, file), chunks);
      manifest.stages[name] = { file, meta: state.meta };
      manifest.checksums[file] = hash.digest('hex');
    }
    const problem = manifestProblem(manifest);
    if (problem) throw new Error(`writeDetectorFolder: the manifest to write is invalid: ${problem}`);
    const text = JSON.stringify(manifest, null, 2) + '\n';
    await writeFileAtomic(join(tmp, MANIFEST_FILE), text);
    await writeFileAtomic(join(tmp, MANIFEST_CHECKSUM_FILE), `${createHash('sha256').update(text).digest('hex')}  ${MANIFEST_FILE}\n`);
  });
}

/**
 * Reads and checks a detector folder written by `writeDetectorFolder`: format and version, the manifest's checksum,
 * its schema, and every stage file's checksum, before anything is used. Reads data only; imports nothing.
 */
export async function readDetectorFolder(dir: string): Promise<LoadedDetector> {
  const manifest = await readManifest(dir);
  for (const [file, expected] of Object.entries(manifest.checksums)) {
    let actual: string;
    try {
      actual = await sha256File(resolveInside(dir, file));
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      const detail = code === 'ENOENT' ? 'file is missing (the detector folder is incomplete)' : `cannot read: ${(error as Error).message}`;
      throw new DetectorLoadError('corrupted', dir, file, detail);
    }
    if (actual !== expected) {
      throw new DetectorLoadError('corrupted', dir, file, `checksum mismatch (sha256 ${actual}, manifest says ${expected}): the file was modified or damaged`);
    }
  }
  const stages: Record<string, StageState> = {};
  for (const [name, { file, meta }] of Object.entries(manifest.stages)) {
    if (!(file in manifest.checksums)) {
      throw new DetectorLoadError('invalid-manifest', dir, MANIFEST_FILE, `stage "${name}" file "${file}" has no checksum`);
    }
    let arrays: Record<string, ArrayEntry>;
    try {
      ({ arrays } = await readSafetensors(resolveInside(dir, file)));
    } catch (error) {
      throw new DetectorLoadError('corrupted', dir, file, (error as Error).message);
    }
    stages[name] = { meta, arrays };
  }
  return { manifest, stages };
}

/** The manifest's sha256 as `manifest.sha256` records it; throws a `DetectorLoadError` when it cannot be read. */
async function recordedManifestChecksum(dir: string): Promise<string> {
  let text: string;
  try {
    text = await readFile(join(dir, MANIFEST_CHECKSUM_FILE), 'utf8');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    throw new DetectorLoadError(
      'corrupted',
      dir,
      MANIFEST_CHECKSUM_FILE,
      code === 'ENOENT' ? 'missing, so the manifest cannot be verified (the detector folder is incomplete)' : `cannot read: ${(error as Error).message}`,
    );
  }
  const match = /^([0-9a-f]{64}) [ *]manifest\.json\n?$/.exec(text);
  if (!match) throw new DetectorLoadError('corrupted', dir, MANIFEST_CHECKSUM_FILE, `expected "<sha256>  ${MANIFEST_FILE}", found ${JSON.stringify(text.slice(0, 100))}`);
  return match[1];
}

async function readManifest(dir: string): Promise<DetectorManifest> {
  let bytes: Buffer;
  try {
    bytes = await readFile(join(dir, MANIFEST_FILE));
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') {
      throw new DetectorLoadError('not-a-detector', dir, MANIFEST_FILE, `cannot read: ${(error as Error).message}`);
    }
    const exists = await stat(dir).then(
      (s) => s.isDirectory(),
      () => false,
    );
    throw new DetectorLoadError(
      'not-a-detector',
      dir,
      MANIFEST_FILE,
      exists ? 'missing: this folder is not a Transformaly detector' : 'the detector folder does not exist',
    );
  }
  let value: unknown;
  try {
    value = JSON.parse(bytes.toString('utf8'));
  } catch (error) {
    throw new DetectorLoadError('corrupted', dir, MANIFEST_FILE, `not valid JSON (${(error as Error).message})`);
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new DetectorLoadError('not-a-detector', dir, MANIFEST_FILE, 'is not a JSON object: this folder is not a Transformaly detector');
  }
  const { format, formatVersion } = value as { format?: unknown; formatVersion?: unknown };
  // Identity and version first: a foreign, newer or older manifest should be named as such, not as a schema violation.
  if (format !== DETECTOR_FORMAT) {
    throw new DetectorLoadError(
      'not-a-detector',
      dir,
      MANIFEST_FILE,
      `format is ${JSON.stringify(format ?? null)}, not "${DETECTOR_FORMAT}": this folder is not a Transformaly detector`,
    );
  }
  if (typeof formatVersion === 'number' && Number.isInteger(formatVersion)) {
    if (formatVersion > DETECTOR_FORMAT_VERSION) {
      throw new DetectorLoadError(
        'newer-format',
        dir,
        MANIFEST_FILE,
        `written in detector format version ${formatVersion}, but this version of @transformaly/core reads format version ${DETECTOR_FORMAT_VERSION}; upgrade Transformaly to load it`,
      );
    }
    if (formatVersion < DETECTOR_FORMAT_VERSION) {
      throw new DetectorLoadError(
        'older-format',
        dir,
        MANIFEST_FILE,
        `written in detector format version ${formatVersion}, which is no longer read: its manifest has no checksum (an edited ` +
          `threshold would go unnoticed) and it names plugins by file path, which loading would have to import. ` +
          'Fit the detector again (transformaly fit, or transformaly run) to write format version 2',
      );
    }
  }
  const actual = createHash('sha256').update(bytes).digest('hex');
  const recorded = await recordedManifestChecksum(dir);
  if (actual !== recorded) {
    throw new DetectorLoadError(
      'corrupted',
      dir,
      MANIFEST_FILE,
      `checksum mismatch (sha256 ${actual}, ${MANIFEST_CHECKSUM_FILE} says ${recorded}): the manifest was edited or damaged; ` +
        'a detector (its threshold included) is changed only by fitting it again',
    );
  }
  const problem = manifestProblem(value);
  if (problem) throw new DetectorLoadError('invalid-manifest', dir, MANIFEST_FILE, problem);
  return value as DetectorManifest;
}
