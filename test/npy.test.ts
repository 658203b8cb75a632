import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { npyHeader, readNpy, writeNpy } from '@transformaly/core';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'transformaly-npy-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** Builds a .npy v1.0 file by hand, straight from the format description, to test the reader independently. */
function handMade(dict: string, body: Uint8Array): Uint8Array {
  const pad = 64 - ((10 + dict.length + 1) % 64);
  const header = dict + ' '.repeat(pad % 64) + '\n';
  const out = new Uint8Array(10 + header.length + body.length);
  out.set([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 1, 0, header.length & 0xff, header.length >> 8]);
  out.set(Buffer.from(header, 'latin1'), 10);
  out.set(body, 10 + header.length);
  return out;
}

describe('npy', () => {
  it('writes the exact NumPy 1.0 header, 64-byte aligned, followed by little-endian float32 rows', async () => {
    const data = Float32Array.from({ length: 12 }, (_, i) => i * 0.5 - 2);
    // A folder of its own: the other tests write beside it, in whatever order they run.
    const own = await mkdtemp(join(dir, 'header-'));
    const path = join(own, 'm.npy');
    await writeNpy(path, { rows: 3, cols: 4, data });
    const bytes = await readFile(path);

    const dict = "{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }";
    // What np.save writes for a (3, 4) float32 array: 10 fixed bytes + 118 header bytes = 128.
    const expected = Buffer.concat([
      Buffer.from([0x93]),
      Buffer.from('NUMPY', 'latin1'),
      Buffer.from([1, 0, 118, 0]),
      Buffer.from(dict + ' '.repeat(118 - dict.length - 1) + '\n', 'latin1'),
    ]);
    expect(expected.length).toBe(128);
    expect(bytes.subarray(0, 128).equals(expected)).toBe(true);
    expect(bytes.length).toBe(128 + 12 * 4);
    for (let i = 0; i < 12; i++) expect(bytes.readFloatLE(128 + 4 * i)).toBe(data[i]);
    // Nothing else (no temporary file) is left beside it.
    expect(await readdir(own)).toEqual(['m.npy']);
  });

  it('pads every header so the data starts at a multiple of 64, for small and large shapes', () => {
    for (const shape of [[0, 0], [1, 1], [60000, 768], [123456789, 4096], [7]]) {
      const header = npyHeader(shape);
      expect(header.length % 64).toBe(0);
      expect(header[header.length - 1]).toBe(0x0a);
      expect(header[8] | (header[9] << 8)).toBe(header.length - 10);
      const text = Buffer.from(header.subarray(10)).toString('latin1');
      const dims = shape.length === 1 ? `(${shape[0]},)` : `(${shape.join(', ')})`;
      expect(text.trimEnd()).toBe(`{'descr': '<f4', 'fortran_order': False, 'shape': ${dims}, }`);
    }
  });

  it('round-trips a matrix, including one that is a view into a larger buffer', async () => {
    const big = Float32Array.from({ length: 40 }, (_, i) => Math.sin(i) * 1e3);
    const view = big.subarray(5, 5 + 7 * 5);
    const path = join(dir, 'view.npy');
    await writeNpy(path, { rows: 7, cols: 5, data: view });
    const back = await readNpy(path);
    expect(back.shape).toEqual([7, 5]);
    expect(back.data).toBeInstanceOf(Float32Array);
    expect(Array.from(back.data)).toEqual(Array.from(view));

    const empty = join(dir, 'empty.npy');
    await writeNpy(empty, { rows: 0, cols: 768, data: new Float32Array(0) });
    expect(await readNpy(empty)).toEqual({ shape: [0, 768], data: new Float32Array(0) });
  });

  it('reads float64, 1-D, big-endian and Fortran-order files', async () => {
    const values = [1.5, -2.25, 3.125, 1e-300, -7, 0.1];
    // Big-endian float64, Fortran order, shape (2, 3): columns are contiguous.
    const body = Buffer.alloc(48);
    const fortranOrder = [values[0], values[3], values[1], values[4], values[2], values[5]];
    fortranOrder.forEach((v, i) => body.writeDoubleBE(v, i * 8));
    const path = join(dir, 'f8.npy');
    await writeFile(path, handMade("{'descr': '>f8', 'fortran_order': True, 'shape': (2, 3), }", body));
    const m = await readNpy(path);
    expect(m.shape).toEqual([2, 3]);
    expect(m.data).toBeInstanceOf(Float64Array);
    expect(Array.from(m.data)).toEqual(values);

    const vec = Buffer.alloc(12);
    [1, 2, 3].forEach((v, i) => vec.writeFloatLE(v, i * 4));
    const path1 = join(dir, 'vec.npy');
    await writeFile(path1, handMade("{'descr': '<f4', 'fortran_order': False, 'shape': (3,), }", vec));
    expect(await readNpy(path1)).toEqual({ shape: [3], data: Float32Array.from([1, 2, 3]) });
  });

  it('rejects bad input with the file name and the reason', async () => {
    await expect(writeNpy(join(dir, 'bad.npy'), { rows: 2, cols: 3, data: new Float32Array(5) })).rejects.toThrow(
      /bad\.npy: 5 values do not fill 2 x 3/,
    );
    const ints = join(dir, 'ints.npy');
    await writeFile(ints, handMade("{'descr': '<i4', 'fortran_order': False, 'shape': (1,), }", new Uint8Array(4)));
    await expect(readNpy(ints)).rejects.toThrow(/ints\.npy: dtype '<i4' is not float32 or float64/);
    const short = join(dir, 'short.npy');
    await writeFile(short, handMade("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2), }", new Uint8Array(12)));
    await expect(readNpy(short)).rejects.toThrow(/short\.npy: expected 16 data bytes/);
    const junk = join(dir, 'junk.npy');
    await writeFile(junk, 'hello world');
    await expect(readNpy(junk)).rejects.toThrow(/junk\.npy: not a \.npy file/);
  });
});
