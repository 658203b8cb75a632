// @transformaly/runtime-tfjs as an inference engine: backend selection and its report, ONNX graphs built by core's
// builder executed through tfjs ops against onnxruntime (the ViT backbone on two checkpoints, features and every
// block tap; a graph of the other supported operators), external weights, memory across runs, and the errors.
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { OnnxGraph, Rng, onnxAttr, serializeOnnxModel, type ProgressReporter, type Tensor } from '@transformaly/core';
import { loadVitBackbone, type VitBackboneOptions } from '@transformaly/backbone-vit';
import { OnnxRuntime } from '@transformaly/runtime-onnx';
import { TfjsRuntime } from '@transformaly/runtime-tfjs';

const GOLDEN = join(import.meta.dirname, 'golden', 'vit');

interface Captured extends ProgressReporter {
  infos: string[];
  warns: string[];
}

function capture(): Captured {
  const infos: string[] = [];
  const warns: string[] = [];
  return { infos, warns, task: () => ({ tick() {}, done() {} }), info: (m) => void infos.push(m), warn: (m) => void warns.push(m) };
}

/** max |ours - ref| / max |ref| */
function relativeError(ours: ArrayLike<number>, ref: ArrayLike<number>): number {
  expect(ours.length).toBe(ref.length);
  let diff = 0;
  let scale = 0;
  for (let i = 0; i < ref.length; i++) {
    diff = Math.max(diff, Math.abs(ours[i] - ref[i]));
    scale = Math.max(scale, Math.abs(ref[i]));
  }
  return diff / scale;
}

function randomTensor(dims: number[], seed: number): Tensor {
  const rng = new Rng(seed);
  const data = new Float32Array(dims.reduce((a, b) => a * b, 1));
  for (let i = 0; i < data.length; i++) data[i] = rng.normal();
  return { dims, data };
}

const onnx = new OnnxRuntime({ threads: 1 });
let progress: Captured;
let tfjs: TfjsRuntime;

beforeAll(async () => {
  progress = capture();
  tfjs = new TfjsRuntime({ progress });
  await tfjs.ready();
});

afterAll(async () => {
  await tfjs.dispose();
  await onnx.dispose();
});

describe('backend selection', () => {
  // This project never builds tfjs-node's binding (its install script is not allowed), so wasm is the automatic
  // choice here; where the binding exists, the native backend must be the one chosen.
  it('picks the first backend that starts, and says which and why in one report', () => {
    if (tfjs.backend?.name === 'tensorflow') {
      expect(progress.infos.join('\n')).toMatch(/backend tensorflow \(@tensorflow\/tfjs-node(-gpu)?\): native libtensorflow/);
      return;
    }
    expect(tfjs.backend?.name).toBe('wasm');
    expect(tfjs.backend?.simd).toBe(true);
    expect(tfjs.device).toBe('cpu');
    expect(tfjs.threads).toBe(1);
    expect(progress.warns).toEqual([]);
    expect(progress.infos).toHaveLength(1);
    const [report] = progress.infos;
    expect(report).toMatch(/backend wasm \(@tensorflow\/tfjs-backend-wasm\)/);
    expect(report).toMatch(/SIMD/);
    // The native backend was tried first, and the report names both packages and their failure.
    expect(report).toMatch(/tensorflow unavailable \(@tensorflow\/tfjs-node-gpu: .+; @tensorflow\/tfjs-node: .+\)/);
  });

  it('fails clearly when the tensorflow backend is asked for but cannot load', async () => {
    const runtime = new TfjsRuntime({ backend: 'tensorflow' });
    if (tfjs.backend?.name === 'tensorflow') {
      expect((await runtime.ready()).name).toBe('tensorflow');
      return;
    }
    await expect(runtime.ready()).rejects.toThrow(/backend 'tensorflow' was requested but is not available: @tensorflow\/tfjs-node-gpu: .*install @tensorflow\/tfjs-node/s);
  });

  it('warns that the cpu backend is about 50x slower, and still computes what wasm computes', async () => {
    const warned = capture();
    const cpu = new TfjsRuntime({ backend: 'cpu', threads: 4, progress: warned });
    try {
      const choice = await cpu.ready();
      expect(choice.name).toBe('cpu');
      expect(warned.warns.join('\n')).toMatch(/backend cpu .*about 50x slower than wasm/);
      expect(warned.infos.join('\n')).toMatch(/threads 4 does not apply to the cpu backend/);
      const model = await serializeOnnxModel(elementwiseGraph());
      const x = randomTensor([3, 5], 1);
      const onCpu = await (await cpu.createSession(model)).run({ x });
      // The next run on the wasm runtime switches the process-wide engine back.
      const onWasm = await (await tfjs.createSession(model)).run({ x });
      expect(tf.getBackend()).toBe(tfjs.backend!.name);
      expect(relativeError(onCpu.y.data, onWasm.y.data)).toBeLessThan(1e-6);
    } finally {
      await cpu.dispose();
    }
  });

  it('rejects unknown backends and options by name', () => {
    expect(() => new TfjsRuntime({ backend: 'webgl' as never })).toThrow(/option backend must be one of tensorflow, wasm, cpu; got "webgl"/);
    expect(() => new TfjsRuntime({ threads: 0 })).toThrow(/option threads must be a positive integer, got 0/);
    expect(() => new TfjsRuntime({ microBatch: 2.5 })).toThrow(/option microBatch must be a positive integer/);
    expect(() => new TfjsRuntime({ device: 'cuda' } as never)).toThrow(/unknown option "device"/);
  });
});

/** A small graph: y = relu(x * 2 - 1). */
function elementwiseGraph(): OnnxGraph {
  const g = new OnnxGraph('elementwise');
  const x = g.input('x', 'float32', ['N', 5]);
  const y = g.op('Relu', [g.op('Sub', [g.op('Mul', [x, g.scalar(2)]), g.scalar(1)])], {}, { output: 'y' });
  g.output(y, 'float32', ['N', 5]);
  return g;
}

describe('ViT backbone on tfjs against onnxruntime', () => {
  const CASES: Array<{ arch: 'a' | 'b'; options: Partial<VitBackboneOptions> }> = [
    { arch: 'a', options: {} },
    { arch: 'b', options: {} },
  ];
  for (const { arch, options } of CASES) {
    it(`architecture ${arch}: features and every block's input and output within 1e-4 relative`, async () => {
      const checkpoint = join(GOLDEN, arch, 'hf');
      const [reference, ours] = await Promise.all([
        loadVitBackbone({ checkpoint, ...options }, { runtime: onnx }),
        loadVitBackbone({ checkpoint, ...options }, { runtime: tfjs }),
      ]);
      try {
        const { imageSize, depth } = ours.info;
        const pixels = randomTensor([3, 3, imageSize[0], imageSize[1]], 7);
        const taps = Array.from({ length: depth }, (_, i) => i);
        const want = await reference.forward(pixels, { taps });
        const got = await ours.forward(pixels, { taps });
        expect([got.features.rows, got.features.cols]).toEqual([want.features.rows, want.features.cols]);
        expect(relativeError(got.features.data, want.features.data)).toBeLessThanOrEqual(1e-4);
        for (const i of taps) {
          const a = got.taps.get(i)!;
          const b = want.taps.get(i)!;
          expect(a.input.dims).toEqual(b.input.dims);
          expect(relativeError(a.input.data, b.input.data), `block ${i} input`).toBeLessThanOrEqual(1e-4);
          expect(relativeError(a.output.data, b.output.data), `block ${i} output`).toBeLessThanOrEqual(1e-4);
        }
      } finally {
        await Promise.all([reference.dispose(), ours.dispose()]);
      }
    });
  }

  it('reads weights from external data files, and keeps memory flat across batches', async () => {
    const work = await mkdtemp(join(tmpdir(), 'tfjs-external-'));
    const checkpoint = join(GOLDEN, 'a', 'hf');
    const embedded = await loadVitBackbone({ checkpoint }, { runtime: tfjs });
    // A threshold of one byte moves every weight of at least a kilobyte into the data file.
    const external = await loadVitBackbone({ checkpoint }, { runtime: tfjs, workDir: work, externalDataThreshold: 1 });
    try {
      expect((await readdir(work)).some((f) => f.endsWith('.onnx.data'))).toBe(true);
      const { imageSize } = embedded.info;
      const batch = (seed: number) => randomTensor([2, 3, imageSize[0], imageSize[1]], seed);
      const a = await embedded.forward(batch(1), { taps: [1] });
      const b = await external.forward(batch(1), { taps: [1] });
      expect(b.features.data).toEqual(a.features.data);
      expect(b.taps.get(1)!.output.data).toEqual(a.taps.get(1)!.output.data);

      const before = tf.memory();
      for (let i = 0; i < 3; i++) await external.forward(batch(10 + i), { taps: [0, 2] });
      const after = tf.memory();
      expect(after.numTensors).toBe(before.numTensors);
      expect(after.numBytes).toBe(before.numBytes);
    } finally {
      await Promise.all([embedded.dispose(), external.dispose()]);
      await rm(work, { recursive: true, force: true });
    }
  });
});

describe('ONNX operators', () => {
  /**
   * Every supported operator outside the ViT graph's set, in one graph whose value depends on all of them, run by
   * both runtimes on the same input.
   */
  function operatorGraph(): OnnxGraph {
    const g = new OnnxGraph('operators');
    const x = g.input('x', 'float32', ['N', 4, 6, 6]);
    const rng = new Rng(3);
    const weights = (dims: number[]) => ({ dims, data: Float32Array.from({ length: dims.reduce((a, b) => a * b, 1) }, () => rng.normal() * 0.3) });
    // Convolutions: padded and strided, dilated, depthwise (group = channels) with asymmetric padding.
    const c1 = g.op('Conv', [x, g.constant(weights([8, 4, 3, 3])), g.constant(weights([8]))], { kernel_shape: [3, 3], pads: [1, 1, 1, 1], strides: [2, 2] });
    const c2 = g.op('Conv', [c1, g.constant(weights([8, 8, 2, 2]))], { dilations: [2, 2], pads: [1, 1, 1, 1] });
    const c3 = g.op('Conv', [c2, g.constant(weights([8, 1, 3, 3])), g.constant(weights([8]))], { group: 8, pads: [1, 0, 2, 1] });
    const activated = g.op('Tanh', [g.op('Sigmoid', [g.op('Abs', [c3])])]);
    const flat = g.op('Flatten', [activated], { axis: 1 });
    const width = g.op('Gather', [g.op('Shape', [flat]), g.int64s([-1])], { axis: 0 });
    const features = g.op('Reshape', [flat, g.op('Concat', [g.int64s([-1]), width], { axis: 0 })]);
    const dense = g.op('MatMul', [features, g.op('Transpose', [g.op('Reshape', [g.constant(weights([64, 5])), g.int64s([5, 64])])], { perm: [1, 0] })]);
    const gemm = g.op('Gemm', [dense, g.constant(weights([5, 7])), g.constant(weights([7]))], { alpha: onnxAttr.float(0.5), beta: onnxAttr.float(2) });
    const soft = g.op('Softmax', [g.op('Unsqueeze', [gemm, g.int64s([1])])], { axis: 0 });
    const logSoft = g.op('LogSoftmax', [gemm], { axis: -1 });
    const [left, right] = g.node('Split', [logSoft, g.int64s([3, 4])], 2, { axis: 1 });
    const sliced = g.op('Slice', [right, g.int64s([-1]), g.int64s([-100]), g.int64s([1]), g.int64s([-2])]);
    const reduced = g.op('ReduceMean', [g.op('Concat', [left, sliced], { axis: 1 })], { axes: [1], keepdims: 1 });
    const summed = g.op('ReduceSum', [g.op('Squeeze', [soft, g.int64s([1])]), g.int64s([1])], { keepdims: 1 });
    const maxed = g.op('ReduceMax', [gemm], { axes: [-1], keepdims: 1 });
    const minned = g.op('ReduceMin', [gemm], { axes: [-1], keepdims: 1 });
    const mixed = g.op('Add', [g.op('Sub', [reduced, summed]), g.op('Div', [maxed, g.op('Add', [g.op('Exp', [minned]), g.scalar(1)])])]);
    const positive = g.op('Sqrt', [g.op('Add', [g.op('Pow', [mixed, g.scalar(2)]), g.scalar(0.5)])]);
    const logged = g.op('Log', [g.op('Reciprocal', [positive])]);
    // Rounding and integer casts on constants: on computed values a last-bit difference could flip them.
    const consts = g.constant({ dims: [3], data: Float32Array.of(1.7, -2.2, 0.4) });
    const rounded = g.op('Add', [g.op('Floor', [consts]), g.op('Ceil', [g.op('Neg', [consts])])]);
    const cast = g.op('Cast', [g.op('Cast', [g.op('Mul', [consts, g.scalar(10)])], { to: 7 })], { to: 1 });
    const condition = g.op('Cast', [g.constant({ dims: [3], data: Float32Array.of(1, 0, 1) })], { to: 9 });
    const where = g.op('Where', [condition, g.op('Add', [logged, cast]), g.op('Identity', [g.op('Mul', [logged, rounded])])]);
    const filled = g.op('ConstantOfShape', [g.op('Shape', [where])], { value: onnxAttr.tensor({ dims: [1], data: Float32Array.of(0.25) }) });
    const expanded = g.op('Expand', [g.op('Add', [where, filled]), g.int64s([1, 1])]);
    const erf = g.op('Erf', [expanded]);
    g.op('LayerNormalization', [erf, g.constant({ dims: [3], data: Float32Array.of(1, 2, 3) })], { axis: -1, epsilon: onnxAttr.float(1e-3) }, { output: 'y' });
    g.output('y', 'float32', ['N', 3]);
    return g;
  }

  it('compute what onnxruntime computes, for every operator in the table', async () => {
    const model = await serializeOnnxModel(operatorGraph());
    const x = randomTensor([5, 4, 6, 6], 11);
    const want = await (await onnx.createSession(model)).run({ x });
    const session = await tfjs.createSession(model);
    const got = await session.run({ x });
    expect(got.y.dims).toEqual(want.y.dims);
    expect(relativeError(got.y.data, want.y.data)).toBeLessThan(1e-4);
    await session.dispose();
  });

  it('names an unsupported operator and its node, and lists what is supported', async () => {
    const g = new OnnxGraph('unsupported');
    const x = g.input('x', 'float32', [2]);
    g.op('Hardmax', [g.op('Relu', [x])], {}, { output: 'y', name: 'my_hardmax' });
    g.output('y', 'float32', [2]);
    const model = await serializeOnnxModel(g);
    await expect(tfjs.createSession(model)).rejects.toThrow(/does not implement: Hardmax \(node "my_hardmax"\)\. Supported: .*LayerNormalization/);
  });

  it('checks feeds and outputs, and reports a failing node with its input shapes', async () => {
    const session = await tfjs.createSession(await serializeOnnxModel(elementwiseGraph()));
    await expect(session.run({})).rejects.toThrow(/missing feed for model input 'x'/);
    await expect(session.run({ x: { dims: [2, 5], data: new Float32Array(9) } })).rejects.toThrow(/feed 'x' has 9 values but dims \[2, 5\] need 10/);
    await expect(session.run({ x: { dims: [2, 4], data: new Float32Array(8) } })).rejects.toThrow(/feed 'x' has dims \[2, 4\] but the model declares \[N, 5\]/);
    await expect(session.run({ x: randomTensor([1, 5], 1), z: randomTensor([1], 1) })).rejects.toThrow(/no input 'z'/);
    await expect(session.run({ x: randomTensor([1, 5], 1) }, ['nope'])).rejects.toThrow(/no output 'nope' \(outputs: y\)/);
    await session.dispose();
    await expect(session.run({ x: randomTensor([1, 5], 1) })).rejects.toThrow(/disposed session/);

    const g = new OnnxGraph('bad_reshape');
    const x = g.input('x', 'float32', ['N', 6]);
    g.op('Reshape', [x, g.int64s([4, -1])], {}, { output: 'y', name: 'reshape_rows' });
    g.output('y', 'float32');
    const bad = await tfjs.createSession(await serializeOnnxModel(g));
    await expect(bad.run({ x: randomTensor([3, 6], 2) })).rejects.toThrow(/node "reshape_rows" \(Reshape\) failed on inputs \(float32\[3, 6\], int32\[2\]\)/);
    await bad.dispose();
  });
});
