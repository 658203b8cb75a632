import { createHash } from 'node:crypto';
import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { writeDirAtomic, writeFileAtomic } from '../io/atomic.js';
import { encodeSafetensors, readSafetensors } from '../io/safetensors.js';
import type { ArrayEntry, JsonObject, StageState } from '../types.js';
import { sha256File } from './checksum.js';
import { DETECTOR_FORMAT, DETECTOR_FORMAT_VERSION, SAFE_NAME, manifestProblem, type DetectorManifest } from './manifest.js';

export const MANIFEST_FILE = 'manifest.json';

/** Why a folder could not be loaded as a detector. */
export type DetectorLoadReason = 'not-a-detector' | 'corrupted' | 'newer-format' | 'invalid-manifest';

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
    if (!Number.isFinite(value)) throw new Error(`saveDetector: ${path} is ${value}; JSON holds only finite numbers`);
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
  throw new Error(`saveDetector: ${path} is ${kind}, which JSON cannot hold (put numeric arrays in the stage's arrays)`);
}

function assertArray(entry: ArrayEntry, where: string): void {
  const { data, dims } = entry ?? {};
  if (!(data instanceof Float32Array || data instanceof Float64Array || data instanceof Int32Array || data instanceof Uint8Array)) {
    throw new Error(`saveDetector: ${where} must be a Float32Array, Float64Array, Int32Array or Uint8Array`);
  }
  if (!Array.isArray(dims) || !dims.every((d) => Number.isInteger(d) && d >= 0)) {
    throw new Error(`saveDetector: ${where} dims must be non-negative integers, got ${JSON.stringify(dims)}`);
  }
}

/**
 * Writes a fitted detector as a folder: one safetensors file per stage and `manifest.json` with the config, the
 * stages' metadata and checksums. The folder appears complete or not at all, replacing any older one.
 */
export async function saveDetector(dir: string, detector: DetectorToSave): Promise<void> {
  assertJson(detector.config, 'config');
  if (detector.extra !== undefined) assertJson(detector.extra, 'extra');
  const lowerNames = new Set<string>();
  for (const [name, state] of Object.entries(detector.stages)) {
    if (!safeName.test(name)) {
      throw new Error(`saveDetector: stage name "${name}" cannot be a file name (use letters, digits, '.', '_' or '-', not starting with '.')`);
    }
    // Two stages differing only in case would overwrite each other on case-insensitive file systems.
    if (lowerNames.has(name.toLowerCase())) throw new Error(`saveDetector: stage names "${name}" and another differ only in case`);
    lowerNames.add(name.toLowerCase());
    assertJson(state.meta, `stages.${name}.meta`);
    for (const [arrayName, entry] of Object.entries(state.arrays)) assertArray(entry, `stage "${name}" array "${arrayName}"`);
  }

  await writeDirAtomic(dir, async (tmp) => {
    const manifest: DetectorManifest = {
      format: DETECTOR_FORMAT,
      formatVersion: DETECTOR_FORMAT_VERSION,
      createdAt: new Date().toISOString(),
      packages: { ...detector.packages },
      config: detector.config,
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
    if (problem) throw new Error(`saveDetector: the manifest to write is invalid: ${problem}`);
    await writeFileAtomic(join(tmp, MANIFEST_FILE), JSON.stringify(manifest, null, 2) + '\n');
  });
}

/** Reads and checks a detector folder written by `saveDetector`: manifest schema, every checksum, every file. */
export async function loadDetector(dir: string): Promise<LoadedDetector> {
  const manifest = await readManifest(dir);
  for (const [file, expected] of Object.entries(manifest.checksums)) {
    const path = join(dir, file);
    let actual: string;
    try {
      actual = await sha256File(path);
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
      ({ arrays } = await readSafetensors(join(dir, file)));
    } catch (error) {
      throw new DetectorLoadError('corrupted', dir, file, (error as Error).message);
    }
    stages[name] = { meta, arrays };
  }
  return { manifest, stages };
}

async function readManifest(dir: string): Promise<DetectorManifest> {
  let text: string;
  try {
    text = await readFile(join(dir, MANIFEST_FILE), 'utf8');
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
    value = JSON.parse(text);
  } catch (error) {
    throw new DetectorLoadError('corrupted', dir, MANIFEST_FILE, `not valid JSON (${(error as Error).message})`);
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new DetectorLoadError('not-a-detector', dir, MANIFEST_FILE, 'is not a JSON object: this folder is not a Transformaly detector');
  }
  const { format, formatVersion } = value as { format?: unknown; formatVersion?: unknown };
  // Identity and version first: a foreign or newer manifest should be named as such, not as a schema violation.
  if (format !== DETECTOR_FORMAT) {
    throw new DetectorLoadError(
      'not-a-detector',
      dir,
      MANIFEST_FILE,
      `format is ${JSON.stringify(format ?? null)}, not "${DETECTOR_FORMAT}": this folder is not a Transformaly detector`,
    );
  }
  if (typeof formatVersion === 'number' && Number.isInteger(formatVersion) && formatVersion > DETECTOR_FORMAT_VERSION) {
    throw new DetectorLoadError(
      'newer-format',
      dir,
      MANIFEST_FILE,
      `written in detector format version ${formatVersion}, but this version of @transformaly/core reads format versions up to ${DETECTOR_FORMAT_VERSION}; upgrade Transformaly to load it`,
    );
  }
  const problem = manifestProblem(value);
  if (problem) throw new DetectorLoadError('invalid-manifest', dir, MANIFEST_FILE, problem);
  return value as DetectorManifest;
}
