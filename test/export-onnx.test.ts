// `exportDetector`: a saved detector as one ONNX model, run by onnxruntime-node (not by the project's own runtime
// plugin), must give the saved detector's scores and decisions, for every built-in scorer and combiner, with and
// without a distiller, with the weights embedded or beside the file, and with the preprocessing inside the graph.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as ort from 'onnxruntime-node';
import onnxProto from 'onnx-proto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { expectClose } from './fixtures/close.js';
import { fitAndSave, NegativeNormScorer, type SavedDetector } from './fixtures/saved-detector.js';
import {
  createPreprocessor,
  exportDetector,
  loadPlugin,
  openDetector,
  type DensityScorer,
  type ImageItem,
  type StageRef,
  type Tensor,
  type TransformalyConfig,
  type TransformalyPlugin,
} from '@transformaly/core';

const repo = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const work = mkdtempSync(join(tmpdir(), 'transformaly-export-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

const tinyVit = { random: { seed: 5, arch: { imageSize: [28, 28], patchSize: 7, width: 32, depth: 3, heads: 2, mlpDim: 64, layerNormEps: 1e-6, qkvBias: true } } };
const distiller = { use: 'transformaly', options: { blocks: { last: 2 }, epochs: 2 } };

function config(extra: Partial<TransformalyConfig>): TransformalyConfig {
  return {
    data: { use: 'idx', options: { dir: join(repo, 'demo', 'fashion-mnist'), classNames: 'fashion-mnist' } },
    protocol: { mode: 'unimodal', classes: ['Trouser'], limit: { train: 40, testPerClass: 3 } },
    backbone: { use: 'vit', options: tinyVit },
    runtime: { use: 'onnx', options: { threads: 1 } },
    batchSize: 10,
    ...extra,
  };
}

/** The test images as the project preprocesses them, and as raw 8-bit NHWC pixels. */
async function inputs(items: ImageItem[], spec: Parameters<typeof createPreprocessor>[0]): Promise<{ pixels: Tensor; raw: Uint8Array }> {
  const images = await Promise.all(items.map((item) => item.load()));
  const pixels = await createPreprocessor(spec).run(images);
  const raw = new Uint8Array(images.reduce((n, im) => n + im.data.length, 0));
  let at = 0;
  for (const im of images) for (const v of im.data) raw[at++] = Math.round(v * 255);
  return { pixels, raw };
}

async function runModel(file: string, feeds: Record<string, ort.Tensor>): Promise<Record<string, ort.Tensor>> {
  const session = await ort.InferenceSession.create(file, { intraOpNumThreads: 1 });
  try {
    return await session.run(feeds);
  } finally {
    await session.release();
  }
}

/**
 * The project's tolerance rule (test/fixtures/close.ts): per output, max |exported - saved| <= rtol * max |saved|. A
 * log-likelihood can cross zero, where no relative bound per image can hold for float32 features.
 */
function expectScoresClose(actual: ArrayLike<number>, expected: Float64Array, rtol: number, label: string): void {
  expectClose(Float64Array.from(actual), expected, rtol, label);
}

/** Runs the model on consecutive batches of `pixels`; each output's values concatenated. */
async function runInBatches(file: string, pixels: Tensor, batchSize: number): Promise<Record<string, { type: string; data: number[] }>> {
  const session = await ort.InferenceSession.create(file, { intraOpNumThreads: 1 });
  const [n, ...rest] = pixels.dims;
  const size = rest.reduce((a, b) => a * b, 1);
  const out: Record<string, { type: string; data: number[] }> = {};
  try {
    for (let start = 0; start < n; start += batchSize) {
      const count = Math.min(batchSize, n - start);
      const batch = pixels.data.subarray(start * size, (start + count) * size);
      const result = await session.run({ pixels: new ort.Tensor('float32', batch, [count, ...rest]) });
      for (const [name, t] of Object.entries(result)) (out[name] ??= { type: t.type, data: [] }).data.push(...Array.from(t.data as ArrayLike<number>, Number));
    }
  } finally {
    await session.release();
  }
  return out;
}

function metadataOf(file: string): Record<string, string> {
  const model = onnxProto.onnx.ModelProto.decode(readFileSync(file));
  return Object.fromEntries(model.metadataProps.map((p) => [p.key!, p.value!]));
}

const exampleScorer = join(repo, 'examples', 'scorer-ledoit-wolf', 'index.ts');

const CASES: { name: string; distiller: boolean; pretrained: StageRef | string; finetuned?: StageRef | string; combiner: string; int8?: boolean }[] = [
  { name: 'paper', distiller: true, pretrained: { use: 'gaussian', options: { whiten: { varianceFraction: 0.9 } } }, finetuned: 'gaussian', combiner: 'sum' },
  { name: 'knn-gmm-zscore', distiller: true, pretrained: { use: 'knn', options: { k: 3 } }, finetuned: { use: 'gmm', options: { components: 2 } }, combiner: 'zscore' },
  { name: 'gmm-knn-sum', distiller: true, pretrained: { use: 'gmm', options: { components: 3 } }, finetuned: { use: 'knn', options: { k: 2 } }, combiner: 'sum' },
  { name: 'pretrained-whitened-zscore', distiller: false, pretrained: { use: 'gaussian', options: { whiten: { varianceFraction: 0.9 } } }, combiner: 'zscore' },
  { name: 'pretrained-gaussian-sum', distiller: false, pretrained: 'gaussian', combiner: 'sum' },
  { name: 'pretrained-knn-zscore', distiller: false, pretrained: { use: 'knn', options: { k: 2 } }, combiner: 'zscore' },
  { name: 'pretrained-gmm-sum', distiller: false, pretrained: { use: 'gmm', options: { components: 2 } }, combiner: 'sum' },
  // The int8 teacher: its onnxruntime-only layers (DynamicQuantizeMatMul) written in standard operators.
  { name: 'int8-backbone', distiller: true, pretrained: { use: 'gaussian', options: { whiten: { varianceFraction: 0.9 } } }, finetuned: 'gaussian', combiner: 'sum', int8: true },
  // A third-party plugin loaded from its file: the example of the plugin guide implements the hook.
  { name: 'example-ledoit-wolf', distiller: true, pretrained: exampleScorer, finetuned: { use: exampleScorer, options: { shrinkage: 0.1 } }, combiner: 'zscore' },
];

describe('exportDetector: the exported model scores as the saved detector (onnxruntime-node, 1e-4 relative)', () => {
  for (const c of CASES) {
    it(`${c.name}: ${c.distiller ? 'with' : 'without'} a distiller`, async () => {
      const fitted = await fitAndSave(
        work,
        c.name,
        config({
          distiller: c.distiller ? distiller : false,
          scorers: { pretrained: c.pretrained, ...(c.finetuned ? { finetuned: c.finetuned } : {}) },
          combiner: c.combiner,
          ...(c.int8 ? { backbone: { use: 'vit', options: { ...tinyVit, precision: 'int8' } } } : {}),
        }),
      );
      const example = await loadPlugin(exampleScorer, { baseDir: repo });
      const opened = await openDetector(fitted.dir, { plugins: { [example.name]: example } });
      try {
        const { detector } = opened;
        const saved = await detector.score(fitted.test);
        const out = join(work, `${c.name}.onnx`);
        const exported = await exportDetector(detector, { out });
        expect(exported.dataFile).toBeUndefined();
        const { pixels } = await inputs(fitted.test, detector.parts.backbone.info.preprocess);
        // In the detector's batches: an int8 backbone quantizes each batch's activations with one scale.
        const result = await runInBatches(out, pixels, detector.settings.batchSize);
        expect(Object.keys(result).sort()).toEqual(c.distiller ? ['anomalous', 'combined', 'finetuned', 'pretrained'] : ['anomalous', 'combined', 'pretrained']);
        for (const space of ['pretrained', 'finetuned', 'combined'] as const) {
          if (!saved[space]) continue;
          expect(result[space].type).toBe('float64');
          expectScoresClose(result[space].data, saved[space]!, 1e-4, `${c.name} ${space}`);
        }
        // The decision is the threshold's: equal wherever the combined score is not within rounding of it.
        const threshold = detector.threshold!;
        const anomalous = result.anomalous.data;
        saved.combined.forEach((s, i) => {
          if (Math.abs(s - threshold) > 1e-4 * Math.abs(threshold)) expect(Boolean(anomalous[i]), `image ${i}`).toBe(saved.anomalous[i]);
        });
        expect(Number(metadataOf(out).threshold)).toBe(threshold);
      } finally {
        await opened.dispose();
      }
    });
  }
});

describe('exportDetector: inputs, metadata, external data', () => {
  let fitted: SavedDetector;
  beforeAll(async () => {
    fitted = await fitAndSave(work, 'options', config({ distiller, scorers: { pretrained: { use: 'gaussian', options: { whiten: { varianceFraction: 0.9 } } } } }));
  });

  it('--preprocess: uint8 NHWC pixels, normalised inside the graph exactly as the project does', async () => {
    const opened = await openDetector(fitted.dir);
    try {
      const { detector } = opened;
      const info = detector.parts.backbone.info;
      const plain = join(work, 'plain.onnx');
      const raw = join(work, 'raw.onnx');
      await exportDetector(detector, { out: plain });
      const exported = await exportDetector(detector, { out: raw, preprocess: true });
      expect(exported.input).toEqual({ name: 'images', type: 'uint8', shape: ['N', 28, 28, 3], layout: 'NHWC' });
      const { pixels, raw: bytes } = await inputs(fitted.test, info.preprocess);
      const n = fitted.test.length;
      const fromFloat = await runModel(plain, { pixels: new ort.Tensor('float32', pixels.data, pixels.dims) });
      const fromBytes = await runModel(raw, { images: new ort.Tensor('uint8', bytes, [n, 28, 28, 3]) });
      // The same float32 pixels reach the backbone, so every output is the same to the last bit.
      for (const name of ['pretrained', 'finetuned', 'combined', 'anomalous']) expect(Array.from(fromBytes[name].data as ArrayLike<number>), name).toEqual(Array.from(fromFloat[name].data as ArrayLike<number>));
      const saved = await detector.score(fitted.test);
      expectScoresClose(fromBytes.combined.data as Float64Array, saved.combined, 1e-4, 'combined from uint8 pixels');
      const preprocessing = JSON.parse(metadataOf(raw).preprocessing);
      expect(preprocessing).toMatchObject({ size: [28, 28], resample: info.preprocess.resample, mean: info.preprocess.mean, std: info.preprocess.std, inGraph: true });
    } finally {
      await opened.dispose();
    }
  });

  it('records the input, preprocessing, threshold, outputs and provenance in metadata_props', async () => {
    const opened = await openDetector(fitted.dir);
    try {
      const out = join(work, 'meta.onnx');
      const exported = await exportDetector(opened, { out });
      const meta = metadataOf(out);
      expect(meta).toEqual(exported.metadata);
      expect(meta.format).toBe('transformaly-detector-onnx/1');
      expect(JSON.parse(meta.input)).toEqual({ name: 'pixels', type: 'float32', shape: ['N', 3, 28, 28], layout: 'NCHW' });
      expect(JSON.parse(meta.preprocessing)).toMatchObject({ size: [28, 28], resample: 'bicubic', mean: [0.5, 0.5, 0.5], std: [0.5, 0.5, 0.5], inGraph: false });
      expect(Number(meta.threshold)).toBe(opened.detector.threshold);
      expect(JSON.parse(meta.outputs).map((o: { name: string }) => o.name)).toEqual(['pretrained', 'finetuned', 'combined', 'anomalous']);
      const manifest = JSON.parse(readFileSync(join(fitted.dir, 'manifest.json'), 'utf8'));
      const provenance = JSON.parse(meta.provenance);
      expect(provenance.backbone).toEqual(manifest.extra.backbone);
      const { data: _data, runtime: _runtime, ...stages } = manifest.plugins;
      expect(provenance.plugins).toEqual(stages);
      expect(provenance.fitted).toEqual({ createdAt: manifest.createdAt, packages: manifest.packages });
      expect(provenance.packages['@transformaly/core']).toBe(JSON.parse(readFileSync(join(repo, 'core', 'package.json'), 'utf8')).version);
      expect(meta.stages).toBe('backbone @transformaly/backbone-vit, distiller transformaly, scorers.pretrained @transformaly/scorer-gaussian, scorers.finetuned @transformaly/scorer-gaussian, combiner sum');
      // The graph's declared input and outputs are the ones the metadata names.
      const session = await ort.InferenceSession.create(out);
      expect(session.inputNames).toEqual(['pixels']);
      expect(session.outputNames).toEqual(['pretrained', 'finetuned', 'combined', 'anomalous']);
      await session.release();
    } finally {
      await opened.dispose();
    }
  });

  it('puts the weights in a file beside the model above the threshold, with the same scores', async () => {
    const opened = await openDetector(fitted.dir);
    try {
      const embedded = join(work, 'embedded.onnx');
      const dir = join(work, 'external');
      mkdirSync(dir);
      const external = join(dir, 'detector.onnx');
      await exportDetector(opened.detector, { out: embedded });
      const exported = await exportDetector(opened.detector, { out: external, externalDataThreshold: 10_000 });
      expect(exported.dataFile).toBe(join(dir, 'detector.onnx.data'));
      expect(existsSync(exported.dataFile!)).toBe(true);
      expect(statSync(external).size).toBeLessThan(statSync(embedded).size / 4);
      expect(statSync(exported.dataFile!).size).toBeGreaterThan(statSync(embedded).size / 2);
      const model = onnxProto.onnx.ModelProto.decode(readFileSync(external));
      const moved = model.graph!.initializer!.filter((t) => t.dataLocation === onnxProto.onnx.TensorProto.DataLocation.EXTERNAL);
      expect(moved.length).toBeGreaterThan(10);
      const { pixels } = await inputs(fitted.test, opened.detector.parts.backbone.info.preprocess);
      const feeds = { pixels: new ort.Tensor('float32', pixels.data, pixels.dims) };
      const a = await runModel(embedded, feeds);
      const b = await runModel(external, feeds);
      expect(Array.from(b.combined.data as Float64Array)).toEqual(Array.from(a.combined.data as Float64Array));
      await expect(exportDetector(opened.detector, { out: join(work, 'single.onnx'), externalDataThreshold: false })).resolves.toMatchObject({ dataFile: undefined });
    } finally {
      await opened.dispose();
    }
  });
});

describe('exportDetector: a stage without the hook, or with a broken one', () => {
  /** A third-party scorer (minus the norm of the features) whose hook the test chooses. */
  let hook: ((ctx: Parameters<NonNullable<DensityScorer['exportOnnx']>>[0], features: string) => string) | undefined;
  class NegativeNorm extends NegativeNormScorer {
    get exportOnnx() {
      return hook;
    }
  }
  const plugin: TransformalyPlugin = { name: 'negative-norm', version: '1.2.3', stages: { scorer: { create: () => new NegativeNorm() } } };
  let fitted: SavedDetector;
  beforeAll(async () => {
    fitted = await fitAndSave(work, 'third-party', config({ distiller: false, scorers: { pretrained: 'negative-norm' } }), { 'negative-norm': plugin });
  });

  it('refuses, naming the stage and its plugin, and writes nothing', async () => {
    hook = undefined;
    const opened = await openDetector(fitted.dir, { plugins: { 'negative-norm': plugin } });
    try {
      const out = join(work, 'refused.onnx');
      await expect(exportDetector(opened.detector, { out })).rejects.toThrow(
        'cannot export the detector: the scorers.pretrained stage (plugin "negative-norm" version 1.2.3) has no exportOnnx hook',
      );
      expect(existsSync(out)).toBe(false);
    } finally {
      await opened.dispose();
    }
  });

  it("a third-party hook is part of the model; one returning no value, or a non-standard operator, is refused", async () => {
    const opened = await openDetector(fitted.dir, { plugins: { 'negative-norm': plugin } });
    try {
      hook = (ctx, features) => {
        const g = ctx.graph;
        const x = g.op('Cast', [features], { to: 11 });
        return g.op('Neg', [g.op('Sqrt', [g.op('ReduceSumSquare', [x], { axes: [1], keepdims: 0 })])]);
      };
      const out = join(work, 'third-party.onnx');
      await exportDetector(opened.detector, { out });
      const { pixels } = await inputs(fitted.test, opened.detector.parts.backbone.info.preprocess);
      const result = await runModel(out, { pixels: new ort.Tensor('float32', pixels.data, pixels.dims) });
      const saved = await opened.detector.score(fitted.test);
      expectScoresClose(result.combined.data as Float64Array, saved.combined, 1e-12, 'negative norm');

      hook = () => 'no-such-value';
      await expect(exportDetector(opened.detector, { out })).rejects.toThrow(
        'exportOnnx of the scorers.pretrained stage (plugin "negative-norm" version 1.2.3) returned "no-such-value", not the name of a value of the graph',
      );
      hook = (ctx, features) => ctx.graph.op('FusedMatMul', [features, features], {}, { domain: 'com.microsoft' });
      await expect(exportDetector(opened.detector, { out })).rejects.toThrow(/used the operator com\.microsoft\.FusedMatMul; an exported detector uses the standard ONNX operators only \(opset 17\)/);
    } finally {
      await opened.dispose();
    }
  });
});

describe('transformaly export', () => {
  const bin = join(repo, 'cli', 'bin', 'transformaly.js');
  const cli = (...args: string[]) => spawnSync(process.execPath, [bin, 'export', ...args], { cwd: work, encoding: 'utf8', env: { ...process.env, DEBUG: '' } });
  let fitted: SavedDetector;
  beforeAll(async () => {
    fitted = await fitAndSave(work, 'cli', config({ distiller, scorers: { pretrained: exampleScorer } }));
  });

  it('writes the model and prints its input, preprocessing, outputs and threshold', async () => {
    const example = await loadPlugin(exampleScorer, { baseDir: repo });
    const out = join(work, 'cli-out', 'raw.onnx');
    const result = cli('--detector', fitted.dir, '--out', out, '--preprocess', '--plugin', `${example.name}=${exampleScorer}`);
    expect(result.status, result.stderr).toBe(0);
    const meta = metadataOf(out);
    expect(result.stdout).toContain(`wrote cli-out${sep}raw.onnx (`);
    expect(result.stdout).toContain('  input          images: uint8 [N, 28, 28, 3] (NHWC)\n');
    expect(result.stdout).toContain(`  graph does     ${JSON.parse(meta.preprocessing).graph}\n`);
    expect(result.stdout).toContain('                 finetuned: float64 [N], normality score of the fine-tuned (teacher-student discrepancy) features\n');
    expect(result.stdout).toContain(`  threshold      ${meta.threshold}\n`);
    expect(result.stdout).toContain(`  stages         backbone @transformaly/backbone-vit, distiller transformaly, scorers.pretrained ${example.name}, `);
    expect(result.stdout).toContain('  backbone       random:5 (UNTRAINED: random weights, for tests and smoke runs only), sha256 ');
    const opened = await openDetector(fitted.dir, { plugins: { [example.name]: example } });
    try {
      const { raw } = await inputs(fitted.test, opened.detector.parts.backbone.info.preprocess);
      const scores = await runModel(out, { images: new ort.Tensor('uint8', raw, [fitted.test.length, 28, 28, 3]) });
      expectScoresClose(scores.combined.data as Float64Array, (await opened.detector.score(fitted.test)).combined, 1e-4, 'combined');
    } finally {
      await opened.dispose();
    }
  });

  it('refuses what it cannot do, with the reason, before writing anything', () => {
    let result = cli('--detector', fitted.dir);
    expect(result.status).toBe(1);
    expect(result.stderr).toContain('transformaly: export needs --out FILE (the ONNX model) or --web DIR (a web page folder), or both');
    result = cli('--detector', fitted.dir, '--web', join(work, 'never'), '--preprocess');
    expect(result.stderr).toContain('--preprocess changes the input of the model written by --out; the web page always preprocesses itself');
    // A plugin file the detector names must be given, as for score.
    result = cli('--detector', fitted.dir, '--out', join(work, 'never.onnx'));
    expect(result.stderr).toContain(`was loaded from the file ${exampleScorer} when the detector was fitted, and a detector folder never makes Transformaly import code`);
    // --web takes a new or empty folder, or an older web export: never one holding other files.
    const example = `transformaly-scorer-ledoit-wolf=${exampleScorer}`;
    const busy = join(work, 'busy');
    mkdirSync(busy);
    writeFileSync(join(busy, 'notes.txt'), 'mine\n');
    result = cli('--detector', fitted.dir, '--web', busy, '--plugin', example);
    expect(result.stderr).toContain(`--web ${busy}: the folder holds other files (notes.txt); give a new or empty folder, or an older web export to replace`);
    expect(readFileSync(join(busy, 'notes.txt'), 'utf8')).toBe('mine\n');
    for (const file of ['never', 'never.onnx']) expect(existsSync(join(work, file)), file).toBe(false);
  });
});
