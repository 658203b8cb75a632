// @transformaly/runtime-tfjs on its webgpu backend (tfjs-backend-webgpu on Dawn): the adapter it reports against
// Dawn's own answer, the automatic choice and the adapter option, the errors without an adapter and on a device
// error; the ViT backbone (features, every block's input and output) and the operator table against onnxruntime,
// with one read-back per output; student training against the onnxruntime trainer (a step, checkpoints, a NaN
// batch), one read-back per step, and memory flat over epochs. CI runs it on Mesa's lavapipe (see fixtures/webgpu.ts).
import { spawnSync } from 'node:child_process';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Rng, initStudentWeights, serializeOnnxModel, type AdamSettings, type BlockSpec, type ProgressReporter, type Tensor } from '@transformaly/core';
import { loadVitBackbone } from '@transformaly/backbone-vit';
import { OnnxRuntime } from '@transformaly/runtime-onnx';
import { TfjsRuntime, bindingMicroBatch, type BackendChoice } from '@transformaly/runtime-tfjs';
import { expectClose } from './fixtures/close.js';
import { operatorGraph } from './fixtures/onnx-operators.js';
import { batch, expectSameUpdate } from './fixtures/students.js';
import { webgpuEnvironment } from './fixtures/webgpu.js';

const repo = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const env = webgpuEnvironment();
const GOLDEN = join(repo, 'test', 'golden', 'vit');
const SPEC: BlockSpec = { width: 32, heads: 4, mlpDim: 64, tokens: 17, layerNormEps: 1e-6, qkvBias: true };
const ADAM: AdamSettings = { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8 };

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

/** Counts the webgpu backend's downloads (GPU buffer to host) while `task` runs. */
async function downloadsDuring<T>(task: () => Promise<T>): Promise<{ value: T; downloads: number }> {
  const backend = tf.findBackend('webgpu') as unknown as { getBufferData: (...args: unknown[]) => Promise<ArrayBuffer> };
  const original = backend.getBufferData;
  let downloads = 0;
  backend.getBufferData = function (this: unknown, ...args: unknown[]) {
    downloads += 1;
    return original.apply(this, args);
  };
  try {
    return { value: await task(), downloads };
  } finally {
    backend.getBufferData = original;
  }
}

/** Runs an ES module in a fresh Node process at the repository root (it imports the built packages). */
function runModule(source: string, extraEnv: NodeJS.ProcessEnv = {}) {
  return spawnSync(process.execPath, ['--input-type=module', '-e', source], { cwd: repo, env: { ...env, ...extraEnv }, encoding: 'utf8' });
}

const onnx = new OnnxRuntime({ threads: 1 });
let progress: Captured;
let gpu: TfjsRuntime;
let choice: BackendChoice;

beforeAll(async () => {
  progress = capture();
  gpu = new TfjsRuntime({ backend: 'webgpu', adapter: 'any', progress });
  choice = await gpu.ready();
});

afterAll(async () => {
  await gpu.dispose();
  await onnx.dispose();
});

describe('adapter and backend choice', () => {
  it("reports and describes the adapter Dawn itself finds", async () => {
    const { create } = await import('webgpu');
    const reference = await create([]).requestAdapter({ powerPreference: 'high-performance' });
    expect(reference, 'Dawn found no adapter in this process').not.toBeNull();
    const info = reference!.info;
    const onCpu = info.isFallbackAdapter || /llvmpipe|lavapipe|swiftshader/i.test(`${info.device} ${info.description}`);
    const described = await gpu.describe();
    expect(described).toEqual({
      backend: 'webgpu',
      package: '@tensorflow/tfjs-backend-webgpu',
      device: onCpu ? 'cpu' : 'gpu',
      threads: choice.threads,
      adapter: {
        vendor: info.vendor,
        architecture: info.architecture,
        device: info.device,
        description: info.description,
        isFallbackAdapter: info.isFallbackAdapter,
        type: onCpu ? 'cpu' : 'gpu',
        features: ['shader-f16', 'subgroups', 'chromium-experimental-subgroup-matrix', 'timestamp-query'].filter((f) => reference!.features.has(f)),
        maxStorageBufferBindingSize: reference!.limits.maxStorageBufferBindingSize,
      },
    });
    expect(progress.warns).toEqual([]);
    expect(progress.infos).toHaveLength(1);
    expect(progress.infos[0]).toContain(`runtime-tfjs: backend webgpu (@tensorflow/tfjs-backend-webgpu): requested in the options, on ${info.description}`);
    expect(progress.infos[0]).toContain(onCpu ? 'a CPU implementation' : 'a GPU');
  });

  it('is the automatic choice on a GPU adapter only, unless adapter is any; adapter gpu refuses a CPU one', async () => {
    const auto = new TfjsRuntime({ progress: capture() });
    const anyAdapter = new TfjsRuntime({ adapter: 'any' });
    try {
      const chosen = await auto.ready();
      // Where tfjs-node's binding is built, it comes first.
      const native = chosen.name === 'tensorflow';
      if (choice.adapter!.type === 'gpu') {
        expect(chosen.name).toBe(native ? 'tensorflow' : 'webgpu');
        await expect(new TfjsRuntime({ backend: 'webgpu', adapter: 'gpu' }).ready()).resolves.toMatchObject({ name: 'webgpu' });
      } else {
        expect(chosen.name).toBe(native ? 'tensorflow' : 'wasm');
        expect(chosen.reason).toMatch(/webgpu unavailable \(the only WebGPU adapter is .+ a CPU implementation.* \(slower than wasm; adapter 'any' would accept it\)\)/);
        await expect(new TfjsRuntime({ backend: 'webgpu', adapter: 'gpu' }).ready()).rejects.toThrow(
          /backend 'webgpu' was requested but is not available: the only WebGPU adapter is .+, and adapter 'gpu' accepts only a GPU\. To fix: install the GPU's Vulkan driver/,
        );
      }
      expect((await anyAdapter.ready()).name).toBe(native ? 'tensorflow' : 'webgpu');
    } finally {
      await Promise.all([auto.dispose(), anyAdapter.dispose()]);
    }
    expect(() => new TfjsRuntime({ adapter: 'cpu' as never })).toThrow(/option adapter must be one of auto, gpu, any; got "cpu"/);
    expect(() => new TfjsRuntime({ backend: 'wasm', adapter: 'gpu' })).toThrow(/option adapter applies to the webgpu backend, but backend is 'wasm'/);
  });

  it('without any Vulkan driver, fails naming the packages to install', () => {
    const nowhere = '/nonexistent/vulkan/icd.json';
    const run = runModule(
      "import { TfjsRuntime } from '@transformaly/runtime-tfjs'; await new TfjsRuntime({ backend: 'webgpu', adapter: 'any' }).ready();",
      { VK_DRIVER_FILES: nowhere, VK_ICD_FILENAMES: nowhere },
    );
    expect(run.status).not.toBe(0);
    expect(run.stderr).toMatch(
      /backend 'webgpu' was requested but is not available: Dawn found no WebGPU adapter \(no Vulkan driver answered\); install a Vulkan loader and driver: on Debian\/Ubuntu `apt-get install libvulkan1 mesa-vulkan-drivers`/,
    );
  });

  it('turns a device error (a tensor larger than one storage binding) into an error naming the cause', () => {
    // In a process of its own: an invalid command buffer also drops the other work submitted with it.
    const run = runModule(`
      import { TfjsRuntime } from '@transformaly/runtime-tfjs';
      import { OnnxGraph, serializeOnnxModel } from '@transformaly/core';
      const runtime = new TfjsRuntime({ backend: 'webgpu', adapter: 'any' });
      const { adapter } = await runtime.ready();
      const g = new OnnxGraph('add');
      g.output(g.op('Add', [g.input('x', 'float32', ['N']), g.scalar(1)], {}, { output: 'y' }), 'float32', ['N']);
      const session = await runtime.createSession(await serializeOnnxModel(g));
      const n = adapter.maxStorageBufferBindingSize / 4 + 1024;
      await session.run({ x: { dims: [n], data: new Float32Array(n) } });
    `);
    expect(run.status).not.toBe(0);
    expect(run.stderr).toMatch(/the WebGPU device rejected work, so the results of a session run \(and of any WebGPU work of this process since\) are invalid: .*maxStorageBufferBindingSize: use smaller batches/);
  });
});

describe('ONNX graphs on webgpu against onnxruntime', () => {
  for (const arch of ['a', 'b']) {
    it(`ViT architecture ${arch}: features and every block's input and output within 1e-4, read back once each`, async () => {
      const checkpoint = join(GOLDEN, arch, 'hf');
      const [reference, ours] = await Promise.all([loadVitBackbone({ checkpoint }, { runtime: onnx }), loadVitBackbone({ checkpoint }, { runtime: gpu })]);
      try {
        const { imageSize, depth } = ours.info;
        const pixels = randomTensor([3, 3, imageSize[0], imageSize[1]], 7);
        const taps = Array.from({ length: depth }, (_, i) => i);
        const want = await reference.forward(pixels, { taps });
        const { value: got, downloads } = await downloadsDuring(() => ours.forward(pixels, { taps }));
        // The features and the depth + 1 hidden states: nothing else leaves the GPU.
        expect(downloads).toBe(1 + depth + 1);
        expectClose(got.features.data, want.features.data, 1e-4, 'features');
        for (const i of taps) {
          expect(got.taps.get(i)!.input.dims).toEqual(want.taps.get(i)!.input.dims);
          expectClose(got.taps.get(i)!.input.data, want.taps.get(i)!.input.data, 1e-4, `block ${i} input`);
          expectClose(got.taps.get(i)!.output.data, want.taps.get(i)!.output.data, 1e-4, `block ${i} output`);
        }
        // Intermediates are freed: the engine holds as much after more batches as before.
        const before = tf.memory();
        for (let i = 0; i < 3; i++) await ours.forward(randomTensor([2, 3, imageSize[0], imageSize[1]], 20 + i), { taps: [0] });
        const after = tf.memory();
        expect([after.numTensors, after.numBytes]).toEqual([before.numTensors, before.numBytes]);
      } finally {
        await Promise.all([reference.dispose(), ours.dispose()]);
      }
    });
  }

  it('computes what onnxruntime computes for every operator in the table', async () => {
    const model = await serializeOnnxModel(operatorGraph());
    const x = randomTensor([5, 4, 6, 6], 11);
    const want = await (await onnx.createSession(model)).run({ x });
    const session = await gpu.createSession(model);
    try {
      const got = await session.run({ x });
      expect(got.y.dims).toEqual(want.y.dims);
      expectClose(got.y.data, want.y.data, 1e-4, 'y');
    } finally {
      await session.dispose();
    }
  });
});

describe('students on webgpu', () => {
  it('take the step of the onnxruntime trainer (loss, gradients, weights, moments), reading back only the loss', async () => {
    const initial = initStudentWeights(SPEC, 5);
    const { input, target } = batch(SPEC, 6, 1);
    const ours = await gpu.createStudentTrainer(SPEC, initial, ADAM);
    const ref = await onnx.createStudentTrainer(SPEC, initial, ADAM);
    try {
      const a = await ours.lossAndGradients(input, target);
      const b = await ref.lossAndGradients(input, target);
      expectClose([a.loss], [b.loss], 1e-5, 'loss');
      expect(Object.keys(a.gradients).sort()).toEqual(Object.keys(b.gradients).sort());
      const d = SPEC.width;
      for (const name of Object.keys(b.gradients)) {
        if (name === 'attn.qkv.bias') {
          // The key bias's gradient is exactly zero; only the query and value parts carry information.
          expectClose(a.gradients[name].data.subarray(0, d), b.gradients[name].data.subarray(0, d), 1e-4, 'grad query bias');
          expectClose(a.gradients[name].data.subarray(2 * d), b.gradients[name].data.subarray(2 * d), 1e-4, 'grad value bias');
        } else expectClose(a.gradients[name].data, b.gradients[name].data, 1e-4, `grad ${name}`);
      }
      const { value: loss, downloads } = await downloadsDuring(() => ours.step(input, target));
      expect(downloads).toBe(1);
      expectClose([loss], [await ref.step(input, target)], 1e-5, 'step loss');
      expectSameUpdate(await ours.weights(), await ref.weights(), initial, SPEC, ADAM.lr, 1);
      const [stateA, stateB] = [await ours.exportState(), await ref.exportState()];
      expect(stateA.meta).toEqual(stateB.meta);
      for (const key of Object.keys(stateB.arrays).filter((k) => k.startsWith('exp_avg') && !k.endsWith('qkv.bias'))) {
        expectClose(stateA.arrays[key].data, stateB.arrays[key].data, 1e-4, key);
      }
      expectClose(await ours.discrepancy(input, target), await ref.discrepancy(input, target), 1e-5, 'discrepancy');
    } finally {
      await Promise.all([ours.dispose(), ref.dispose()]);
    }
  });

  it('resume bit-identically from an exported state, and leave a NaN batch without effect', async () => {
    const batches = [1, 2, 3, 4].map((seed) => batch(SPEC, 3, seed));
    const adam = { ...ADAM, lr: 1e-2 };
    const straight = await gpu.createStudentTrainer(SPEC, initStudentWeights(SPEC, 1), adam);
    const first = await gpu.createStudentTrainer(SPEC, initStudentWeights(SPEC, 1), adam);
    const resumed = await gpu.createStudentTrainer(SPEC, initStudentWeights(SPEC, 2), adam);
    try {
      const straightLosses: number[] = [];
      for (const b of batches) straightLosses.push(await straight.step(b.input, b.target));
      const losses: number[] = [];
      for (const b of batches.slice(0, 2)) losses.push(await first.step(b.input, b.target));
      resumed.importState(await first.exportState());
      for (const b of batches.slice(2)) losses.push(await resumed.step(b.input, b.target));
      expect(losses).toEqual(straightLosses);
      const state = await resumed.exportState();
      expect(state).toEqual(await straight.exportState());

      const bad = { dims: [...batches[0].input.dims], data: Float32Array.from(batches[0].input.data) };
      bad.data[5] = Number.NaN;
      expect(await resumed.step(bad, batches[0].target)).toBeNaN();
      expect(await resumed.exportState()).toEqual(state);
    } finally {
      await Promise.all([straight.dispose(), first.dispose(), resumed.dispose()]);
    }
  });

  it('hold as much memory after each epoch as after the first, also with split passes', async () => {
    const split = new TfjsRuntime({ backend: 'webgpu', adapter: 'any', microBatch: 2 });
    const whole = await gpu.createStudentTrainer(SPEC, initStudentWeights(SPEC, 3), ADAM);
    const parts = await split.createStudentTrainer(SPEC, initStudentWeights(SPEC, 3), ADAM);
    try {
      const epoch = [5, 6].map((seed) => batch(SPEC, 5, seed));
      const held: number[][] = [];
      for (let e = 0; e < 3; e++) {
        for (const b of epoch) {
          // Passes of 2, 2 and 1 images take the whole batch's step.
          expectClose([await parts.step(b.input, b.target)], [await whole.step(b.input, b.target)], 1e-5, `epoch ${e} loss`);
          await whole.discrepancy(b.input, b.target);
        }
        const { numTensors, numBytes } = tf.memory();
        held.push([numTensors, numBytes]);
      }
      expect(held[1]).toEqual(held[0]);
      expect(held[2]).toEqual(held[0]);
    } finally {
      await Promise.all([whole.dispose(), parts.dispose(), split.dispose()]);
    }
  });

  it('split a batch into passes whose largest tensor fits one storage binding', () => {
    const vitB: BlockSpec = { width: 768, heads: 12, mlpDim: 3072, tokens: 197, layerNormEps: 1e-6, qkvBias: true };
    // The MLP activations, 197 x 3072 floats = 2,420,736 bytes per image, outgrow the attention maps (1,862,832).
    expect(bindingMicroBatch(vitB, 128 * 2 ** 20)).toBe(55);
    expect(bindingMicroBatch(vitB, 2 ** 32 - 1)).toBe(1774);
    expect(bindingMicroBatch({ ...vitB, tokens: 577, mlpDim: 1024 }, 128 * 2 ** 20)).toBe(8);
    expect(bindingMicroBatch(vitB, 1000)).toBe(1);
  });
});
