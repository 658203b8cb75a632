import { open, type FileHandle } from 'node:fs/promises';
import { writeFileAtomic } from './atomic.js';
import { decodeHalf } from '../numeric/half.js';
import type { ArrayEntry } from '../types.js';

/** Element types understood when reading; F16 and BF16 are widened to float32. */
export type SafetensorsDtype = 'F64' | 'F32' | 'F16' | 'BF16' | 'I64' | 'I32' | 'U8' | 'BOOL';

const BYTES: Record<SafetensorsDtype, number> = { F64: 8, F32: 4, F16: 2, BF16: 2, I64: 8, I32: 4, U8: 1, BOOL: 1 };

export interface SafetensorsEntry {
  dtype: SafetensorsDtype;
  shape: number[];
  /** Byte range within the data section (after the header). */
  offsets: [number, number];
}

export interface SafetensorsFile {
  path: string;
  metadata: Record<string, string>;
  tensors: Map<string, SafetensorsEntry>;
  /** Reads one tensor; floating types come back as float32 (F64 as float64), integers as Int32Array/Uint8Array. */
  read(name: string): Promise<ArrayEntry>;
  close(): Promise<void>;
}

export class SafetensorsError extends Error {
  constructor(
    readonly file: string,
    message: string,
  ) {
    super(`${file}: ${message}`);
    this.name = 'SafetensorsError';
  }
}

/** The reference implementation's limit: a header larger than this is refused before it is read. */
const MAX_HEADER_BYTES = 100_000_000;

const isIndex = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;

/**
 * The tensors of a parsed header, checked as the format's reference implementation does: known dtypes, shapes of
 * non-negative integers, offsets that are integers with begin <= end spanning exactly shape x dtype bytes, and
 * tensors that tile the data section from its first byte to its last without gap or overlap (so no byte is read
 * as two tensors, and a file cut short or padded is noticed).
 */
function parseHeader(path: string, header: unknown, dataSize: number): { metadata: Record<string, string>; tensors: Map<string, SafetensorsEntry> } {
  if (typeof header !== 'object' || header === null || Array.isArray(header)) {
    throw new SafetensorsError(path, 'header is not a JSON object (not safetensors)');
  }
  const tensors = new Map<string, SafetensorsEntry>();
  const metadata: Record<string, string> = {};
  for (const [name, value] of Object.entries(header)) {
    if (name === '__metadata__') {
      if (typeof value !== 'object' || value === null || Array.isArray(value)) {
        throw new SafetensorsError(path, '"__metadata__" must be an object of strings');
      }
      for (const [key, text] of Object.entries(value)) {
        if (typeof text !== 'string') throw new SafetensorsError(path, `"__metadata__" entry "${key}" is ${JSON.stringify(text)}, not a string`);
        Object.defineProperty(metadata, key, { value: text, enumerable: true, writable: true, configurable: true });
      }
      continue;
    }
    const entry = (typeof value === 'object' && value !== null ? value : {}) as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
    if (typeof entry.dtype !== 'string' || !Object.hasOwn(BYTES, entry.dtype)) {
      throw new SafetensorsError(path, `tensor "${name}" has unsupported dtype ${JSON.stringify(entry.dtype)} (expected one of ${Object.keys(BYTES).join(', ')})`);
    }
    const dtype = entry.dtype as SafetensorsDtype;
    const shape = entry.shape;
    if (!Array.isArray(shape) || !shape.every(isIndex)) {
      throw new SafetensorsError(path, `tensor "${name}" has shape ${JSON.stringify(shape)}; expected an array of non-negative integers`);
    }
    const offsets = entry.data_offsets;
    if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every(isIndex) || offsets[0] > offsets[1]) {
      throw new SafetensorsError(path, `tensor "${name}" has data_offsets ${JSON.stringify(offsets)}; expected [begin, end], integers with 0 <= begin <= end`);
    }
    const expected = shape.reduce((a: number, b: number) => a * b, 1) * BYTES[dtype];
    if (offsets[1] - offsets[0] !== expected) {
      throw new SafetensorsError(path, `tensor "${name}" of shape [${shape}] ${dtype} needs ${expected} bytes but its offsets span ${offsets[1] - offsets[0]}`);
    }
    if (offsets[1] > dataSize) {
      throw new SafetensorsError(path, `tensor "${name}" ends at byte ${offsets[1]} of the data section, which has only ${dataSize} bytes (file truncated?)`);
    }
    tensors.set(name, { dtype, shape: [...shape], offsets: [offsets[0], offsets[1]] });
  }
  const ordered = [...tensors].sort(([, a], [, b]) => a.offsets[0] - b.offsets[0] || a.offsets[1] - b.offsets[1]);
  let end = 0;
  for (const [name, { offsets }] of ordered) {
    if (offsets[0] !== end) {
      throw new SafetensorsError(
        path,
        offsets[0] < end
          ? `tensor "${name}" starts at byte ${offsets[0]}, inside the tensor before it (which ends at ${end}): tensors overlap`
          : `bytes ${end}..${offsets[0]} of the data section belong to no tensor (a gap before "${name}")`,
      );
    }
    end = offsets[1];
  }
  if (end !== dataSize) {
    throw new SafetensorsError(path, `the tensors end at byte ${end} of the data section, but it has ${dataSize} bytes (trailing bytes: damaged or not safetensors)`);
  }
  return { metadata, tensors };
}

/** Reads exactly `buffer.length` bytes at `position`, or says how many the file had. */
async function readExactly(handle: FileHandle, buffer: Buffer, position: number, path: string, what: string): Promise<void> {
  let done = 0;
  while (done < buffer.length) {
    const { bytesRead } = await handle.read(buffer, done, buffer.length - done, position + done);
    if (bytesRead === 0) throw new SafetensorsError(path, `${what}: the file ended after ${done} of ${buffer.length} bytes (it changed or was truncated while open)`);
    done += bytesRead;
  }
}

/** Opens a .safetensors file lazily: the header is parsed and checked now, tensors are read on demand. */
export async function openSafetensors(path: string): Promise<SafetensorsFile> {
  let handle: FileHandle;
  try {
    handle = await open(path, 'r');
  } catch (error) {
    throw new SafetensorsError(path, `cannot open: ${(error as Error).message}`);
  }
  try {
    const { size } = await handle.stat();
    if (size < 8) throw new SafetensorsError(path, `file is ${size} bytes, too short to hold a safetensors header`);
    const lenBuf = Buffer.alloc(8);
    await readExactly(handle, lenBuf, 0, path, 'header length');
    const headerLen = lenBuf.readBigUInt64LE(0);
    if (headerLen > BigInt(MAX_HEADER_BYTES)) {
      throw new SafetensorsError(path, `header length ${headerLen} exceeds the format's limit of ${MAX_HEADER_BYTES} bytes (damaged or not safetensors)`);
    }
    const headerBytes = Number(headerLen);
    if (headerBytes <= 0 || 8 + headerBytes > size) {
      throw new SafetensorsError(path, `header length ${headerBytes} does not fit in a file of ${size} bytes (truncated or not safetensors)`);
    }
    const headerBuf = Buffer.alloc(headerBytes);
    await readExactly(handle, headerBuf, 8, path, 'header');
    let header: unknown;
    try {
      header = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(headerBuf));
    } catch {
      throw new SafetensorsError(path, 'header is not valid UTF-8 JSON (truncated or not safetensors)');
    }
    const dataStart = 8 + headerBytes;
    const { metadata, tensors } = parseHeader(path, header, size - dataStart);
    const read = async (name: string): Promise<ArrayEntry> => {
      const entry = tensors.get(name);
      if (!entry) throw new SafetensorsError(path, `tensor "${name}" is missing`);
      const bytes = Buffer.alloc(entry.offsets[1] - entry.offsets[0]);
      await readExactly(handle, bytes, dataStart + entry.offsets[0], path, `tensor "${name}"`);
      return { dims: [...entry.shape], data: decode(path, name, entry.dtype, bytes) };
    };
    return { path, metadata, tensors, read, close: () => handle.close() };
  } catch (error) {
    await handle.close();
    throw error;
  }
}

/** Reads every tensor of a file. */
export async function readSafetensors(path: string): Promise<{ metadata: Record<string, string>; arrays: Record<string, ArrayEntry> }> {
  const file = await openSafetensors(path);
  try {
    const entries: [string, ArrayEntry][] = [];
    for (const name of file.tensors.keys()) entries.push([name, await file.read(name)]);
    // fromEntries defines own properties, so even a tensor named "__proto__" is an ordinary entry.
    return { metadata: file.metadata, arrays: Object.fromEntries(entries) };
  } finally {
    await file.close();
  }
}

function decode(path: string, name: string, dtype: SafetensorsDtype, bytes: Buffer): ArrayEntry['data'] {
  // Copy into an aligned buffer: a Buffer's offset in its pool need not be a multiple of the element size.
  const aligned = new Uint8Array(bytes.length);
  aligned.set(bytes);
  const buf = aligned.buffer;
  switch (dtype) {
    case 'F32':
      return new Float32Array(buf);
    case 'F64':
      return new Float64Array(buf);
    case 'F16':
    case 'BF16': {
      const src = new Uint16Array(buf);
      const out = new Float32Array(src.length);
      decodeHalf(dtype === 'F16' ? 'float16' : 'bfloat16', src, out);
      return out;
    }
    case 'I32':
      return new Int32Array(buf);
    case 'I64': {
      const src = new BigInt64Array(buf);
      const out = new Int32Array(src.length);
      for (let i = 0; i < src.length; i++) {
        // Int32Array would wrap a larger value silently.
        if (src[i] > 2147483647n || src[i] < -2147483648n) {
          throw new SafetensorsError(path, `tensor "${name}" (I64) holds ${src[i]} at index ${i}, outside the int32 range it is read into`);
        }
        out[i] = Number(src[i]);
      }
      return out;
    }
    case 'U8':
    case 'BOOL':
      return aligned;
  }
}

function dtypeOf(data: ArrayEntry['data']): SafetensorsDtype {
  if (data instanceof Float32Array) return 'F32';
  if (data instanceof Float64Array) return 'F64';
  if (data instanceof Int32Array) return 'I32';
  return 'U8';
}

/** Serialises arrays (float32, float64, int32, uint8) to safetensors bytes; tensor names are sorted. */
export function encodeSafetensors(arrays: Record<string, ArrayEntry>, metadata: Record<string, string> = {}): Uint8Array[] {
  const names = Object.keys(arrays).sort();
  // No prototype: a tensor named "__proto__" must be written as an entry, not swallowed as the object's prototype.
  const header: Record<string, unknown> = Object.create(null);
  if (Object.keys(metadata).length > 0) header.__metadata__ = metadata;
  let offset = 0;
  for (const name of names) {
    const { dims, data } = arrays[name];
    if (!Array.isArray(dims) || !dims.every(isIndex)) throw new Error(`array "${name}": dims ${JSON.stringify(dims)} must be non-negative integers`);
    const count = dims.reduce((a, b) => a * b, 1);
    if (count !== data.length) throw new Error(`array "${name}": dims [${dims}] hold ${count} elements but data has ${data.length}`);
    header[name] = { dtype: dtypeOf(data), shape: dims, data_offsets: [offset, offset + data.byteLength] };
    offset += data.byteLength;
  }
  let json = JSON.stringify(header);
  // The data section starts 8-byte aligned, as the format recommends.
  json += ' '.repeat((8 - ((8 + Buffer.byteLength(json)) % 8)) % 8);
  const headerBytes = Buffer.from(json, 'utf8');
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(headerBytes.length));
  return [len, headerBytes, ...names.map((n) => new Uint8Array(arrays[n].data.buffer, arrays[n].data.byteOffset, arrays[n].data.byteLength))];
}

export async function writeSafetensors(path: string, arrays: Record<string, ArrayEntry>, metadata: Record<string, string> = {}): Promise<void> {
  await writeFileAtomic(path, encodeSafetensors(arrays, metadata));
}
