// The teacher cache (core/src/distill/teacher-cache.ts): a fit that runs the teacher once per image and replays its
// taps must train the same students, and score the same, as the fit that streams the teacher every epoch, whether
// the taps stay in memory, go to the spill file, or both, and across an interrupted and resumed fit. The reference
// is the streaming fit (`teacherCache: false`), which test/distill-parity.test.ts ties to PyTorch.
import { spawnSync } from 'node:child_process';
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  ImageDecodeError,
  TeacherCache,
  TransformalyDistiller,
  auroc,
  createPipeline,
  roundToHalf,
  type Backbone,
  type DistillerOptions,
  type ImageItem,
  type LabelledItem,
  type ProgressReporter,
  type StageState,
  type Tensor,
} from '@transformaly/core';
import { expectClose } from './fixtures/close.js';

const repo = resolve(dirname(fileURLToPath(import.meta.url)), '..');
// The parity golden's teacher: 4 blocks, width 48, 28 px, patch 4 (50 tokens): one image's record of blocks 1..3
// (hidden states 1..4) is 4 x 50 x 48 float32 = 38,400 bytes.
const TEACHER = join(repo, 'test', 'golden', 'distill', 'teacher');
const RECORD_BYTES = 4 * 50 * 48 * 4;
const BLOCKS = [1, 2, 3];
const EPOCHS = 3;

const quiet: ProgressReporter = { task: () => ({ tick() {}, done() {} }), info() {}, warn() {} };

let work: string;
let train: ImageItem[];
let test: LabelledItem[];

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'teacher-cache-test-'));
  const pipeline = await createPipeline(config({}), { baseDir: repo, progress: quiet });
  const [trouser] = await pipeline.cases();
  await pipeline.dispose();
  train = trouser.train;
  test = trouser.test.filter((_, i) => i % 4 === 0);
});

afterAll(async () => {
  if (work) await rm(work, { recursive: true, force: true });
});

function config(teacherCache: DistillerOptions['teacherCache'], extra: Record<string, unknown> = {}) {
  return {
    data: { use: 'idx', options: { dir: './demo/fashion-mnist', classNames: 'fashion-mnist' } },
    protocol: { mode: 'unimodal' as const, classes: ['Trouser'] },
    backbone: { use: 'vit', options: { checkpoint: TEACHER } },
    runtime: { use: 'onnx', options: { threads: 2 } },
    distiller: { use: 'transformaly', options: { blocks: BLOCKS, epochs: EPOCHS, lr: 1e-3, seed: 3, teacherCache } },
    batchSize: 16,
    validationFraction: 0.2,
    seed: 5,
    ...extra,
  };
}

interface Fitted {
  states: Record<string, StageState>;
  history: TransformalyDistiller['history'];
  scores: { pretrained: Float64Array; finetuned: Float64Array; combined: Float64Array };
  auroc: { pretrained: number; finetuned: number; combined: number };
  /** Images that went through the teacher during the fit. */
  teacherImages: number;
  /** What was in the checkpoint folder after each epoch's progress report. */
  filesDuringFit: string[][];
}

/** Fits on the Trouser images (or `items`) and scores the test images, counting the teacher's images. */
async function fitWith(
  teacherCache: DistillerOptions['teacherCache'],
  options: { checkpointDir?: string; signal?: AbortSignal; items?: ImageItem[]; skipBadFiles?: boolean; onEpoch?: (epoch: number) => void } = {},
): Promise<Fitted> {
  const filesDuringFit: string[][] = [];
  const progress: ProgressReporter = {
    ...quiet,
    task: (label) => ({
      tick() {},
      done() {
        const epoch = /^distill epoch (\d+)\//.exec(label);
        if (epoch && options.checkpointDir) void readdir(options.checkpointDir).then((files) => filesDuringFit.push(files.sort()));
        if (epoch) options.onEpoch?.(Number(epoch[1]));
      },
    }),
  };
  const pipeline = await createPipeline(config(teacherCache, { skipBadFiles: options.skipBadFiles ?? false }), { baseDir: repo, progress });
  try {
    const backbone = await pipeline.backbone();
    let teacherImages = 0;
    const forward = backbone.forward.bind(backbone);
    backbone.forward = (pixels, opts) => {
      teacherImages += pixels.dims[0];
      return forward(pixels, opts);
    };
    const detector = await pipeline.createDetector();
    await detector.fit(options.items ?? train, { checkpointDir: options.checkpointDir, signal: options.signal });
    const fitImages = teacherImages;
    const scores = await detector.score(test.map((t) => t.item));
    const anomalous = test.map((t) => t.anomalous);
    const aurocOf = (s: Float64Array) => auroc(Array.from(s, (v) => -v), anomalous);
    return {
      states: detector.exportStates(),
      history: (detector.parts.distiller as TransformalyDistiller).history,
      scores: { pretrained: scores.pretrained, finetuned: scores.finetuned!, combined: scores.combined },
      auroc: { pretrained: aurocOf(scores.pretrained), finetuned: aurocOf(scores.finetuned!), combined: aurocOf(scores.combined) },
      teacherImages: fitImages,
      filesDuringFit,
    };
  } finally {
    await pipeline.dispose();
  }
}

function expectSameFit(actual: Fitted, expected: Fitted): void {
  const distiller = (f: Fitted) => f.states.distiller;
  expect(distiller(actual).meta.bestEpochs).toEqual(distiller(expected).meta.bestEpochs);
  for (const name of Object.keys(distiller(expected).arrays)) {
    expectClose(distiller(actual).arrays[name].data, distiller(expected).arrays[name].data, 1e-5, `student ${name}`, { allowZeroReference: true });
  }
  for (const kind of ['train', 'validation'] as const) {
    expectClose(actual.history![kind].flat() as number[], expected.history![kind].flat() as number[], 1e-5, `${kind} losses`);
  }
  for (const space of ['pretrained', 'finetuned', 'combined'] as const) {
    expectClose(actual.scores[space], expected.scores[space], 1e-5, `${space} scores`);
    expect(actual.auroc[space], `${space} AUROC`).toBeCloseTo(expected.auroc[space], 9);
  }
}

let streamed: Fitted;

describe('a fit with the teacher cache', () => {
  beforeAll(async () => {
    streamed = await fitWith(false);
  });

  it('streams the teacher every epoch without it, and runs it once per image with it', async () => {
    const images = train.length;
    // Streaming: every epoch over the fit and held-out images, then the features of both.
    expect(streamed.teacherImages).toBe((EPOCHS + 1) * images);
    const cached = await fitWith({});
    expect(cached.teacherImages).toBe(images);
    expectSameFit(cached, streamed);
    // The AUROCs are those of a working detector, not of chance.
    expect(streamed.auroc.combined).toBeGreaterThan(0.9);
  });

  it.each([
    ['every record in the spill file', 0],
    ['records in memory and in the spill file', (30 * RECORD_BYTES) / 2 ** 20],
  ])('trains the same students with %s, and deletes the file when the fit ends', async (_, memoryMiB) => {
    const checkpointDir = await mkdtemp(join(work, 'spill-'));
    const cached = await fitWith({ memoryMiB }, { checkpointDir });
    expectSameFit(cached, streamed);
    // The spill file lived in the checkpoint folder during the fit and is gone after it.
    const spill = /^transformaly-teacher-cache-.*\.tmp$/;
    expect(cached.filesDuringFit.length).toBe(EPOCHS);
    for (const files of cached.filesDuringFit) expect(files.filter((f) => spill.test(f))).toHaveLength(1);
    expect((await readdir(checkpointDir)).filter((f) => spill.test(f))).toEqual([]);
  });

  it('resumes an interrupted fit: the first epoch after the checkpoint records again, and the students are the same', async () => {
    const checkpointDir = await mkdtemp(join(work, 'resume-'));
    const controller = new AbortController();
    await expect(
      fitWith({ memoryMiB: (30 * RECORD_BYTES) / 2 ** 20 }, { checkpointDir, signal: controller.signal, onEpoch: (e) => e === 1 && controller.abort(new Error('killed')) }),
    ).rejects.toThrow('killed');
    // The failed fit deleted its spill file too.
    expect((await readdir(checkpointDir)).sort()).toEqual(['distiller-checkpoint.safetensors']);
    const resumed = await fitWith({ memoryMiB: (30 * RECORD_BYTES) / 2 ** 20 }, { checkpointDir });
    expect(resumed.teacherImages).toBe(train.length);
    expectSameFit(resumed, streamed);
  });

  it('leaves out files that cannot be decoded in the same batches as the streaming fit', async () => {
    const broken = (id: string): ImageItem => ({
      id,
      label: 'Trouser',
      load: async () => {
        throw new ImageDecodeError(id, 'not an image');
      },
    });
    const items = [...train.slice(0, 7), broken('bad-1.png'), ...train.slice(7, 40), broken('bad-2.png'), ...train.slice(40)];
    const stream = await fitWith(false, { items, skipBadFiles: true });
    const cached = await fitWith({}, { items, skipBadFiles: true });
    expect(cached.teacherImages).toBe(train.length);
    expectSameFit(cached, stream);
  });
});

it('deletes its spill file when the process exits without ending the fit (a second Ctrl-C)', async () => {
  const dir = await mkdtemp(join(work, 'exit-'));
  // A process that records taps into a spill file and exits at once; the built package, as a user's program runs it.
  const script = join(dir, 'exit.mjs');
  await writeFile(
    script,
    `import { existsSync } from 'node:fs';
const { TeacherCache } = await import(${JSON.stringify(join(repo, 'core', 'dist', 'index.js'))});
const tensor = (n) => ({ dims: [n, 2, 3], data: new Float32Array(n * 6).fill(1) });
const backbone = { info: {}, forward: async (pixels) => ({ features: { rows: pixels.dims[0], cols: 3, data: new Float32Array(pixels.dims[0] * 3) }, taps: new Map([[0, { input: tensor(pixels.dims[0]), output: tensor(pixels.dims[0]) }]]) }) };
async function* batches(order) { yield { pixels: { dims: [order.length, 1], data: new Float32Array(order.length) }, indices: order }; }
const cache = new TeacherCache({ blocks: [0], spec: { width: 3, heads: 1, mlpDim: 3, layerNormEps: 1e-6, qkvBias: true, tokens: 2 }, precision: 'float32', memoryBytes: 0,
  backbone, batchSize: 4, train: { count: 4, batches }, trainOrder: () => [0, 1, 2, 3], validation: { count: 0, batches }, spillDir: ${JSON.stringify(dir)} });
for await (const _ of cache.train(0));
console.log(JSON.stringify({ file: cache.spillFile, existed: existsSync(cache.spillFile), bytes: cache.bytes }));
process.exit(130);
`,
  );
  const child = spawnSync(process.execPath, [script], { encoding: 'utf8' });
  expect(child.status, child.stderr).toBe(130);
  const report = JSON.parse(child.stdout);
  // 4 images x 2 hidden states of 2 x 3 float32.
  expect(report).toMatchObject({ existed: true, bytes: { memory: 0, file: 4 * 2 * 6 * 4 } });
  expect(report.file.startsWith(dir)).toBe(true);
  expect(await readdir(dir)).toEqual(['exit.mjs']);
});

describe('16-bit storage', () => {
  it.each(['float16', 'bfloat16'] as const)('%s: every pass, the first included, gives the taps rounded to it, in memory and from the file', async (precision) => {
    const pipeline = await createPipeline(config({}), { baseDir: repo, progress: quiet });
    try {
      const backbone: Backbone = await pipeline.backbone();
      const images = 40;
      const pixels = pixelBatch(images);
      const spec = { width: 48, heads: 4, mlpDim: 96, layerNormEps: 1e-6, qkvBias: true, tokens: 50 };
      const order = (epoch: number) => Array.from({ length: images }, (_, i) => (i * (2 * epoch + 3)) % images);
      const cache = new TeacherCache({
        blocks: BLOCKS,
        spec,
        precision,
        // Half of the records in memory.
        memoryBytes: (images / 2) * (RECORD_BYTES / 2),
        backbone,
        batchSize: 16,
        train: { count: images, batches: (o) => slicedBatches(pixels, o, 16) },
        trainOrder: order,
        validation: { count: 0, batches: () => slicedBatches(pixels, [], 16) },
        spillDir: work,
      });
      // Per image: the teacher's own taps (hidden states 1..4) and CLS, from the same batches as the first pass.
      const expected = new Map<number, { hidden: Float32Array[]; cls: Float32Array }>();
      for await (const { pixels: batch, indices } of slicedBatches(pixels, order(0), 16)) {
        const out = await backbone.forward(batch, { taps: BLOCKS });
        const hidden = [out.taps.get(1)!.input, ...BLOCKS.map((b) => out.taps.get(b)!.output)];
        indices.forEach((index, j) =>
          expected.set(index, { hidden: hidden.map((t) => rounded(rowOf(t, j), precision)), cls: rowOf({ dims: [], data: out.features.data as Float32Array }, j, 48) }),
        );
      }
      try {
        for (const epoch of [0, 1]) {
          let at = 0;
          for await (const batch of cache.train(epoch)) {
            const indices = order(epoch).slice(at, at + batch.images);
            at += batch.images;
            const hidden = [batch.taps.get(1)!.input, ...BLOCKS.map((b) => batch.taps.get(b)!.output)];
            indices.forEach((index, j) => hidden.forEach((t, h) => expect(rowOf(t, j), `epoch ${epoch} image ${index} hidden ${h + 1}`).toEqual(expected.get(index)!.hidden[h])));
            for (const block of BLOCKS.slice(1)) expect(batch.taps.get(block)!.input).toBe(batch.taps.get(block - 1)!.output);
          }
          expect(at).toBe(images);
        }
        expect(cache.bytes).toEqual({ memory: (images / 2) * (RECORD_BYTES / 2), file: (images / 2) * (RECORD_BYTES / 2) });
        // The CLS features are kept exactly, in the images' own order.
        let index = 0;
        for await (const { output } of cache.outputs('train')) {
          for (let j = 0; j < output.features.rows; j++, index++) expect(Float32Array.from(rowOf({ dims: [], data: output.features.data as Float32Array }, j, 48))).toEqual(expected.get(index)!.cls);
        }
        expect(index).toBe(images);
      } finally {
        await cache.dispose();
      }
      expect(cache.spillFile).toBeDefined();
      expect((await readdir(work)).filter((f) => f.startsWith('transformaly-teacher-cache-'))).toEqual([]);
    } finally {
      await pipeline.dispose();
    }
  });

  it('refuses to resume a float32 checkpoint with float16 taps', async () => {
    const checkpointDir = await mkdtemp(join(work, 'precision-'));
    const pipeline = await createPipeline({ ...config({}), distiller: { use: 'transformaly', options: { blocks: [3], epochs: 1 } } }, { baseDir: repo, progress: quiet });
    try {
      await (await pipeline.createDetector()).fit(train.slice(0, 20), { checkpointDir });
    } finally {
      await pipeline.dispose();
    }
    const half = await createPipeline(
      { ...config({}), distiller: { use: 'transformaly', options: { blocks: [3], epochs: 2, teacherCache: { precision: 'float16' } } } },
      { baseDir: repo, progress: quiet },
    );
    try {
      await expect((await half.createDetector()).fit(train.slice(0, 20), { checkpointDir })).rejects.toThrow(/different training setup \(tapPrecision: saved "float32", now "float16"\)/);
    } finally {
      await half.dispose();
    }
  });
});

function pixelBatch(n: number): Tensor {
  const data = new Float32Array(n * 3 * 28 * 28);
  let s = 1;
  for (let i = 0; i < data.length; i++) data[i] = ((s = (s * 48271) % 2147483647) / 2147483647) * 2 - 1;
  return { dims: [n, 3, 28, 28], data };
}

async function* slicedBatches(pixels: Tensor, order: readonly number[], batchSize: number) {
  const per = 3 * 28 * 28;
  for (let start = 0; start < order.length; start += batchSize) {
    const indices = order.slice(start, start + batchSize);
    const data = new Float32Array(indices.length * per);
    indices.forEach((i, j) => data.set(pixels.data.subarray(i * per, (i + 1) * per), j * per));
    yield { pixels: { dims: [indices.length, 3, 28, 28], data }, indices };
  }
}

/** A copy of row `j` of a batch tensor (`per` values a row; [N, ...] dims give it otherwise). */
function rowOf(t: { dims: number[]; data: Float32Array | Float64Array }, j: number, per = t.data.length / t.dims[0]): Float32Array {
  return Float32Array.from(t.data.subarray(j * per, (j + 1) * per));
}

function rounded(data: Float32Array, precision: 'float16' | 'bfloat16'): Float32Array {
  roundToHalf(precision, data);
  return data;
}
