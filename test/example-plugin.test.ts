// The example third-party plugin in examples/scorer-ledoit-wolf, loaded the way a user loads it: by file path in the
// config, resolved through the pipeline's container. Numbers are checked against scikit-learn 1.2.1
// (examples/scorer-ledoit-wolf/golden.py wrote golden.json).
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import {
  ConfigError,
  createPipeline,
  fromRows,
  loadPlugin,
  type ImageItem,
  type Matrix,
  type Pipeline,
  type RgbImage,
  type TransformalyConfig,
} from '@transformaly/core';
import { densityScorerChecks, registerChecks } from '@transformaly/testing';
// Type only: the scorer under test is the one the config loads (through jiti), never this import.
import type { LedoitWolfOptions, LedoitWolfScorer } from '../examples/scorer-ledoit-wolf/index.js';
import { expectClose } from './fixtures/close.js';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const example = './examples/scorer-ledoit-wolf/index.ts';

interface GoldenCase {
  name: 'tall' | 'wide' | 'fixed';
  train: number[][];
  shrinkage: number;
  location: number[];
  covariance: number[][];
  logpdf: number[];
}
const golden = JSON.parse(readFileSync(join(root, 'examples/scorer-ledoit-wolf/golden.json'), 'utf8')) as { test: number[][]; cases: GoldenCase[] };
const goldenCase = (name: GoldenCase['name']) => golden.cases.find((c) => c.name === name)!;
const test = fromRows(golden.test);

// A tiny untrained ViT: fast, and its 32-dim CLS features outnumber the few training images of the pipeline test.
const backbone = {
  use: 'vit',
  options: { random: { seed: 11, arch: { imageSize: [32, 32], patchSize: 16, width: 32, depth: 1, heads: 2, mlpDim: 64 } } },
};

function config(options?: LedoitWolfOptions & Record<string, unknown>): TransformalyConfig {
  return {
    // Never listed: the detector here is fed images directly.
    data: { use: 'folder', options: { root: './examples' } },
    backbone,
    runtime: { use: 'onnx', options: { threads: 1 } },
    distiller: false,
    scorers: { pretrained: options ? { use: example, options } : example },
    batchSize: 8,
  };
}

const pipelines: Pipeline[] = [];
async function pipelineFor(options?: LedoitWolfOptions & Record<string, unknown>): Promise<Pipeline> {
  const pipeline = await createPipeline(config(options), { baseDir: root });
  pipelines.push(pipeline);
  return pipeline;
}
const tmp = mkdtempSync(join(tmpdir(), 'transformaly-example-plugin-'));
afterAll(async () => {
  for (const p of pipelines) await p.dispose();
  rmSync(tmp, { recursive: true, force: true });
});

// One pipeline with the default options, shared by the tests that need it (each resolves its own scorer).
let plain: Promise<Pipeline> | undefined;
const plainPipeline = () => (plain ??= pipelineFor());

async function resolvedScorer(pipeline: Pipeline): Promise<LedoitWolfScorer> {
  const detector = await pipeline.createDetector();
  return detector.parts.scorers.pretrained as LedoitWolfScorer;
}


async function expectMatchesGolden(scorer: LedoitWolfScorer, c: GoldenCase): Promise<void> {
  await scorer.fit(fromRows(c.train));
  expectClose([scorer.shrinkage!], [c.shrinkage], 1e-9, `${c.name}: shrinkage`);
  expectClose(scorer.location!, c.location, 1e-6, `${c.name}: location`);
  expectClose(scorer.covariance!.data, c.covariance.flat(), 1e-6, `${c.name}: covariance`);
  expectClose(await scorer.scoreSamples(test), c.logpdf, 1e-6, `${c.name}: log-likelihoods`);
}

describe('example plugin: Ledoit-Wolf scorer loaded by file path from the config', () => {
  it('is the scorer the config resolves, and matches sklearn LedoitWolf (more rows than columns, and fewer)', async () => {
    const pipeline = await plainPipeline();
    expect(pipeline.config.scorers.pretrained).toEqual({ use: join(root, example), options: {} });
    const tall = await resolvedScorer(pipeline);
    expect(tall.name).toBe('ledoit-wolf');
    expect(tall.constructor.name).toBe('LedoitWolfScorer');
    expect(tall.options).toEqual({ shrinkage: null, blockSize: 4096 });
    expect(tall.shrinkage).toBeNull();
    await expectMatchesGolden(tall, goldenCase('tall'));

    const wide = await resolvedScorer(pipeline);
    expect(goldenCase('wide').train.length).toBeLessThan(test.cols);
    await expectMatchesGolden(wide, goldenCase('wide'));
    // The shrinkage is estimated: strictly between a plain Gaussian (0) and a scaled identity (1).
    expect(tall.shrinkage!).toBeGreaterThan(0.01);
    expect(wide.shrinkage!).toBeLessThan(0.99);
  });

  it('honours a fixed shrinkage and gives the same numbers whatever the block size', async () => {
    const fixed = await resolvedScorer(await pipelineFor({ shrinkage: 0.3 }));
    expect(fixed.options.shrinkage).toBe(0.3);
    await expectMatchesGolden(fixed, goldenCase('fixed'));
    expect(fixed.shrinkage).toBe(0.3);

    // 60 training rows in 9 blocks of 7, 20 test rows in 3: a memory bound only.
    const blocked = await resolvedScorer(await pipelineFor({ blockSize: 7 }));
    const whole = await resolvedScorer(await plainPipeline());
    const train = fromRows(goldenCase('tall').train);
    await blocked.fit(train);
    await whole.fit(train);
    expectClose([blocked.shrinkage!], [whole.shrinkage!], 1e-12, 'shrinkage, blocked against whole');
    expectClose(await blocked.scoreSamples(test), await whole.scoreSamples(test), 1e-10, 'scores, blocked against whole');
  });

  it('reports bad options through the config validation, all at once, with their paths', async () => {
    const error = await createPipeline(config({ shrinkage: 2, blockSize: 0, alpha: 0.1 }), { baseDir: root, configFile: 'transformaly.config.ts' }).catch((e) => e);
    expect(error).toBeInstanceOf(ConfigError);
    const issues = (error as ConfigError).issues.map((i) => [i.path, i.found]);
    expect(issues).toEqual(
      expect.arrayContaining([
        ['scorers.pretrained.options.shrinkage', 2],
        ['scorers.pretrained.options.blockSize', 0],
        ['scorers.pretrained.options.alpha', 0.1],
      ]),
    );
    expect(error.message).toMatch(/^transformaly\.config\.ts: 3 problems in the config/);
    expect(error.message).toMatch(/scorers\.pretrained\.options\.shrinkage: found 2, expected a value that must be <= 1/);
    expect(error.message).toMatch(/scorers\.pretrained\.options\.alpha: found 0\.1, expected no such key \(unknown key; allowed: shrinkage, blockSize\)/);
  });

  it('fits and scores images inside a detector with fewer images than feature dimensions, and survives save and load', async () => {
    const pipeline = await plainPipeline();
    const detector = await pipeline.createDetector();
    const train = Array.from({ length: 20 }, (_, i) => imageItem(`normal-${i}`, 'normal', i, false));
    const summary = await detector.fit(train);
    // 18 fitted images for 32 feature dimensions: the sample covariance alone is singular.
    expect(summary.fitImages).toBe(18);
    expect(detector.parts.backbone.info.width).toBe(32);
    const scorer = detector.parts.scorers.pretrained as LedoitWolfScorer;
    expect(scorer.shrinkage!).toBeGreaterThan(0);
    expect(scorer.shrinkage!).toBeLessThanOrEqual(1);

    const items = [
      ...Array.from({ length: 4 }, (_, i) => imageItem(`normal-test-${i}`, 'normal', 100 + i, false)),
      ...Array.from({ length: 4 }, (_, i) => imageItem(`odd-test-${i}`, 'odd', 200 + i, true)),
    ];
    const scores = await detector.score(items);
    expect(scores.ids).toEqual(items.map((t) => t.id));
    // Higher is more normal: every striped image scores below every smooth one, and is flagged.
    const normal = Array.from(scores.pretrained.subarray(0, 4));
    const odd = Array.from(scores.pretrained.subarray(4));
    expect(Math.max(...odd), `odd ${odd} vs normal ${normal}`).toBeLessThan(Math.min(...normal));
    expect(scores.anomalous.slice(4)).toEqual([true, true, true, true]);

    const dir = join(tmp, 'detector');
    await pipeline.saveDetector(detector, dir);
    const restored = await pipeline.loadDetector(dir);
    const restoredScorer = restored.parts.scorers.pretrained as LedoitWolfScorer;
    expect(restoredScorer).not.toBe(scorer);
    expect(restoredScorer.shrinkage).toBe(scorer.shrinkage);
    expect(restoredScorer.covariance).toEqual(scorer.covariance);
    const again = await restored.score(items);
    expect(again.pretrained).toEqual(scores.pretrained);
    expect(again.anomalous).toEqual(scores.anomalous);
  });

  it('loads from its folder too, through the package.json "main"', async () => {
    const pipeline = await createPipeline({ ...config(), scorers: { pretrained: './examples/scorer-ledoit-wolf' } }, { baseDir: root });
    pipelines.push(pipeline);
    expect((await resolvedScorer(pipeline)).name).toBe('ledoit-wolf');
  });

  it('names itself in its errors', async () => {
    const scorer = await resolvedScorer(await plainPipeline());
    await expect(scorer.scoreSamples(test)).rejects.toThrow(/LedoitWolfScorer\.scoreSamples: the scorer is not fitted/);
    const one: Matrix = { rows: 1, cols: 3, data: new Float64Array(3) };
    await expect(scorer.fit(one)).rejects.toThrow(/LedoitWolfScorer\.fit: X: 1 row, at least 2 needed/);
  });
});

// The DensityScorer contract, on the plugin loaded by file path as a config loads it, with an estimated and with a
// fixed shrinkage (small blocks exercise the blocked products).
const loaded = await loadPlugin(example, { baseDir: root });
describe('conformance: estimated shrinkage', () => registerChecks(densityScorerChecks({ plugin: loaded, options: { blockSize: 7 } }), it));
describe('conformance: fixed shrinkage', () => registerChecks(densityScorerChecks({ plugin: loaded, options: { shrinkage: 0.3 } }), it));

/** A 32 x 32 image: a smooth seeded pattern for normal images, high-frequency stripes for odd ones. */
function imageItem(id: string, label: string, seed: number, odd: boolean): ImageItem {
  return {
    id,
    label,
    load: async (): Promise<RgbImage> => {
      const size = 32;
      const data = new Float32Array(size * size * 3);
      let state = (seed * 2654435761 + 1) >>> 0;
      const noise = () => {
        state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
        return state / 4294967296 - 0.5;
      };
      for (let y = 0; y < size; y++) {
        for (let x = 0; x < size; x++) {
          for (let c = 0; c < 3; c++) {
            const base = odd ? 0.5 + 0.5 * Math.sign(Math.sin((x + y) * 1.7 + c)) : 0.5 + 0.3 * Math.sin((x + seed) / 6 + c) * Math.cos(y / 7);
            data[(y * size + x) * 3 + c] = Math.min(1, Math.max(0, base + 0.05 * noise()));
          }
        }
      }
      return { width: size, height: size, data };
    },
  };
}
