import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  BUILTIN_PLUGINS,
  CHECKPOINT_FILE,
  ConfigError,
  Rng,
  SilentProgress,
  TransformalyDistiller,
  distillerPlugin,
  encodeSafetensors,
  initStudentWeights,
  loadConfigFile,
  readCheckpoint,
  readSafetensors,
  resolveConfig,
  selectBlocks,
  stageResolver,
  stageSlot,
  studentSeed,
  studentShapes,
  type Backbone,
  type BlockSpec,
  type Distiller,
  type DistillerFitContext,
  type DistillerOptions,
  type ProgressReporter,
  type Runtime,
  type StageState,
  type Tensor,
  type TrainableRuntime,
} from '@transformaly/core';
import { loadVitBackbone, readVitCheckpoint } from '@transformaly/backbone-vit';
import { OnnxRuntime } from '@transformaly/runtime-onnx';
import { expectClose } from './fixtures/close.js';

// The parity golden's teacher: a 4-block ViT, width 48, 4 heads, MLP 96, 28 px, patch 4 (50 tokens).
const TEACHER = join(import.meta.dirname, 'golden', 'distill', 'teacher');
const THREADS = 2;

let runtime: TrainableRuntime;
let backbone: Backbone;
let work: string;

beforeAll(async () => {
  runtime = new OnnxRuntime({ threads: THREADS });
  backbone = await loadVitBackbone({ checkpoint: TEACHER }, { runtime });
  work = await mkdtemp(join(tmpdir(), 'distiller-test-'));
});

afterAll(async () => {
  await backbone?.dispose();
  await runtime?.dispose();
  if (work) await rm(work, { recursive: true, force: true });
});

/** Seeded preprocessed pixels [n, 3, 28, 28]; `scale` and `offset` shift the held-out distribution away from training. */
function pixels(n: number, seed: number, scale = 1, offset = 0): Tensor {
  const rng = new Rng(seed);
  const data = new Float32Array(n * 3 * 28 * 28);
  for (let i = 0; i < data.length; i++) data[i] = offset + scale * rng.normal();
  return { dims: [n, 3, 28, 28], data };
}

interface Data {
  train: Tensor[];
  heldOut: Tensor[];
}

function dataset(trainImages = 48, batch = 16, heldOutImages = 16): Data {
  const train: Tensor[] = [];
  for (let i = 0; i < trainImages / batch; i++) train.push(pixels(batch, 100 + i));
  return { train, heldOut: heldOutImages > 0 ? [pixels(heldOutImages, 7, 1.5, 0.5)] : [] };
}

/** A fit context over fixed batches: epoch e visits the training batches in a seeded order, as the Detector does. */
function contextOf(
  data: Data,
  extra: Partial<DistillerFitContext> & { onBatch?: (epoch: number, batch: number) => void; epochsAsked?: number[] } = {},
): DistillerFitContext {
  return {
    backbone,
    async *trainBatches(epoch: number) {
      extra.epochsAsked?.push(epoch);
      const order = new Rng(1000 + epoch).shuffle(data.train.map((_, i) => i));
      for (const [k, i] of order.entries()) {
        yield data.train[i];
        extra.onBatch?.(epoch, k + 1);
      }
    },
    async *validationBatches() {
      yield* data.heldOut;
    },
    ...extra,
  };
}

function distiller(options: DistillerOptions, progress: ProgressReporter = new SilentProgress()): TransformalyDistiller {
  return new TransformalyDistiller(options, runtime, progress);
}

function expectSameState(a: StageState, b: StageState, rel: number): void {
  expect(Object.keys(a.arrays).sort()).toEqual(Object.keys(b.arrays).sort());
  for (const name of Object.keys(a.arrays)) expectClose(a.arrays[name].data, b.arrays[name].data, rel, name, { allowZeroReference: true });
  expect(a.meta.blocks).toEqual(b.meta.blocks);
  expect(a.meta.bestEpochs).toEqual(b.meta.bestEpochs);
}

async function dir(name: string): Promise<string> {
  return mkdtemp(join(work, `${name}-`));
}

describe('student initialisation', () => {
  const spec: BlockSpec = { width: 64, heads: 4, mlpDim: 256, layerNormEps: 1e-6, qkvBias: true, tokens: 10 };

  it('draws xavier-uniform q, k, v, proj, fc1 and fc2 on their own shapes, tiny normal biases, LayerNorm 1/0', () => {
    const w = initStudentWeights(spec, 3);
    const d = spec.width;
    const m = spec.mlpDim;
    const uniformCheck = (values: Float32Array, fanIn: number, fanOut: number, what: string) => {
      const bound = Math.sqrt(6 / (fanIn + fanOut));
      let max = 0;
      let sum = 0;
      let sq = 0;
      for (const v of values) {
        max = Math.max(max, Math.abs(v));
        sum += v;
        sq += v * v;
      }
      const n = values.length;
      expect(max, `${what} within the xavier bound`).toBeLessThanOrEqual(bound);
      // The largest draw of thousands reaches the bound: this fails if the bound were that of another shape.
      expect(max, `${what} reaches its bound`).toBeGreaterThan(0.99 * bound);
      expect(Math.abs(sum / n), `${what} mean`).toBeLessThan((4 * bound) / Math.sqrt(3 * n));
      expectClose([Math.sqrt(sq / n)], [bound / Math.sqrt(3)], 0.05, `${what} std against that of U(-b, b)`);
    };
    const qkv = w['attn.qkv.weight'];
    expect(qkv.dims).toEqual([3 * d, d]);
    for (const [part, name] of ['q', 'k', 'v'].entries()) uniformCheck(qkv.data.subarray(part * d * d, (part + 1) * d * d), d, d, name);
    uniformCheck(w['attn.proj.weight'].data, d, d, 'proj');
    expect(w['mlp.fc1.weight'].dims).toEqual([m, d]);
    uniformCheck(w['mlp.fc1.weight'].data, d, m, 'fc1');
    expect(w['mlp.fc2.weight'].dims).toEqual([d, m]);
    uniformCheck(w['mlp.fc2.weight'].data, m, d, 'fc2');

    const biases = ['attn.qkv.bias', 'attn.proj.bias', 'mlp.fc1.bias', 'mlp.fc2.bias'].flatMap((name) => Array.from(w[name].data));
    const mean = biases.reduce((a, b) => a + b, 0) / biases.length;
    const std = Math.sqrt(biases.reduce((a, b) => a + (b - mean) ** 2, 0) / biases.length);
    expect(std / 1e-6).toBeGreaterThan(0.9);
    expect(std / 1e-6).toBeLessThan(1.1);
    expect(Math.abs(mean)).toBeLessThan(1e-7);
    for (const norm of ['norm1', 'norm2']) {
      expect(Array.from(w[`${norm}.weight`].data).every((v) => v === 1)).toBe(true);
      expect(Array.from(w[`${norm}.bias`].data).every((v) => v === 0)).toBe(true);
    }
  });

  it('is reproducible from its seed, differs between seeds, and has no qkv bias when the teacher has none', () => {
    const a = initStudentWeights(spec, 5);
    expect(initStudentWeights(spec, 5)['mlp.fc1.weight'].data).toEqual(a['mlp.fc1.weight'].data);
    expect(initStudentWeights(spec, 6)['mlp.fc1.weight'].data).not.toEqual(a['mlp.fc1.weight'].data);
    expect(studentSeed(0, 2)).not.toBe(studentSeed(0, 3));
    expect(studentSeed(1, 2)).not.toBe(studentSeed(0, 2));
    expect(Object.keys(initStudentWeights({ ...spec, qkvBias: false }, 5))).not.toContain('attn.qkv.bias');
  });
});

describe('block selection', () => {
  it('understands a range, a list and the last n blocks', () => {
    expect(selectBlocks({ from: 2, to: 12 }, 12, 'vit')).toEqual([2, 3, 4, 5, 6, 7, 8, 9, 10, 11]);
    expect(selectBlocks([11, 3, 7], 12, 'vit')).toEqual([3, 7, 11]);
    expect(selectBlocks({ last: 1 }, 12, 'vit')).toEqual([11]);
    expect(selectBlocks({ last: 3 }, 4, 'vit')).toEqual([1, 2, 3]);
    expect(distiller({}).blocks).toEqual([2, 3, 4, 5, 6, 7, 8, 9, 10, 11]);
  });

  it('refuses selections outside the backbone, naming the blocks and the depth', () => {
    expect(() => selectBlocks({ from: 2, to: 12 }, 4, 'tiny')).toThrow(/blocks 4, 5, 6, 7, 8, 9, 10, 11, but the backbone tiny has 4 blocks \(0-based: 0\.\.3\)/);
    expect(() => selectBlocks([1, 4], 4, 'tiny')).toThrow(/selects block 4, but the backbone tiny has 4 blocks/);
    expect(() => selectBlocks({ last: 5 }, 4, 'tiny')).toThrow(/last 5 blocks, but the backbone tiny has only 4 blocks/);
  });

  it('validates options with errors naming the field', () => {
    expect(() => distiller({ blocks: { from: 3, to: 3 } })).toThrow(/distiller\.options\.blocks.*"from" below "to"/s);
    expect(() => distiller({ blocks: [] })).toThrow(ConfigError);
    expect(() => distiller({ blocks: [1, 1] })).toThrow(/distiller\.options\.blocks/);
    expect(() => distiller({ epochs: 0 } as DistillerOptions)).toThrow(/distiller\.options\.epochs/);
    expect(() => distiller({ batchSize: 32 } as DistillerOptions)).toThrow(/distiller\.options\.batchSize.*unknown key/s);
    expect(() => distiller({ betas: [0.9] as unknown as [number, number] })).toThrow(/distiller\.options\.betas/);
  });

  it('fails before training when the selection does not fit the backbone', async () => {
    const d = distiller({ epochs: 1 });
    await expect(d.fit(contextOf(dataset()))).rejects.toThrow(/selects blocks 4, 5, .*11, but the backbone .* has 4 blocks/);
  });

  it('knows { last: n } blocks only once fitted', async () => {
    const d = distiller({ blocks: { last: 1 }, epochs: 1 });
    expect(() => d.blocks).toThrow(/depend on the backbone's depth/);
    await d.fit(contextOf(dataset(16, 16)));
    expect(d.blocks).toEqual([3]);
    await d.dispose();
  });
});

describe('training', () => {
  it('keeps, for each student, the epoch with the lowest held-out loss', async () => {
    // A high learning rate and held-out images unlike the training ones make held-out losses rise and fall.
    const d = distiller({ blocks: [1, 2, 3], epochs: 4, lr: 0.03 });
    const data = dataset();
    await d.fit(contextOf(data));
    const history = d.history!;
    expect(history.train).toHaveLength(4);
    expect(history.validation).toHaveLength(4);
    const best = d.bestEpochs!;
    for (let i = 0; i < 3; i++) {
      const losses = history.validation.map((row) => row[i]!);
      expect(best[i]).toBe(losses.indexOf(Math.min(...losses)));
    }
    // The test is only meaningful if some student's best epoch is not its last one.
    expect(best.some((e) => e !== 3)).toBe(true);
    // The kept weights are that epoch's: their held-out discrepancy reproduces its held-out loss.
    const output = await backbone.forward(data.heldOut[0], { taps: [1, 2, 3] });
    const features = await d.features(output);
    expect([features.rows, features.cols]).toEqual([16, 3]);
    for (let i = 0; i < 3; i++) {
      let mean = 0;
      for (let r = 0; r < features.rows; r++) mean += features.data[r * 3 + i] / features.rows;
      expectClose([mean], [history.validation[best[i]][i]!], 1e-5, `block ${i + 1}: held-out discrepancy of the kept weights`);
    }
    await d.dispose();
  });

  it('resumes an interrupted fit from its checkpoint and ends with the same students', async () => {
    const options: DistillerOptions = { blocks: [1, 3], epochs: 3, seed: 11 };
    const data = dataset();
    const straightDir = await dir('straight');
    const straight = distiller(options);
    await straight.fit(contextOf(data, { checkpointDir: straightDir }));
    const expected = straight.exportState();

    const checkpointDir = await dir('interrupted');
    const controller = new AbortController();
    const first = distiller(options);
    const killed = first.fit(
      contextOf(data, {
        checkpointDir,
        signal: controller.signal,
        // "Killed" in the middle of the second epoch, after its second batch.
        onBatch: (epoch, batch) => {
          if (epoch === 1 && batch === 2) controller.abort(new Error('killed'));
        },
      }),
    );
    await expect(killed).rejects.toThrow('killed');
    const saved = await readCheckpoint(checkpointDir);
    expect(saved?.epochsDone).toBe(1);

    const epochsAsked: number[] = [];
    const resumed = distiller(options);
    await resumed.fit(contextOf(data, { checkpointDir, epochsAsked }));
    expect(epochsAsked).toEqual([1, 2]);
    expectSameState(resumed.exportState(), expected, 1e-6);
    expect(resumed.history).toEqual(straight.history);

    // A checkpoint of a finished fit restores the students without training.
    const again = distiller(options);
    const asked: number[] = [];
    await again.fit(contextOf(data, { checkpointDir, epochsAsked: asked }));
    expect(asked).toEqual([]);
    expectSameState(again.exportState(), expected, 0);
    await Promise.all([straight.dispose(), resumed.dispose(), again.dispose()]);
  });

  it('refuses to resume a checkpoint written with another setup', async () => {
    const checkpointDir = await dir('setup');
    const data = dataset(16, 16);
    await distiller({ blocks: [3], epochs: 1, lr: 1e-3 }).fit(contextOf(data, { checkpointDir }));
    await expect(distiller({ blocks: [3], epochs: 2, lr: 2e-3 }).fit(contextOf(data, { checkpointDir }))).rejects.toThrow(
      /written by a different training setup \(adam\.lr: saved 0\.001, now 0\.002\)/,
    );
  });

  it('stops on a non-finite loss, naming the epoch and block, and keeps the last good checkpoint', async () => {
    const checkpointDir = await dir('nonfinite');
    const data = dataset();
    const bad = pixels(16, 9);
    bad.data[5] = Number.NaN;
    const context = contextOf(data, { checkpointDir });
    const clean = context.trainBatches;
    context.trainBatches = async function* (epoch) {
      let k = 0;
      // The second batch of the second epoch is corrupt.
      for await (const batch of clean(epoch)) yield epoch === 1 && ++k === 2 ? bad : batch;
    };
    const d = distiller({ blocks: [2, 3], epochs: 3 });
    await expect(d.fit(context)).rejects.toThrow(
      /non-finite training loss \(NaN\) for the student of block 2 at epoch 2\/3, batch 2; training stopped \(the checkpoint of epoch 1 in .* is kept\)/,
    );
    const saved = await readCheckpoint(checkpointDir);
    expect(saved?.epochsDone).toBe(1);
    expect(saved?.history.train).toHaveLength(1);
    for (const s of saved!.students) for (const t of Object.values(s.best)) expect(t.data.every(Number.isFinite)).toBe(true);
    expect(() => d.exportState()).toThrow(/needs a fitted distiller/);
  });

  it('honours the abort signal between batches', async () => {
    const controller = new AbortController();
    controller.abort(new Error('stop now'));
    await expect(distiller({ blocks: [3], epochs: 1 }).fit(contextOf(dataset(), { signal: controller.signal }))).rejects.toThrow('stop now');
  });

  it('keeps the last epoch when there are no held-out images, and says so', async () => {
    const warnings: string[] = [];
    const progress: ProgressReporter = { task: () => ({ tick() {}, done() {} }), info() {}, warn: (m) => void warnings.push(m) };
    const d = distiller({ blocks: [3], epochs: 2 }, progress);
    await d.fit(contextOf(dataset(32, 16, 0)));
    expect(d.bestEpochs).toEqual([1]);
    expect(d.history!.validation).toEqual([[null], [null]]);
    expect(warnings.join('\n')).toMatch(/no held-out images/);
    await d.dispose();
  });
});

describe('state', () => {
  it('exports the best students and restores them for scoring without retraining', async () => {
    const d = distiller({ blocks: { from: 2, to: 4 }, epochs: 2 });
    await d.fit(contextOf(dataset(32, 16)));
    const state = d.exportState();
    expect(Object.keys(state.arrays)).toContain('block2.attn.qkv.weight');
    expect(Object.keys(state.arrays)).toContain('block3.mlp.fc2.bias');
    // Through the bytes a saved detector holds: safetensors arrays and JSON metadata.
    const file = join(await dir('state'), 'distiller.safetensors');
    await writeFile(file, Buffer.concat(encodeSafetensors(state.arrays)));
    const restoredState: StageState = { meta: JSON.parse(JSON.stringify(state.meta)), arrays: (await readSafetensors(file)).arrays };
    const restored = distiller({ blocks: { from: 2, to: 4 } });
    restored.importState(restoredState);
    expect(restored.blocks).toEqual([2, 3]);
    const output = await backbone.forward(pixels(5, 77), { taps: [2, 3] });
    const a = await d.features(output);
    const b = await restored.features(output);
    expect(b.data).toEqual(a.data);
    expect(restored.history).toEqual(d.history);

    expect(() => distiller({ blocks: [1, 2] }).importState(restoredState)).toThrow(/students for blocks \[2,3\] but the options select \[1, 2\]/);
    expect(() => distiller({ blocks: { last: 3 } }).importState(restoredState)).toThrow(/students for blocks \[2,3\]/);
    const missing = { meta: restoredState.meta, arrays: { ...restoredState.arrays } };
    delete missing.arrays['block3.norm1.weight'];
    expect(() => distiller({ blocks: [2, 3] }).importState(missing)).toThrow(/"block3\.norm1\.weight" is missing/);
    await expect(distiller({}).features(output)).rejects.toThrow(/needs a fitted distiller/);
    await Promise.all([d.dispose(), restored.dispose()]);
  });

  it('starts from given initial weights', async () => {
    // Students initialised with the teacher's own block reproduce it: the first batch's loss (computed before any
    // update) is zero up to float32 rounding, while the default random start is far from it.
    const { weights } = await readVitCheckpoint(TEACHER);
    const spec: BlockSpec = { width: 48, heads: 4, mlpDim: 96, layerNormEps: 1e-6, qkvBias: true, tokens: 50 };
    const teacherBlock = Object.fromEntries(Object.keys(studentShapes(spec)).map((name) => [`block3.${name}`, weights.get(`blocks.3.${name}`)!]));
    const file = join(await dir('init'), 'students.safetensors');
    await writeFile(file, Buffer.concat(encodeSafetensors(teacherBlock)));
    // One batch, so the epoch's training loss is that of the first step.
    const data = dataset(16, 16);
    const fromTeacher = distiller({ blocks: [3], epochs: 1, initialWeights: file });
    await fromTeacher.fit(contextOf(data));
    const fromRandom = distiller({ blocks: [3], epochs: 1 });
    await fromRandom.fit(contextOf(data));
    expect(fromTeacher.history!.train[0][0]).toBeLessThan(1e-9);
    expect(fromRandom.history!.train[0][0]).toBeGreaterThan(1e-2);
    await expect(distiller({ blocks: [2], epochs: 1, initialWeights: file }).fit(contextOf(data))).rejects.toThrow(
      /initial student weights .*students\.safetensors: tensor "block2\.norm1\.weight" is missing \(blocks in the file: block3\)/,
    );
    await Promise.all([fromTeacher.dispose(), fromRandom.dispose()]);
  });
});

describe('plugin', () => {
  // Built as a pipeline builds it: the core's binding of the plugin, a new distiller per detector.
  const resolveWith = (rt: Runtime, options: DistillerOptions = {}) =>
    stageResolver<Distiller>(distillerPlugin, stageSlot('distiller'), options, { progress: new SilentProgress(), runtime: rt });

  it('resolves a fresh distiller per request on a trainable runtime', async () => {
    const resolve = await resolveWith(runtime, { blocks: [3] });
    const a = await resolve();
    const b = await resolve();
    expect(a).toBeInstanceOf(TransformalyDistiller);
    expect(a).not.toBe(b);
    expect(a.blocks).toEqual([3]);
    expect(distillerPlugin.name).toBe('transformaly');
  });

  it('names the plugin, its stage and a runtime that cannot train', async () => {
    const inferenceOnly: Runtime = {
      name: 'inference-only',
      device: 'cpu',
      threads: 1,
      canTrain: false,
      createSession: () => Promise.reject(new Error('unused')),
      dispose: async () => {},
    };
    await expect((await resolveWith(inferenceOnly))()).rejects.toThrow(
      /plugin "transformaly" \(distiller\): creating a distiller failed: .*runtime "inference-only" cannot train \(its canTrain is false\)/,
    );
    const noTrainer = await resolveWith({ ...inferenceOnly, name: 'half-done', canTrain: true });
    await expect(noTrainer()).rejects.toThrow(/runtime "half-done" has no createStudentTrainer/);
  });
});

// The checkpoint file is where the docs say it is.
it('writes its checkpoint as one file in the checkpoint folder', async () => {
  const checkpointDir = await dir('file');
  await distiller({ blocks: [3], epochs: 1 }).fit(contextOf(dataset(16, 16), { checkpointDir }));
  const { metadata, arrays } = await readSafetensors(join(checkpointDir, CHECKPOINT_FILE));
  expect(Object.keys(metadata)).toEqual(['transformaly.distiller.checkpoint']);
  expect(Object.keys(arrays).some((k) => k.startsWith('block3/trainer/'))).toBe(true);
  expect(Object.keys(arrays).some((k) => k.startsWith('block3/best/'))).toBe(true);
});

describe('presets', () => {
  it.each(['paper', 'cpu'])('presets/%s.config.ts is a valid config for the transformaly distiller', async (name) => {
    const { config, file } = await loadConfigFile({ configPath: join(import.meta.dirname, '..', 'presets', `${name}.config.ts`) });
    const { config: resolved } = await resolveConfig(config, { file, baseDir: dirname(file), builtins: BUILTIN_PLUGINS });
    const stage = resolved.distiller as { use: string; options: DistillerOptions };
    expect(stage.use).toBe('transformaly');
    const d = distiller(stage.options);
    if (name === 'paper') {
      expect(d.blocks).toEqual([2, 3, 4, 5, 6, 7, 8, 9, 10, 11]);
      expect(d.options.epochs).toBe(30);
      expect(d.options.adam).toEqual({ lr: 1e-4, beta1: 0.9, beta2: 0.999, eps: 1e-8 });
      expect(resolved.batchSize).toBe(32);
    } else {
      expect(selectBlocks(d.options.blocks, 12, 'ViT-B/16')).toEqual([11]);
    }
  });
});
