// @transformaly/runtime-tfjs as an inference engine: backend selection and its report, ONNX graphs built by core's
// builder executed through tfjs ops against onnxruntime (the ViT backbone on two checkpoints, features and every
// block tap; a graph of the other supported operators), external weights, memory across runs, and the errors.
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { OnnxGraph, Rng, serializeOnnxModel, type ProgressReporter, type Tensor } from '@transformaly/core';
import { loadVitBackbone, type VitBackboneOptions } from '@transformaly/backbone-vit';
import { OnnxRuntime } from '@transformaly/runtime-onnx';
import { TfjsRuntime, plugin as tfjsPlugin } from '@transformaly/runtime-tfjs';
import { registerChecks, runtimeChecks } from '@transformaly/testing';
import { operatorGraph } from './fixtures/onnx-operators.js';
import { expectClose } from './fixtures/close.js';

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
      expectClose(onCpu.y.data, onWasm.y.data, 1e-6, 'cpu against wasm');
    } finally {
      await cpu.dispose();
    }
  });

  it('rejects unknown backends and options by name', () => {
    expect(() => new TfjsRuntime({ backend: 'webgl' as never })).toThrow(/option backend must be one of tensorflow, webgpu, wasm, cpu; got "webgl"/);
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
        expectClose(got.features.data, want.features.data, 1e-4, 'features');
        for (const i of taps) {
          const a = got.taps.get(i)!;
          const b = want.taps.get(i)!;
          expect(a.input.dims).toEqual(b.input.dims);
          expectClose(a.input.data, b.input.data, 1e-4, `block ${i} input`);
          expectClose(a.output.data, b.output.data, 1e-4, `block ${i} output`);
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
  it('compute what onnxruntime computes, for every operator in the table', async () => {
    const model = await serializeOnnxModel(operatorGraph());
    const x = randomTensor([5, 4, 6, 6], 11);
    const want = await (await onnx.createSession(model)).run({ x });
    const session = await tfjs.createSession(model);
    const got = await session.run({ x });
    expect(got.y.dims).toEqual(want.y.dims);
    expectClose(got.y.data, want.y.data, 1e-4, 'y');
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

// The Runtime contract (a graph computed as written, refusals of bad feeds, sessions released), through the core's
// binding of the plugin; tfjs offers no numerics, so that rule does not apply.
describe('conformance: wasm backend', () => registerChecks(runtimeChecks({ plugin: tfjsPlugin, options: { backend: 'wasm' } }), it));
