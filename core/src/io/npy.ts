// NumPy .npy files (format spec: numpy/lib/format.py): a magic string, a version, a little-endian header length, a
// Python-literal dict header padded with spaces and ended by '\n' so the data starts 64-byte aligned, then the raw data.
import { readFile } from 'node:fs/promises';
import { endianness } from 'node:os';
import { writeFileAtomic } from './atomic.js';

const MAGIC = Uint8Array.from([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59]); // \x93NUMPY
const ALIGN = 64;
const LITTLE_ENDIAN_HOST = endianness() === 'LE';

/** An array read from a .npy file: 1-D (`[n]`) or 2-D (`[rows, cols]`), C order. */
export interface NpyArray {
  shape: number[];
  data: Float32Array | Float64Array;
}

/** The v1.0 header (magic through the terminating '\n') of a C-order little-endian float32 array of `shape`. */
export function npyHeader(shape: readonly number[]): Uint8Array {
  const dims = shape.length === 1 ? `(${shape[0]},)` : `(${shape.join(', ')})`;
  const dict = `{'descr': '<f4', 'fortran_order': False, 'shape': ${dims}, }`;
  const unpadded = MAGIC.length + 2 + 2 + dict.length + 1;
  const total = Math.ceil(unpadded / ALIGN) * ALIGN;
  const headerLength = total - MAGIC.length - 4;
  if (headerLength > 0xffff) throw new Error(`npy: header of shape (${shape.join(', ')}) too long for format 1.0`);
  const bytes = new Uint8Array(total);
  bytes.set(MAGIC, 0);
  bytes[6] = 1;
  bytes[7] = 0;
  bytes[8] = headerLength & 0xff;
  bytes[9] = headerLength >> 8;
  const text = dict + ' '.repeat(total - unpadded) + '\n';
  bytes.set(Buffer.from(text, 'latin1'), 10);
  return bytes;
}

/** Writes `matrix` as a float32 `(rows, cols)` C-order .npy file, atomically (readers never see half a file). */
export async function writeNpy(path: string, matrix: { rows: number; cols: number; data: Float32Array }): Promise<void> {
  const { rows, cols, data } = matrix;
  if (!Number.isInteger(rows) || rows < 0 || !Number.isInteger(cols) || cols < 0) {
    throw new Error(`npy: ${path}: rows and cols must be non-negative integers, got ${rows} x ${cols}`);
  }
  if (!(data instanceof Float32Array)) throw new Error(`npy: ${path}: data must be a Float32Array`);
  if (data.length !== rows * cols) {
    throw new Error(`npy: ${path}: ${data.length} values do not fill ${rows} x ${cols}`);
  }
  let body = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  if (!LITTLE_ENDIAN_HOST) {
    body = new Uint8Array(data.byteLength);
    const view = new DataView(body.buffer);
    for (let i = 0; i < data.length; i++) view.setFloat32(i * 4, data[i], true);
  }
  await writeFileAtomic(path, [npyHeader([rows, cols]), body]);
}

function parseHeader(text: string, path: string): { descr: string; fortran: boolean; shape: number[] } {
  const descr = /'descr'\s*:\s*'([^']*)'/.exec(text)?.[1];
  const fortran = /'fortran_order'\s*:\s*(True|False)/.exec(text)?.[1];
  const shapeText = /'shape'\s*:\s*\(([^)]*)\)/.exec(text)?.[1];
  if (descr === undefined || fortran === undefined || shapeText === undefined) {
    throw new Error(`npy: ${path}: malformed header ${JSON.stringify(text.trim())}`);
  }
  const shape = shapeText
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '')
    .map((s) => {
      const n = Number(s.replace(/L$/, ''));
      if (!Number.isInteger(n) || n < 0) throw new Error(`npy: ${path}: bad dimension '${s}' in shape (${shapeText})`);
      return n;
    });
  return { descr, fortran: fortran === 'True', shape };
}

/** Reads a 1-D or 2-D float32 or float64 .npy file (either byte order, C or Fortran order) into C order. */
export async function readNpy(path: string): Promise<NpyArray> {
  const file = await readFile(path);
  if (file.length < 10 || !MAGIC.every((b, i) => file[i] === b)) throw new Error(`npy: ${path}: not a .npy file`);
  const major = file[6];
  let headerLength: number;
  let headerStart: number;
  if (major === 1) {
    headerLength = file.readUInt16LE(8);
    headerStart = 10;
  } else if (major === 2 || major === 3) {
    headerLength = file.readUInt32LE(8);
    headerStart = 12;
  } else {
    throw new Error(`npy: ${path}: unsupported format version ${major}.${file[7]}`);
  }
  const dataStart = headerStart + headerLength;
  if (dataStart > file.length) throw new Error(`npy: ${path}: truncated header`);
  const header = parseHeader(file.subarray(headerStart, dataStart).toString(major === 3 ? 'utf8' : 'latin1'), path);
  const { descr, fortran, shape } = header;
  const kind = /^([<>|=])f([48])$/.exec(descr);
  if (!kind) throw new Error(`npy: ${path}: dtype '${descr}' is not float32 or float64`);
  if (shape.length !== 1 && shape.length !== 2) {
    throw new Error(`npy: ${path}: shape (${shape.join(', ')}) is not 1-D or 2-D`);
  }
  const width = Number(kind[2]);
  const littleEndian = kind[1] !== '>';
  const count = shape.reduce((a, b) => a * b, 1);
  if (file.length - dataStart !== count * width) {
    throw new Error(
      `npy: ${path}: expected ${count * width} data bytes for shape (${shape.join(', ')}) of ${descr}, found ${file.length - dataStart}`,
    );
  }
  const view = new DataView(file.buffer, file.byteOffset + dataStart, count * width);
  const raw = width === 4 ? new Float32Array(count) : new Float64Array(count);
  if (littleEndian === LITTLE_ENDIAN_HOST) {
    new Uint8Array(raw.buffer).set(file.subarray(dataStart, dataStart + count * width));
  } else if (width === 4) {
    for (let i = 0; i < count; i++) raw[i] = view.getFloat32(i * 4, littleEndian);
  } else {
    for (let i = 0; i < count; i++) raw[i] = view.getFloat64(i * 8, littleEndian);
  }
  if (!fortran || shape.length === 1) return { shape, data: raw };
  // Fortran order stores columns contiguously: element (i, j) is at j * rows + i.
  const [rows, cols] = shape;
  const data = width === 4 ? new Float32Array(count) : new Float64Array(count);
  for (let j = 0; j < cols; j++) for (let i = 0; i < rows; i++) data[i * cols + j] = raw[j * rows + i];
  return { shape, data };
}
