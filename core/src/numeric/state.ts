// Reading fitted numeric state back from a StageState, with errors that name the stage and the field.
import type { ArrayEntry, JsonObject, JsonValue, StageState } from '../types.js';

/** A float64 ArrayEntry (copied, so the exported state does not alias the model's buffers). */
export function float64Entry(data: ArrayLike<number>, dims: number[]): ArrayEntry {
  return { dims: [...dims], data: Float64Array.from(data) };
}

/** The named array as float64, checked against the expected dimensions (`-1` = any). Float32 entries are widened. */
export function stateArray(state: StageState, name: string, dims: number[], what: string): Float64Array {
  const entry = state.arrays?.[name];
  if (!entry) throw new Error(`${what}: state has no array '${name}'`);
  if (!(entry.data instanceof Float64Array) && !(entry.data instanceof Float32Array)) {
    throw new TypeError(`${what}: array '${name}' must be float32 or float64`);
  }
  if (entry.dims.length !== dims.length || entry.dims.some((d, i) => dims[i] !== -1 && d !== dims[i])) {
    throw new RangeError(`${what}: array '${name}' has dims [${entry.dims.join(', ')}], expected [${dims.map((d) => (d === -1 ? '*' : d)).join(', ')}]`);
  }
  const size = entry.dims.reduce((a, b) => a * b, 1);
  if (entry.data.length !== size) throw new RangeError(`${what}: array '${name}' has ${entry.data.length} values for dims [${entry.dims.join(', ')}]`);
  for (let i = 0; i < entry.data.length; i++) {
    if (!Number.isFinite(entry.data[i])) throw new RangeError(`${what}: array '${name}' holds a non-finite value at flat index ${i}`);
  }
  return Float64Array.from(entry.data);
}

export function stateMeta(state: StageState, what: string, kind: string, version: number): JsonObject {
  const meta = state?.meta;
  if (!meta || typeof meta !== 'object' || Array.isArray(meta)) throw new TypeError(`${what}: state has no meta object`);
  if (meta.kind !== kind) throw new Error(`${what}: state is of kind ${JSON.stringify(meta.kind)}, expected '${kind}'`);
  if (meta.version !== version) throw new Error(`${what}: state version ${JSON.stringify(meta.version)} is not supported (expected ${version})`);
  return meta;
}

export function metaNumber(meta: JsonObject, key: string, what: string, integer = false): number {
  const v: JsonValue | undefined = meta[key];
  if (typeof v !== 'number' || !Number.isFinite(v) || (integer && !Number.isInteger(v))) {
    throw new TypeError(`${what}: meta.${key} must be a finite ${integer ? 'integer' : 'number'}, got ${JSON.stringify(v)}`);
  }
  return v;
}
