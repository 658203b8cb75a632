// A distiller checkpoint records the fit's settings that decided its training batches (the images and their split,
// batch size, seed) and is resumed only by a fit with the same ones.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { createPipeline, SilentProgress, type TransformalyConfig } from '@transformaly/core';

const repo = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const work = mkdtempSync(join(tmpdir(), 'transformaly-checkpoint-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));
const tinyVit = { random: { seed: 3, arch: { imageSize: [28, 28], patchSize: 7, width: 32, depth: 2, heads: 2, mlpDim: 64, layerNormEps: 1e-6, qkvBias: true } } };

async function fit(extra: Partial<TransformalyConfig>, checkpointDir: string): Promise<void> {
  const pipeline = await createPipeline(
    {
      data: { use: 'idx', options: { dir: join(repo, 'demo', 'fashion-mnist'), classNames: 'fashion-mnist' } },
      protocol: { mode: 'unimodal', classes: ['Trouser'], limit: { train: 20, testPerClass: 1 } },
      backbone: { use: 'vit', options: tinyVit },
      runtime: { use: 'onnx', options: { threads: 1 } },
      distiller: { use: 'transformaly', options: { blocks: { last: 1 }, epochs: 1 } },
      batchSize: 10,
      ...extra,
    },
    { baseDir: repo, progress: new SilentProgress() },
  );
  try {
    const [trouser] = await pipeline.cases();
    const detector = await pipeline.createDetector();
    await detector.fit(trouser.train, { checkpointDir });
    await detector.dispose();
  } finally {
    await pipeline.dispose();
  }
}

describe('distiller checkpoint', () => {
  it('is refused by a fit on other images or with another batch size, and resumed by the same fit', async () => {
    const checkpointDir = join(work, 'checkpoint');
    await fit({}, checkpointDir);
    const limit = (train: number) => ({ protocol: { mode: 'unimodal' as const, classes: ['Trouser'], limit: { train, testPerClass: 1 } } });
    // 20 images, 2 held out -> 18 fitted; 10 images, 1 held out -> 9.
    await expect(fit(limit(10), checkpointDir)).rejects.toThrow(/was written by a different training setup \(fit\.fitImages: saved 18, now 9\)/);
    await expect(fit({ batchSize: 5 }, checkpointDir)).rejects.toThrow(/different training setup \(fit\.batchSize: saved 10, now 5\)/);
    await expect(fit({ validationFraction: 0.2 }, checkpointDir)).rejects.toThrow(/different training setup \(fit\.fitImages: saved 18, now 16\)/);
    await expect(fit({ seed: 1 }, checkpointDir)).rejects.toThrow(/different training setup \(fit\.fitItems: saved "[0-9a-f]{64}", now "[0-9a-f]{64}"\)/);
    await fit({}, checkpointDir);
  });
});
