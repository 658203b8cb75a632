// Student training on @transformaly/runtime-tfjs (wasm): one step against the onnxruntime trainer from the same
// initial weights, gradient accumulation over split batches against the whole batch, the gradients of torch
// autograd (golden files of scripts/golden/torch_training.py), checkpoints (its own and the onnx trainer's), the
// failure modes, and the plugins: the runtime stage, and a distiller whose students train on tfjs while the teacher
// runs on onnxruntime, which must give the detector scores of an all-onnx run.
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  Rng,
  compileSchema,
  createPipeline,
  initStudentWeights,
  readSafetensors,
  stageResolver,
  stageSlot,
  type AdamSettings,
  type BlockSpec,
  type ImageItem,
  type ImageSource,
  type ProgressReporter,
  type Runtime,
  type StudentTrainer,
  type Tensor,
  type TransformalyConfig,
  type TransformalyPlugin,
} from '@transformaly/core';
import { OnnxRuntime } from '@transformaly/runtime-onnx';
import { TfjsRuntime, WASM_WORKING_SET_BYTES, plugin, studentsPlugin, trainingBytesPerImage, wasmMicroBatch } from '@transformaly/runtime-tfjs';
import { expectClose } from './fixtures/close.js';
import { batch, expectSameUpdate } from './fixtures/students.js';

const GOLDEN = join(import.meta.dirname, 'golden', 'training');
const ADAM: AdamSettings = { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8 };
const SPEC: BlockSpec = { width: 32, heads: 4, mlpDim: 64, tokens: 17, layerNormEps: 1e-6, qkvBias: true };

const quiet: ProgressReporter = { task: () => ({ tick() {}, done() {} }), info() {}, warn() {} };
const onnx = new OnnxRuntime({ threads: 1 });
const tfjs = new TfjsRuntime({ backend: 'wasm', progress: quiet });
const trainers: StudentTrainer[] = [];

afterAll(async () => {
  await Promise.all(trainers.map((t) => t.dispose()));
  await Promise.all([tfjs.dispose(), onnx.dispose()]);
});

async function tfjsTrainer(spec: BlockSpec, weights: Record<string, Tensor>, adam = ADAM, runtime = tfjs): Promise<StudentTrainer> {
  const t = await runtime.createStudentTrainer(spec, weights, adam);
  trainers.push(t);
  return t;
}

async function onnxTrainer(spec: BlockSpec, weights: Record<string, Tensor>, adam = ADAM): Promise<StudentTrainer> {
  const t = await onnx.createStudentTrainer(spec, weights, adam);
  trainers.push(t);
  return t;
}

describe('one training step against the onnxruntime trainer', () => {
  for (const qkvBias of [true, false]) {
    it(`gives the loss, gradients and updated weights of onnxruntime (qkvBias ${qkvBias})`, async () => {
      const spec = { ...SPEC, qkvBias, layerNormEps: qkvBias ? 1e-6 : 1e-12 };
      const initial = initStudentWeights(spec, 5);
      const { input, target } = batch(spec, 6, 1);
      const ours = await tfjsTrainer(spec, initial);
      const ref = await onnxTrainer(spec, initial);

      const a = await ours.lossAndGradients(input, target);
      const b = await ref.lossAndGradients(input, target);
      expectClose([a.loss], [b.loss], 1e-5, 'loss');
      expect(Object.keys(a.gradients).sort()).toEqual(Object.keys(b.gradients).sort());
      for (const name of Object.keys(b.gradients)) {
        expect(a.gradients[name].dims, name).toEqual(b.gradients[name].dims);
        if (name === 'attn.qkv.bias') {
          const d = spec.width;
          expectClose(a.gradients[name].data.subarray(0, d), b.gradients[name].data.subarray(0, d), 1e-4, 'grad query bias');
          expectClose(a.gradients[name].data.subarray(2 * d), b.gradients[name].data.subarray(2 * d), 1e-4, 'grad value bias');
        } else expectClose(a.gradients[name].data, b.gradients[name].data, 1e-4, `grad ${name}`);
      }

      const lossA = await ours.step(input, target);
      const lossB = await ref.step(input, target);
      expectClose([lossA], [lossB], 1e-5, 'step loss');
      expectSameUpdate(await ours.weights(), await ref.weights(), initial, spec, ADAM.lr, 1);
      // The moments after the step, through the shared checkpoint format.
      const stateA = await ours.exportState();
      const stateB = await ref.exportState();
      expect(stateA.meta).toEqual(stateB.meta);
      for (const key of Object.keys(stateB.arrays).filter((k) => k.startsWith('exp_avg/') && !k.endsWith('qkv.bias'))) {
        expectClose(stateA.arrays[key].data, stateB.arrays[key].data, 1e-4, key);
      }

      const d1 = await ours.discrepancy(input, target);
      const d2 = await ref.discrepancy(input, target);
      expectClose(d1, d2, 1e-5, 'discrepancy');
    });
  }
});

describe('gradient accumulation', () => {
  it('splits a batch into micro-batches and takes the whole batch step', async () => {
    const initial = initStudentWeights(SPEC, 9);
    const { input, target } = batch(SPEC, 5, 2);
    const split = new TfjsRuntime({ backend: 'wasm', microBatch: 2, progress: quiet });
    try {
      // Passes of 2, 2 and 1 images against one pass of 5.
      const parts = await tfjsTrainer(SPEC, initial, ADAM, split);
      const whole = await tfjsTrainer(SPEC, initial);
      const a = await parts.lossAndGradients(input, target);
      const b = await whole.lossAndGradients(input, target);
      expectClose([a.loss], [b.loss], 1e-6, 'loss');
      for (const name of Object.keys(b.gradients)) expectClose(a.gradients[name].data, b.gradients[name].data, 1e-5, `grad ${name}`);
      for (const seed of [3, 4]) {
        const next = batch(SPEC, 5, seed);
        expectClose([await parts.step(next.input, next.target)], [await whole.step(next.input, next.target)], 1e-6, `loss ${seed}`);
      }
      expectSameUpdate(await parts.weights(), await whole.weights(), initial, SPEC, ADAM.lr, 2);
      expectClose(await parts.discrepancy(input, target), await whole.discrepancy(input, target), 1e-6, 'discrepancy');
    } finally {
      await split.dispose();
    }
  });

  it('sizes passes on wasm from the ViT-B estimate and what the heap already holds', () => {
    const vitB: BlockSpec = { width: 768, heads: 12, mlpDim: 3072, tokens: 197, layerNormEps: 1e-6, qkvBias: true };
    const perImage = trainingBytesPerImage(vitB);
    // The measured peak of a ViT-B pass: about 41 MB per image at 197 tokens.
    expect(perImage / 1e6).toBeGreaterThan(35);
    expect(perImage / 1e6).toBeLessThan(50);
    expect(perImage * wasmMicroBatch(vitB, 0)).toBeLessThanOrEqual(WASM_WORKING_SET_BYTES);
    // The paper's batch of 32 is one pass on an empty heap, split beside a resident ViT-B teacher and ten students.
    expect(wasmMicroBatch(vitB, 0)).toBeGreaterThanOrEqual(32);
    expect(wasmMicroBatch(vitB, 2.5 * 1024 ** 3)).toBeLessThan(20);
    expect(wasmMicroBatch(vitB, 4 * 1024 ** 3)).toBe(1);
    expect(wasmMicroBatch({ ...vitB, tokens: 577 }, 0)).toBeLessThan(16);
  });
});

describe('cpu backend', () => {
  it('trains as wasm does', async () => {
    const cpu = new TfjsRuntime({ backend: 'cpu', progress: quiet });
    try {
      const initial = initStudentWeights(SPEC, 8);
      const { input, target } = batch(SPEC, 3, 5);
      const onCpu = await tfjsTrainer(SPEC, initial, ADAM, cpu);
      const onWasm = await tfjsTrainer(SPEC, initial);
      expectClose([await onCpu.step(input, target)], [await onWasm.step(input, target)], 1e-5, 'loss');
      expectSameUpdate(await onCpu.weights(), await onWasm.weights(), initial, SPEC, ADAM.lr, 1);
    } finally {
      await cpu.dispose();
    }
  });
});

describe('torch autograd (golden files)', () => {
  for (const block of ['a', 'b']) {
    it(`block ${block}: loss, gradients and discrepancy of torch`, async () => {
      const { metadata, arrays } = await readSafetensors(join(GOLDEN, `block_${block}.safetensors`));
      const spec = JSON.parse(metadata.spec) as BlockSpec;
      const tensor = (name: string): Tensor => ({ dims: [...arrays[name].dims], data: Float32Array.from(arrays[name].data as Float64Array) });
      const weights: Record<string, Tensor> = {};
      for (const name of Object.keys(arrays).filter((k) => k.startsWith('weight/'))) weights[name.slice('weight/'.length)] = tensor(name);
      const t = await tfjsTrainer(spec, weights);
      const { loss, gradients } = await t.lossAndGradients(tensor('input'), tensor('target'));
      expectClose([loss], arrays.loss.data, 1e-5, 'loss');
      for (const name of Object.keys(gradients)) {
        const ref = arrays[`grad/${name}`].data;
        if (name === 'attn.qkv.bias') {
          const d = spec.width;
          expectClose(gradients[name].data.subarray(0, d), ref.subarray(0, d), 1e-4, 'grad query bias');
          expectClose(gradients[name].data.subarray(2 * d), ref.subarray(2 * d), 1e-4, 'grad value bias');
        } else expectClose(gradients[name].data, ref, 1e-4, `grad ${name}`);
      }
      expectClose(await t.discrepancy(tensor('input'), tensor('target')), arrays.discrepancy.data, 1e-5, 'discrepancy');
    });
  }
});

describe('checkpoints and failure modes', () => {
  const batches = [1, 2, 3, 1, 2].map((seed) => batch(SPEC, 3, seed));
  const adam = { ...ADAM, lr: 1e-2 };

  it('continues bit-identically from an exported state as an uninterrupted run', async () => {
    const initial = initStudentWeights(SPEC, 1);
    const straight = await tfjsTrainer(SPEC, initial, adam);
    const straightLosses: number[] = [];
    for (const b of batches) straightLosses.push(await straight.step(b.input, b.target));

    const first = await tfjsTrainer(SPEC, initial, adam);
    const losses: number[] = [];
    for (const b of batches.slice(0, 2)) losses.push(await first.step(b.input, b.target));
    const state = await first.exportState();
    expect(state.meta.step).toBe(2);
    const other = initStudentWeights(SPEC, 2);
    const resumed = await tfjsTrainer(SPEC, other, adam);
    resumed.importState(state);
    for (const b of batches.slice(2)) losses.push(await resumed.step(b.input, b.target));
    expect(losses).toEqual(straightLosses);
    expect(await resumed.exportState()).toEqual(await straight.exportState());
  });

  it("resumes from the onnxruntime trainer's checkpoint (and the reverse) on the same trajectory", async () => {
    const initial = initStudentWeights(SPEC, 3);
    const onnxRun = await onnxTrainer(SPEC, initial, adam);
    for (const b of batches.slice(0, 2)) await onnxRun.step(b.input, b.target);
    const resumed = await tfjsTrainer(SPEC, initialStudent(), adam);
    resumed.importState(await onnxRun.exportState());
    expectClose([await resumed.step(batches[2].input, batches[2].target)], [await onnxRun.step(batches[2].input, batches[2].target)], 1e-5, 'loss');
    const back = await onnxTrainer(SPEC, initialStudent(), adam);
    back.importState(await resumed.exportState());
    expect((await back.exportState()).meta.step).toBe(3);
    expectClose([await back.step(batches[3].input, batches[3].target)], [await onnxRun.step(batches[3].input, batches[3].target)], 1e-5, 'loss after');
  });

  function initialStudent(): Record<string, Tensor> {
    return initStudentWeights(SPEC, 99);
  }

  it('returns a non-finite loss for a batch with NaN and leaves the student untouched', async () => {
    const t = await tfjsTrainer(SPEC, initStudentWeights(SPEC, 4), adam);
    await t.step(batches[0].input, batches[0].target);
    const before = await t.exportState();
    const bad = { dims: [...batches[1].input.dims], data: Float32Array.from(batches[1].input.data) };
    bad.data[5] = Number.NaN;
    expect(Number.isFinite(await t.step(bad, batches[1].target))).toBe(false);
    expect(await t.exportState()).toEqual(before);
    const d = await t.discrepancy(bad, batches[1].target);
    expect(Number.isNaN(d[0])).toBe(true);
    expect(Number.isFinite(d[1])).toBe(true);
  });

  it('serialises concurrent calls so that no update overlaps a pass', async () => {
    const initial = initStudentWeights(SPEC, 6);
    const straight = await tfjsTrainer(SPEC, initial, adam);
    for (const b of batches.slice(0, 3)) await straight.step(b.input, b.target);
    const concurrent = await tfjsTrainer(SPEC, initial, adam);
    await Promise.all(batches.slice(0, 3).map((b) => concurrent.step(b.input, b.target)));
    expect(await concurrent.weights()).toEqual(await straight.weights());
  });

  it('rejects bad weights, batches, settings and states with messages naming them', async () => {
    const weights = initStudentWeights(SPEC, 7);
    const { ['attn.proj.bias']: _dropped, ...missing } = weights;
    await expect(tfjs.createStudentTrainer(SPEC, missing, adam)).rejects.toThrow(/"attn.proj.bias" is missing/);
    await expect(tfjs.createStudentTrainer(SPEC, { ...weights, 'mlp.fc1.weight': { dims: [3, 3], data: new Float32Array(9) } }, adam)).rejects.toThrow(
      /"mlp.fc1.weight" has dims \[3, 3\], expected \[64, 32\]/,
    );
    await expect(tfjs.createStudentTrainer({ ...SPEC, qkvBias: false }, weights, adam)).rejects.toThrow(/unexpected initial weight "attn.qkv.bias" \(spec.qkvBias is false\)/);
    await expect(tfjs.createStudentTrainer({ ...SPEC, heads: 5 }, weights, adam)).rejects.toThrow(/multiple of spec.heads/);
    await expect(tfjs.createStudentTrainer(SPEC, weights, { ...adam, beta2: 1 })).rejects.toThrow(/beta2 must be in \[0, 1\)/);

    const t = await tfjsTrainer(SPEC, weights, adam);
    const { input, target } = batches[0];
    await expect(t.step({ dims: [3, 16, 32], data: new Float32Array(3 * 16 * 32) }, target)).rejects.toThrow(/input has dims \[3, 16, 32\], expected \[N, 17, 32\]/);
    await expect(t.discrepancy(input, { dims: [2, 17, 32], data: new Float32Array(2 * 17 * 32) })).rejects.toThrow(/input has 3 images but target has 2/);
    const state = await t.exportState();
    expect(() => t.importState({ ...state, meta: { ...state.meta, spec: { ...(state.meta.spec as object), width: 64 } } })).toThrow(
      /meta.spec.width is 64 but this trainer's block has 32/,
    );
    const { ['exp_avg_sq/norm2.bias']: _gone, ...partial } = state.arrays;
    expect(() => t.importState({ ...state, arrays: partial })).toThrow(/array "exp_avg_sq\/norm2.bias" is missing/);
    expect(() => t.importState({ ...state, meta: { ...state.meta, format: 'other' } })).toThrow(/meta.format is "other"/);
    expect(await t.exportState()).toEqual(state);
    await t.dispose();
    await expect(t.step(input, target)).rejects.toThrow(/after dispose/);
  });
});

describe('plugins', () => {
  it('makes one runtime per pipeline with the progress reporter, and validates its options', async () => {
    const infos: string[] = [];
    const progress = { ...quiet, info: (m: string) => void infos.push(m) };
    const resolve = await stageResolver<Runtime>(plugin, stageSlot('runtime'), { backend: 'wasm', microBatch: 4 }, { progress });
    const runtime = await resolve();
    expect(runtime).toBeInstanceOf(TfjsRuntime);
    expect((runtime as TfjsRuntime).microBatch).toBe(4);
    await (runtime as TfjsRuntime).ready();
    expect(infos.join('\n')).toMatch(/backend wasm/);
    expect(plugin.name).toBe('@transformaly/runtime-tfjs');
    // One plugin, two stages: the runtime, and the distiller whose students train on tfjs (also the /students entry).
    expect(Object.keys(plugin.stages)).toEqual(['runtime', 'distiller']);
    expect(studentsPlugin).toBe(plugin);
    expect(plugin.aliases).toEqual(['tfjs', 'transformaly-tfjs']);

    const validate = compileSchema(plugin.stages.runtime.optionsSchema);
    expect(validate({ backend: 'wasm', threads: 2, microBatch: 8 })).toBe(true);
    expect(validate({ backend: 'webgl' })).toBe(false);
    expect(validate({ device: 'cuda' })).toBe(false);
    const students = compileSchema(plugin.stages.distiller.optionsSchema);
    expect(students({ blocks: [0, 1], epochs: 2, tfjs: { microBatch: 8 } })).toBe(true);
    expect(students({ tfjs: { backend: 'webgl' } })).toBe(false);
  });

  /** Seeded random RGB images, 3 classes: the first brighter, the others different patterns. */
  function syntheticSource(): ImageSource {
    const classes = ['bright', 'stripes', 'dots'];
    const items = (split: 'train' | 'test') =>
      classes.flatMap((label, c) =>
        Array.from({ length: split === 'train' ? 14 : 6 }, (_, i): ImageItem => ({
          id: `${split}/${label}/${i}`,
          label,
          load: async () => {
            const rng = new Rng(1000 * c + 10 * i + (split === 'train' ? 0 : 5));
            const data = new Float32Array(24 * 24 * 3);
            for (let p = 0; p < data.length; p++) {
              const x = Math.floor(p / 3) % 24;
              const pattern = c === 0 ? 0.7 : c === 1 ? (x % 4 < 2 ? 0.8 : 0.2) : (x * 7) % 5 === 0 ? 0.9 : 0.3;
              data[p] = Math.min(1, Math.max(0, pattern + 0.2 * rng.normal()));
            }
            return { width: 24, height: 24, data };
          },
        })),
      );
    return { name: 'synthetic', classes: async () => classes, items: async (split) => items(split) };
  }

  const sourcePlugin: TransformalyPlugin = {
    name: 'synthetic',
    version: '1.0.0',
    stages: { data: { create: () => syntheticSource() } },
  };

  function config(distiller: string, extra: Record<string, unknown> = {}): TransformalyConfig {
    return {
      data: { use: 'synthetic' },
      protocol: { mode: 'unimodal', classes: ['bright'] },
      backbone: {
        use: 'vit',
        options: {
          random: { seed: 3, arch: { imageSize: [24, 24], patchSize: 6, width: 32, depth: 3, heads: 4, mlpDim: 64, layerNormEps: 1e-6, qkvBias: true } },
        },
      },
      runtime: { use: 'onnx', options: { threads: 1 } },
      distiller: { use: distiller, options: { blocks: [0, 2], epochs: 3, lr: 1e-3, ...extra } },
      batchSize: 8,
      seed: 1,
      validationFraction: 0.25,
    };
  }

  let reference: Float64Array;
  let ids: string[];
  beforeAll(async () => {
    const pipeline = await createPipeline(config('transformaly'), { progress: quiet, plugins: { synthetic: sourcePlugin } });
    try {
      const [c] = await pipeline.cases();
      const detector = await pipeline.createDetector();
      await detector.fit(c.train);
      const scores = await detector.score(c.test.map((t) => t.item));
      reference = scores.combined;
      ids = scores.ids;
    } finally {
      await pipeline.dispose();
    }
  });

  it('trains the students on tfjs while the teacher runs on onnxruntime, with the scores of an all-onnx run', async () => {
    const infos: string[] = [];
    const progress = { ...quiet, info: (m: string) => void infos.push(m) };
    const pipeline = await createPipeline(config('transformaly-tfjs', { tfjs: { backend: 'wasm', microBatch: 3 } }), {
      progress,
      plugins: { synthetic: sourcePlugin, 'transformaly-tfjs': studentsPlugin },
    });
    try {
      expect((await pipeline.runtime()).name).toBe('onnx');
      const [c] = await pipeline.cases();
      const detector = await pipeline.createDetector();
      await detector.fit(c.train);
      const scores = await detector.score(c.test.map((t) => t.item));
      expect(scores.ids).toEqual(ids);
      expectClose(scores.combined, reference, 1e-4, 'combined scores');
      expect(infos.join('\n')).toMatch(/runtime-tfjs: backend wasm/);
    } finally {
      await pipeline.dispose();
    }
  });
});
