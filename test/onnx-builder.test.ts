import { mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import onnxProto from 'onnx-proto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { OnnxGraph, onnxAttr, serializeOnnxModel, type OnnxModel } from '@transformaly/core';
import { expectClose } from './fixtures/close.js';

const { onnx } = onnxProto;

// Decoded protobuf messages as plain objects with every field present (protobufjs `toObject` with defaults).
interface DecodedTensor { name: string; dataType: number; rawData: Uint8Array; dataLocation: number; externalData: { key: string; value: string }[] }
interface DecodedAttribute { name: string; type: number; f: number; i: number; ints: number[] }
interface DecodedModel {
  irVersion: number;
  opsetImport: { domain: string; version: number }[];
  metadataProps: { key: string; value: string }[];
  graph: {
    input: { name: string; type: { tensorType: { shape: { dim: { dimValue: number; dimParam: string }[] } } } }[];
    initializer: DecodedTensor[];
    node: { opType: string; attribute: DecodedAttribute[] }[];
  };
}
function decode(bytes: Uint8Array): DecodedModel {
  return onnx.ModelProto.toObject(onnx.ModelProto.decode(bytes), { longs: Number, enums: Number, defaults: true, arrays: true }) as DecodedModel;
}

// A graph touching every kind of attribute the builder writes (INT, INTS, FLOAT, TENSOR, GRAPH), int64 and float
// initializers, a symbolic batch dimension, and a multi-output node.
function buildGraph(seed = 1): { graph: OnnxGraph; w: Float32Array; b: Float32Array } {
  let s = seed;
  const rand = () => ((s = (s * 16807) % 2147483647) / 2147483647) * 2 - 1;
  const w = Float32Array.from({ length: 4 * 600 }, rand);
  const b = Float32Array.from({ length: 600 }, rand);
  const g = new OnnxGraph('builder_test');
  const x = g.input('x', 'float32', ['N', 4]);
  const wName = g.initializer('w', { dims: [4, 600], data: w });
  const bName = g.initializer('b', { dims: [600], data: b });
  const y = g.op('Add', [g.op('MatMul', [x, wName]), bName]);
  const norm = g.op('LayerNormalization', [y, g.constant({ dims: [600], data: new Float32Array(600).fill(2) }), g.constant({ dims: [600], data: new Float32Array(600).fill(0.5) })], {
    axis: -1,
    epsilon: onnxAttr.float(1e-5),
  });
  // Split into two halves with one multi-output node, then swap them via Transpose of a reshaped view.
  const [left, right] = g.node('Split', [norm, g.int64s([300, 300])], ['left', 'right'], { axis: 1 });
  const joined = g.op('Concat', [right, left], { axis: 1 });
  const reshaped = g.op('Reshape', [joined, g.int64s([0, 20, 30])]);
  const transposed = g.op('Transpose', [reshaped], { perm: [0, 2, 1] }, { output: 'transposed' });
  const three = g.op('Constant', [], { value: onnxAttr.tensor({ dims: [], data: Float32Array.of(3) }) });
  const scaled = g.op('Mul', [transposed, three]);
  // If with two subgraphs that read an outer-scope value.
  const positive = g.op('ReduceSum', [g.op('ReduceSum', [scaled], { keepdims: 0 }), g.int64s([])], { keepdims: 0, noop_with_empty_axes: 1 });
  const cond = g.op('Greater', [positive, g.scalar(0)]);
  const thenBranch = new OnnxGraph('then');
  thenBranch.op('Identity', [scaled], {}, { output: 'then_out' });
  thenBranch.output('then_out', 'float32');
  const elseBranch = new OnnxGraph('else');
  elseBranch.op('Neg', [scaled], {}, { output: 'else_out' });
  elseBranch.output('else_out', 'float32');
  g.op('If', [cond], { then_branch: onnxAttr.graph(thenBranch), else_branch: onnxAttr.graph(elseBranch) }, { output: 'z' });
  g.output('z', 'float32', ['N', 30, 20]);
  g.output('transposed', 'float32', ['N', 30, 20]);
  return { graph: g, w, b };
}

function reference(x: Float32Array, n: number, w: Float32Array, b: Float32Array): { z: Float32Array; t: Float32Array } {
  const t = new Float32Array(n * 600);
  const z = new Float32Array(n * 600);
  for (let r = 0; r < n; r++) {
    const y = new Float64Array(600);
    for (let j = 0; j < 600; j++) {
      let acc = b[j];
      for (let k = 0; k < 4; k++) acc += x[r * 4 + k] * w[k * 600 + j];
      y[j] = acc;
    }
    const mean = y.reduce((a, v) => a + v, 0) / 600;
    const variance = y.reduce((a, v) => a + (v - mean) ** 2, 0) / 600;
    const normed = y.map((v) => ((v - mean) / Math.sqrt(variance + 1e-5)) * 2 + 0.5);
    const swapped = new Float64Array(600);
    swapped.set(normed.subarray(300), 0);
    swapped.set(normed.subarray(0, 300), 300);
    // Reshape [20, 30] then transpose to [30, 20].
    for (let i = 0; i < 20; i++) for (let j = 0; j < 30; j++) t[r * 600 + j * 20 + i] = swapped[i * 30 + j];
  }
  let sum = 0;
  for (let i = 0; i < t.length; i++) sum += 3 * t[i];
  for (let i = 0; i < t.length; i++) z[i] = sum > 0 ? 3 * t[i] : -3 * t[i];
  return { z, t };
}

async function run(source: string | Uint8Array, x: Float32Array, n: number): Promise<{ z: Float32Array; t: Float32Array }> {
  const session = await ort.InferenceSession.create(source as string & Uint8Array, { intraOpNumThreads: 1 });
  try {
    const out = await session.run({ x: new ort.Tensor('float32', x, [n, 4]) });
    return { z: out.z.data as Float32Array, t: out.transposed.data as Float32Array };
  } finally {
    await session.release();
  }
}


let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'onnx-builder-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('OnnxGraph + serializeOnnxModel', () => {
  it('serialises a graph that onnxruntime runs with the expected results for any batch size', async () => {
    const { graph, w, b } = buildGraph();
    const model = await serializeOnnxModel(graph);
    expect(model.externalDataDir).toBeUndefined();
    for (const n of [1, 3]) {
      const x = Float32Array.from({ length: n * 4 }, (_, i) => Math.sin(i + 1));
      const got = await run(model.bytes, x, n);
      const want = reference(x, n, w, b);
      expectClose(got.t, want.t, 1e-4, 't');
      expectClose(got.z, want.z, 1e-4, 'z');
    }
  });

  it('writes opset, IR version, symbolic dims, typed attributes and raw float32 initializers', async () => {
    const { graph, w } = buildGraph();
    const decoded = decode((await serializeOnnxModel(graph, { opset: 17, metadata: { arch: 'test' } })).bytes);
    expect(Number(decoded.irVersion)).toBe(8);
    expect(decoded.opsetImport.map((o) => [o.domain, Number(o.version)])).toEqual([['', 17]]);
    expect(decoded.metadataProps.map((p) => [p.key, p.value])).toEqual([['arch', 'test']]);
    const input = decoded.graph.input[0];
    expect(input.type.tensorType.shape.dim.map((d) => d.dimParam || Number(d.dimValue))).toEqual(['N', 4]);
    const init = decoded.graph.initializer.find((t) => t.name === 'w')!;
    expect(init.dataType).toBe(onnx.TensorProto.DataType.FLOAT);
    const raw = init.rawData;
    expect(new Float32Array(raw.buffer.slice(raw.byteOffset, raw.byteOffset + raw.byteLength))).toEqual(w);
    const ln = decoded.graph.node.find((n) => n.opType === 'LayerNormalization')!;
    const eps = ln.attribute.find((a) => a.name === 'epsilon')!;
    expect(eps.type).toBe(onnx.AttributeProto.AttributeType.FLOAT);
    // Stored as float32: 1e-5 rounded to the nearest float.
    expect(eps.f).toBe(Math.fround(1e-5));
    const axis = ln.attribute.find((a) => a.name === 'axis')!;
    expect(axis.type).toBe(onnx.AttributeProto.AttributeType.INT);
    expect(Number(axis.i)).toBe(-1);
    const perm = decoded.graph.node.find((n) => n.opType === 'Transpose')!.attribute[0];
    expect(perm.type).toBe(onnx.AttributeProto.AttributeType.INTS);
    expect(perm.ints.map(Number)).toEqual([0, 2, 1]);
  });

  it('moves initializers to <name>.onnx.data above the threshold, with identical results', async () => {
    const { graph } = buildGraph();
    const embedded = await serializeOnnxModel(graph);
    const folder = join(dir, 'external');
    const model: OnnxModel = await serializeOnnxModel(graph, { externalData: { dir: folder, threshold: 4096, minTensorBytes: 1024 } });
    expect(model.externalDataDir).toBe(folder);
    expect(model.bytes.length).toBeLessThan(embedded.bytes.length - 4 * 600 * 4);
    expect((await readdir(folder)).sort()).toEqual(['builder_test.onnx.data']);

    const decoded = decode(model.bytes);
    const byName = new Map(decoded.graph.initializer.map((t) => [t.name, t]));
    const w = byName.get('w')!;
    expect(w.dataLocation).toBe(onnx.TensorProto.DataLocation.EXTERNAL);
    const entries = Object.fromEntries(w.externalData.map((e) => [e.key, e.value]));
    expect(entries.location).toBe('builder_test.onnx.data');
    expect(Number(entries.length)).toBe(4 * 600 * 4);
    expect(Number(entries.offset) % 64).toBe(0);
    // The 600-float bias moves too; the tiny shape constants stay embedded.
    expect(byName.get('b')!.dataLocation).toBe(onnx.TensorProto.DataLocation.EXTERNAL);
    const small = decoded.graph.initializer.filter((t) => t.dataLocation !== onnx.TensorProto.DataLocation.EXTERNAL);
    expect(small.length).toBeGreaterThan(0);
    for (const t of small) expect(t.rawData.length).toBeLessThan(1024);
    const data = await readFile(join(folder, 'builder_test.onnx.data'));
    const off = Number(entries.offset);
    expect(new Float32Array(data.buffer.slice(data.byteOffset + off, data.byteOffset + off + 4 * 600 * 4))).toEqual(buildGraph().w);
    expect((await stat(join(folder, 'builder_test.onnx.data'))).size).toBeGreaterThanOrEqual(4 * 600 * 4 + 600 * 4);

    // onnxruntime resolves `location` relative to the model file.
    const path = join(folder, 'model.onnx');
    await writeFile(path, model.bytes);
    const x = Float32Array.from({ length: 8 }, (_, i) => Math.cos(i));
    const fromExternal = await run(path, x, 2);
    const fromEmbedded = await run(embedded.bytes, x, 2);
    expect(fromExternal.z).toEqual(fromEmbedded.z);
  });

  it('refuses an oversized graph without an external-data folder', async () => {
    const { graph } = buildGraph();
    await expect(serializeOnnxModel(graph, { externalData: undefined, opset: 17 }).then(() => 'ok')).resolves.toBe('ok');
    const big = new OnnxGraph('big');
    big.input('x', 'float32', [2]);
    big.initializer('w', { dims: [2], data: Float32Array.of(1, 2) });
    big.op('Add', ['x', 'w'], {}, { output: 'y' });
    big.output('y', 'float32', [2]);
    await expect(serializeOnnxModel(big, { externalData: { dir, threshold: 4 } })).resolves.toMatchObject({ externalDataDir: dir });
    // Without a folder, the same oversize is an error that says what to do.
    const { DEFAULT_EXTERNAL_DATA_THRESHOLD } = await import('@transformaly/core');
    expect(DEFAULT_EXTERNAL_DATA_THRESHOLD).toBeLessThan(2 ** 31);
    const huge = new OnnxGraph('huge');
    huge.input('x', 'float32', [1]);
    huge.initializer('w', { dims: [1], data: Float32Array.of(1) });
    Object.defineProperty(huge, 'initializerBytes', { value: () => 2 ** 31 });
    huge.op('Add', ['x', 'w'], {}, { output: 'y' });
    huge.output('y', 'float32', [1]);
    await expect(serializeOnnxModel(huge)).rejects.toThrow(/externalData\.dir/);
  });

  it('reports builder mistakes with the offending name', async () => {
    const g = new OnnxGraph('bad');
    g.input('x', 'float32', [1]);
    expect(() => g.input('x', 'float32', [1])).toThrow(/"x" is defined twice/);
    expect(() => g.initializer('w', { dims: [2, 2], data: new Float32Array(3) })).toThrow(/"w" has dims \[2, 2\] \(4 elements\) but 3 values/);
    expect(() => g.output('nope', 'float32')).toThrow(/"nope" is not a value/);
    g.op('Relu', ['missing'], {}, { output: 'y' });
    g.output('y', 'float32');
    await expect(serializeOnnxModel(g)).rejects.toThrow(/reads "missing" before it is defined/);

    const h = new OnnxGraph('attrs');
    h.input('x', 'float32', [2]);
    h.op('LeakyRelu', ['x'], { alpha: 0.1 }, { output: 'y' });
    h.output('y', 'float32');
    await expect(serializeOnnxModel(h)).rejects.toThrow(/alpha = 0.1 is not an integer; wrap floats as onnxAttr.float/);
  });
});
