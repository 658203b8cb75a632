// The README's "In code" example, as a program runs it: compose a pipeline from a config object (no config file),
// fit, score, save, load, and score again with the loaded detector, and with one opened without the config.
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { createPipeline, openDetector } from '@transformaly/core';

const repo = resolve(dirname(fileURLToPath(import.meta.url)), '..');

describe('programmatic API', () => {
  it('create, fit, score, save, load', async () => {
    const pipeline = await createPipeline(
      {
        data: { use: 'idx', options: { dir: './demo/fashion-mnist', classNames: 'fashion-mnist' } },
        protocol: { mode: 'unimodal', classes: ['Trouser'] },
        // A small Hugging Face layout checkpoint folder; the README's example names ViT-B/16 the same way.
        backbone: { use: 'vit', options: { checkpoint: './test/golden/vit/a/hf' } },
        distiller: false,
      },
      { baseDir: repo },
    );
    try {
      const [trouser] = await pipeline.cases();
      expect(trouser.id).toBe('unimodal/Trouser');
      const detector = await pipeline.createDetector();
      const summary = await detector.fit(trouser.train);
      expect(summary.fitImages + summary.heldOutImages).toBe(100);
      const images = trouser.test.map((t) => t.item);
      const scores = await detector.score(images);
      expect(scores.ids).toEqual(images.map((i) => i.id));
      expect(scores.finetuned).toBeUndefined();
      // With the sum combiner and one space, the combined score is the pre-trained one.
      expect(Array.from(scores.combined)).toEqual(Array.from(scores.pretrained));
      expect(scores.anomalous).toEqual(Array.from(scores.combined, (s) => s < detector.threshold!));

      const dir = join(mkdtempSync(join(tmpdir(), 'transformaly-api-')), 'trouser');
      await detector.save(dir);
      const again = await pipeline.loadDetector(dir);
      const rescored = await again.score(images);
      expect(Array.from(rescored.combined)).toEqual(Array.from(scores.combined));
      expect(again.threshold).toBe(detector.threshold);

      // Elsewhere, without the config.
      const opened = await openDetector(dir);
      try {
        expect(Array.from((await opened.detector.score(images)).combined)).toEqual(Array.from(scores.combined));
      } finally {
        await opened.dispose();
      }
    } finally {
      await pipeline.dispose();
    }
  });
});
