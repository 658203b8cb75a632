import { open, type FileHandle } from 'node:fs/promises';
import { writeFileAtomic } from './atomic.js';
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
    await handle.read(lenBuf, 0, 8, 0);
    const headerLen = Number(lenBuf.readBigUInt64LE(0));
    if (headerLen <= 0 || 8 + headerLen > size) {
      throw new SafetensorsError(path, `header length ${headerLen} does not fit in a file of ${size} bytes (truncated or not safetensors)`);
    }
    const headerBuf = Buffer.alloc(headerLen);
    await handle.read(headerBuf, 0, headerLen, 8);
    let header: Record<string, unknown>;
    try {
      header = JSON.parse(headerBuf.toString('utf8'));
    } catch {
      throw new SafetensorsError(path, 'header is not valid JSON (truncated or not safetensors)');
    }
    const dataStart = 8 + headerLen;
    const dataSize = size - dataStart;
    const tensors = new Map<string, SafetensorsEntry>();
    let metadata: Record<string, string> = {};
    for (const [name, value] of Object.entries(header)) {
      if (name === '__metadata__') {
        metadata = (value ?? {}) as Record<string, string>;
        continue;
      }
      const entry = value as { dtype?: string; shape?: number[]; data_offsets?: [number, number] };
      if (!entry || typeof entry.dtype !== 'string' || !(entry.dtype in BYTES)) {
        throw new SafetensorsError(path, `tensor "${name}" has unsupported dtype ${JSON.stringify(entry?.dtype)} (expected one of ${Object.keys(BYTES).join(', ')})`);
      }
      const dtype = entry.dtype as SafetensorsDtype;
      const shape = entry.shape ?? [];
      const offsets = entry.data_offsets;
      if (!Array.isArray(offsets) || offsets.length !== 2) throw new SafetensorsError(path, `tensor "${name}" has no data_offsets`);
      const expected = shape.reduce((a, b) => a * b, 1) * BYTES[dtype];
      if (offsets[1] - offsets[0] !== expected) {
        throw new SafetensorsError(path, `tensor "${name}" of shape [${shape}] ${dtype} needs ${expected} bytes but its offsets span ${offsets[1] - offsets[0]}`);
      }
      if (offsets[1] > dataSize) {
        throw new SafetensorsError(path, `tensor "${name}" ends at byte ${offsets[1]} of the data section, which has only ${dataSize} bytes (file truncated?)`);
      }
      tensors.set(name, { dtype, shape, offsets });
    }
    const read = async (name: string): Promise<ArrayEntry> => {
      const entry = tensors.get(name);
      if (!entry) throw new SafetensorsError(path, `tensor "${name}" is missing`);
      const bytes = Buffer.alloc(entry.offsets[1] - entry.offsets[0]);
      if (bytes.length > 0) await handle.read(bytes, 0, bytes.length, dataStart + entry.offsets[0]);
      return { dims: entry.shape, data: decode(entry.dtype, bytes) };
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
    const arrays: Record<string, ArrayEntry> = {};
    for (const name of file.tensors.keys()) arrays[name] = await file.read(name);
    return { metadata: file.metadata, arrays };
  } finally {
    await file.close();
  }
}

function decode(dtype: SafetensorsDtype, bytes: Buffer): ArrayEntry['data'] {
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
      return f16ToF32(new Uint16Array(buf));
    case 'BF16': {
      const src = new Uint16Array(buf);
      const out = new Uint32Array(src.length);
      for (let i = 0; i < src.length; i++) out[i] = src[i] << 16;
      return new Float32Array(out.buffer);
    }
    case 'I32':
      return new Int32Array(buf);
    case 'I64': {
      const src = new BigInt64Array(buf);
      const out = new Int32Array(src.length);
      for (let i = 0; i < src.length; i++) out[i] = Number(src[i]);
      return out;
    }
    case 'U8':
    case 'BOOL':
      return aligned;
  }
}

function f16ToF32(src: Uint16Array): Float32Array {
  const out = new Float32Array(src.length);
  for (let i = 0; i < src.length; i++) {
    const h = src[i];
    const sign = h & 0x8000 ? -1 : 1;
    const exp = (h >> 10) & 0x1f;
    const frac = h & 0x3ff;
    if (exp === 0) out[i] = sign * frac * 2 ** -24;
    else if (exp === 31) out[i] = frac ? NaN : sign * Infinity;
    else out[i] = sign * (1 + frac / 1024) * 2 ** (exp - 15);
  }
  return out;
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
  const header: Record<string, unknown> = {};
  if (Object.keys(metadata).length > 0) header.__metadata__ = metadata;
  let offset = 0;
  for (const name of names) {
    const { dims, data } = arrays[name];
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
