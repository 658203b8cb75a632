// Fuzzing the safetensors reader: seeded byte and JSON-field mutations of valid files. Each mutated file is judged
// by an independent reading of the format's rules (below, written from the specification and the reference
// implementation's checks, not from core's reader): where the file is still valid, the reader must return exactly
// its tensors; where it is not, it must throw a SafetensorsError naming the file. Never a crash of another kind, a
// hang, an allocation larger than the file, or data that differs from the file's bytes.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it, vi } from 'vitest';
import { encodeSafetensors, readSafetensors, SafetensorsError, type ArrayEntry } from '@transformaly/core';
import { concat, mutateBytes, mutateJson, random } from './fixtures/fuzz.js';

const work = mkdtempSync(join(tmpdir(), 'transformaly-fuzz-safetensors-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

const SIZES: Record<string, number> = { F64: 8, F32: 4, F16: 2, BF16: 2, I64: 8, I32: 4, U8: 1, BOOL: 1 };
const MAX_HEADER = 100_000_000;

interface Expected {
  metadata: Record<string, string>;
  tensors: Map<string, { dtype: string; shape: number[]; raw: Uint8Array }>;
}

const isIndex = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** What a valid file holds, or why it is invalid: the format's rules, applied to the bytes. */
function judge(bytes: Uint8Array): Expected | string {
  if (bytes.length < 8) return 'shorter than the length prefix';
  const n = new DataView(bytes.buffer, bytes.byteOffset).getBigUint64(0, true);
  if (n === 0n || n > BigInt(MAX_HEADER) || 8n + n > BigInt(bytes.length)) return 'header length out of range';
  const headerEnd = 8 + Number(n);
  let header: unknown;
  try {
    header = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes.subarray(8, headerEnd)));
  } catch {
    return 'header is not UTF-8 JSON';
  }
  if (!isObject(header)) return 'header is not an object';
  const data = bytes.subarray(headerEnd);
  const expected: Expected = { metadata: {}, tensors: new Map() };
  const spans: [number, number][] = [];
  for (const [name, entry] of Object.entries(header)) {
    if (name === '__metadata__') {
      if (!isObject(entry) || !Object.values(entry).every((v) => typeof v === 'string')) return 'bad __metadata__';
      expected.metadata = entry as Record<string, string>;
      continue;
    }
    if (!isObject(entry)) return `entry ${name} is not an object`;
    const { dtype, shape, data_offsets: offsets } = entry;
    if (typeof dtype !== 'string' || !Object.hasOwn(SIZES, dtype)) return `dtype of ${name}`;
    if (!Array.isArray(shape) || !shape.every(isIndex)) return `shape of ${name}`;
    if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every(isIndex) || offsets[0] > offsets[1]) return `offsets of ${name}`;
    let count = 1;
    for (const d of shape) count *= d;
    if (offsets[1] - offsets[0] !== count * SIZES[dtype]) return `size of ${name}`;
    if (offsets[1] > data.length) return `${name} past the end`;
    const raw = data.subarray(offsets[0], offsets[1]);
    if (dtype === 'I64') {
      const values = new BigInt64Array(Uint8Array.from(raw).buffer);
      if (values.some((v) => v > 2147483647n || v < -2147483648n)) return `${name} outside int32`;
    }
    expected.tensors.set(name, { dtype, shape, raw });
    spans.push([offsets[0], offsets[1]]);
  }
  spans.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  let end = 0;
  for (const [begin, stop] of spans) {
    if (begin !== end) return 'gap or overlap';
    end = stop;
  }
  if (end !== data.length) return 'trailing bytes';
  return expected;
}

function half(bits: number): number {
  const sign = bits >> 15 ? -1 : 1;
  const exponent = (bits >> 10) & 31;
  const fraction = bits & 1023;
  if (exponent === 31) return fraction ? NaN : sign * Infinity;
  return exponent === 0 ? sign * fraction * 2 ** -24 : sign * 2 ** (exponent - 15) * (1 + fraction / 1024);
}

/** Where the reader's tensor differs from the file's bytes, or undefined. */
function difference(name: string, got: ArrayEntry, want: { dtype: string; shape: number[]; raw: Uint8Array }): string | undefined {
  if (JSON.stringify(got.dims) !== JSON.stringify(want.shape)) return `${name}: dims ${JSON.stringify(got.dims)}, file says ${JSON.stringify(want.shape)}`;
  const raw = Uint8Array.from(want.raw);
  const gotBytes = new Uint8Array(got.data.buffer, got.data.byteOffset, got.data.byteLength);
  const same = (a: ArrayLike<number>, b: ArrayLike<number>) => a.length === b.length && Array.from(a).every((v, i) => Object.is(v, b[i]));
  switch (want.dtype) {
    case 'F32':
    case 'F64':
    case 'I32':
    case 'U8':
    case 'BOOL':
      return same(gotBytes, raw) ? undefined : `${name}: bytes differ`;
    case 'BF16': {
      const want32 = Array.from(new Uint16Array(raw.buffer), (h) => (h << 16) >>> 0);
      return same(new Uint32Array(Uint8Array.from(gotBytes).buffer), want32) ? undefined : `${name}: BF16 values differ`;
    }
    case 'F16': {
      const values = Array.from(new Uint16Array(raw.buffer), half);
      return same(Array.from(got.data as Float32Array), values) ? undefined : `${name}: F16 values differ`;
    }
    case 'I64': {
      const values = Array.from(new BigInt64Array(raw.buffer), Number);
      return same(got.data as Int32Array, values) ? undefined : `${name}: I64 values differ`;
    }
  }
  return `${name}: unexpected dtype ${want.dtype}`;
}

/** A file written by hand (not by core's encoder), with the dtypes the encoder never writes. */
function handWritten(): Uint8Array {
  const f16 = Uint16Array.from([0x3c00, 0xc000, 0x7c00, 0x0001, 0x7e00, 0x8000]); // 1, -2, inf, smallest denormal, NaN, -0
  const bf16 = Uint16Array.from([0x3f80, 0xc2f7, 0x7f80]);
  const i64 = BigInt64Array.from([0n, -5n, 2147483647n, -2147483648n]);
  const bool = Uint8Array.from([1, 0, 1]);
  const parts = [new Uint8Array(f16.buffer), new Uint8Array(bf16.buffer), new Uint8Array(i64.buffer), bool];
  const header = {
    half: { dtype: 'F16', shape: [2, 3], data_offsets: [0, 12] },
    brain: { dtype: 'BF16', shape: [3], data_offsets: [12, 18] },
    long: { dtype: 'I64', shape: [4], data_offsets: [18, 50] },
    flag: { dtype: 'BOOL', shape: [3, 1], data_offsets: [50, 53] },
  };
  return withHeader(header, concat(...parts));
}

function withHeader(header: unknown, data: Uint8Array, lengthDelta = 0): Uint8Array {
  const json = new TextEncoder().encode(JSON.stringify(header));
  const length = new Uint8Array(8);
  new DataView(length.buffer).setBigUint64(0, BigInt(Math.max(0, json.length + lengthDelta)), true);
  return concat(length, json, data);
}

function split(file: Uint8Array): { header: unknown; data: Uint8Array } {
  const n = Number(new DataView(file.buffer, file.byteOffset).getBigUint64(0, true));
  return { header: JSON.parse(new TextDecoder().decode(file.subarray(8, 8 + n))), data: file.subarray(8 + n) };
}

const encoded = concat(
  ...encodeSafetensors(
    {
      weights: { dims: [2, 3], data: Float32Array.from([0.5, -1, 3e38, -0, 1e-45, 7]) },
      precise: { dims: [2], data: Float64Array.from([Math.PI, -1e-300]) },
      counts: { dims: [3], data: Int32Array.from([-7, 0, 2147483647]) },
      bytes: { dims: [5], data: Uint8Array.from([0, 1, 127, 128, 255]) },
      scalar: { dims: [], data: Float32Array.from([42]) },
      empty: { dims: [0, 4], data: new Float32Array(0) },
    },
    { source: 'fuzz', note: 'metadata' },
  ),
);

let fileNumber = 0;

async function check(bytes: Uint8Array, what: string, failures: string[]): Promise<'valid' | 'refused'> {
  const path = join(work, `case-${fileNumber++}.safetensors`);
  writeFileSync(path, bytes);
  const allocations: number[] = [];
  const alloc = Buffer.alloc.bind(Buffer);
  const spy = vi.spyOn(Buffer, 'alloc').mockImplementation((size: number, ...rest: unknown[]) => {
    allocations.push(size);
    return alloc(size, ...(rest as []));
  });
  let result: Awaited<ReturnType<typeof readSafetensors>> | undefined;
  let error: unknown;
  try {
    result = await readSafetensors(path);
  } catch (e) {
    error = e;
  } finally {
    spy.mockRestore();
  }
  const fail = (why: string) => failures.push(`${what}: ${why}`);
  if (Math.max(0, ...allocations) > bytes.length) fail(`allocated ${Math.max(...allocations)} bytes for a file of ${bytes.length}`);
  const expected = judge(bytes);
  if (typeof expected === 'string') {
    if (result) fail(`accepted a file that is invalid (${expected})`);
    else if (!(error instanceof SafetensorsError) || !error.message.startsWith(`${path}: `)) fail(`threw ${String(error)} instead of a SafetensorsError naming the file (${expected})`);
    return 'refused';
  }
  if (!result) {
    fail(`refused a valid file: ${String(error)}`);
    return 'valid';
  }
  const names = Object.keys(result.arrays).sort();
  if (JSON.stringify(names) !== JSON.stringify([...expected.tensors.keys()].sort())) fail(`tensors ${names} instead of ${[...expected.tensors.keys()]}`);
  for (const [name, want] of expected.tensors) {
    const got = Object.hasOwn(result.arrays, name) ? result.arrays[name] : undefined;
    const why = got ? difference(name, got, want) : `${name} missing`;
    if (why) fail(why);
  }
  if (JSON.stringify(result.metadata) !== JSON.stringify(expected.metadata)) fail(`metadata ${JSON.stringify(result.metadata)}`);
  return 'valid';
}

describe('fuzzing the safetensors reader', () => {
  const bases: [string, Uint8Array][] = [
    ['encoded by core', encoded],
    ['written by hand', handWritten()],
  ];

  it('the unmutated files are valid and read exactly', async () => {
    const failures: string[] = [];
    for (const [name, bytes] of bases) expect(await check(bytes, name, failures)).toBe('valid');
    expect(failures).toEqual([]);
  });

  it.each(bases)('byte mutations of the file %s: a clean error or exactly what the bytes say (seeded, 300 cases)', async (name, bytes) => {
    const rng = random(name.length * 7919);
    const failures: string[] = [];
    const outcomes = { valid: 0, refused: 0 };
    const headerEnd = 8 + Number(new DataView(bytes.buffer, bytes.byteOffset).getBigUint64(0, true));
    for (let i = 0; i < 300; i++) {
      const mutated = mutateBytes(bytes, rng, headerEnd);
      outcomes[await check(mutated.bytes, `case ${i} (${mutated.what})`, failures)]++;
    }
    expect(failures).toEqual([]);
    // Both sides were exercised: damage in the data section leaves a valid file with other values.
    expect(outcomes.valid).toBeGreaterThan(10);
    expect(outcomes.refused).toBeGreaterThan(100);
  });

  it.each(bases)('header field mutations of the file %s: a clean error or exactly what the header says (seeded, 300 cases)', async (name, bytes) => {
    const rng = random(name.length * 104729);
    const failures: string[] = [];
    const outcomes = { valid: 0, refused: 0 };
    const { header, data } = split(bytes);
    for (let i = 0; i < 300; i++) {
      const mutated = mutateJson(header, rng);
      const delta = rng.next() < 0.1 ? rng.pick([-1, 1, 8, 1 << 20]) : 0;
      const file = withHeader(mutated.document, data, delta);
      outcomes[await check(file, `case ${i} (${mutated.what}${delta ? `, header length ${delta > 0 ? '+' : ''}${delta}` : ''})`, failures)]++;
    }
    expect(failures).toEqual([]);
    expect(outcomes.valid).toBeGreaterThan(5);
    expect(outcomes.refused).toBeGreaterThan(100);
  });

  it('refuses a header length beyond the format limit without reading or allocating it', async () => {
    const failures: string[] = [];
    const length = new Uint8Array(8);
    new DataView(length.buffer).setBigUint64(0, 2n ** 40n, true);
    expect(await check(concat(length, new TextEncoder().encode('{}')), 'a 1 TiB header length', failures)).toBe('refused');
    expect(failures).toEqual([]);
    const path = join(work, 'huge-header.safetensors');
    writeFileSync(path, concat(length, new TextEncoder().encode('{}')));
    await expect(readSafetensors(path)).rejects.toThrow(`${path}: header length 1099511627776 exceeds the format's limit of 100000000 bytes`);
  });

  it('keeps a tensor named "__proto__" as an ordinary entry when writing and reading', async () => {
    const arrays = Object.fromEntries([['__proto__', { dims: [1], data: Float32Array.from([5]) }]]) as Record<string, ArrayEntry>;
    const path = join(work, 'proto.safetensors');
    writeFileSync(path, concat(...encodeSafetensors(arrays)));
    const { arrays: read } = await readSafetensors(path);
    expect(Object.keys(read)).toEqual(['__proto__']);
    expect(Object.getPrototypeOf(read)).toBe(Object.prototype);
    expect(Array.from(read['__proto__'].data)).toEqual([5]);
  });
});
