// The default config (transformaly.config.ts) end to end, as `npx transformaly run` runs it, against a hub-like
// server on 127.0.0.1 (HF_ENDPOINT) that serves a randomly initialised ViT-B/16 in the real Hugging Face layout of
// google/vit-base-patch16-224. Only the demo sizes are overridden, so that it finishes in about a minute.
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it, vi } from 'vitest';
import { createPipeline, loadConfigFile, runProtocol, SilentProgress, type TransformalyConfig } from '@transformaly/core';
import { FakeHub, sha256 } from './fixtures/hub-server.js';
import { hfVitCheckpointFiles, VIT_B16 } from './fixtures/vit-checkpoint.js';
import { expectClose } from './fixtures/close.js';
import { casesOfScoresCsv, definitionAveragePrecision, pairwiseAuroc } from './fixtures/ranking.js';

const repo = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const hub = new FakeHub();

afterAll(async () => {
  vi.unstubAllEnvs();
  await hub.stop();
});

describe('the default config', () => {
  it('downloads ViT-B/16 from the hub into the cache, fits, scores and evaluates the demo', async () => {
    const files = hfVitCheckpointFiles(VIT_B16, 11);
    hub.addRepo('google/vit-base-patch16-224', {
      'config.json': { bytes: files['config.json'] },
      'preprocessor_config.json': { bytes: files['preprocessor_config.json'] },
      'model.safetensors': { bytes: files['model.safetensors'], lfs: true },
    });
    await hub.start();
    const home = mkdtempSync(join(tmpdir(), 'transformaly-hf-home-'));
    vi.stubEnv('HF_ENDPOINT', hub.hubUrl);
    vi.stubEnv('HF_HOME', home);
    vi.stubEnv('HF_HUB_OFFLINE', '');

    const { config, file } = await loadConfigFile({ cwd: repo });
    expect(file).toBe(join(repo, 'transformaly.config.ts'));
    const defaults = config as Omit<TransformalyConfig, 'distiller'> & { distiller: { use: string; options: Record<string, unknown> } };
    expect(defaults.backbone).toEqual({ use: 'vit', options: { checkpoint: 'google/vit-base-patch16-224' } });
    const small: TransformalyConfig = {
      ...defaults,
      protocol: { mode: 'unimodal', classes: ['Trouser'], limit: { train: 20, testPerClass: 3 } },
      distiller: { ...defaults.distiller, options: { ...defaults.distiller.options, epochs: 1 } },
      batchSize: 8,
      outputDir: mkdtempSync(join(tmpdir(), 'transformaly-default-')),
    };
    const pipeline = await createPipeline(small, { baseDir: repo, configFile: file, progress: new SilentProgress() });
    try {
      const runDir = join(small.outputDir!, 'run');
      const results = await runProtocol(pipeline, { runDir });
      expect(results.backbone).toEqual({ id: 'google/vit-base-patch16-224', sha256: sha256(files['model.safetensors']) });
      expect(results.untrainedBackbone).toBe(false);
      const [only] = results.cases;
      expect(only.caseId).toBe('unimodal/Trouser');
      expect(only.trainImages + only.heldOutImages).toBe(20);
      expect(only.testImages).toBe(30);
      // The reported metrics are those of the scores written beside them, counted pair by pair.
      const scores = casesOfScoresCsv(readFileSync(join(runDir, 'scores.csv'), 'utf8')).get('unimodal/Trouser')!;
      expect(scores.anomalous.filter(Boolean)).toHaveLength(27);
      for (const space of ['pretrained', 'finetuned', 'combined'] as const) {
        const want = [pairwiseAuroc(scores.spaces[space], scores.anomalous), definitionAveragePrecision(scores.spaces[space], scores.anomalous)];
        expectClose([only.metrics[space].auroc, only.metrics[space].averagePrecision], want, 1e-12, `${space} AUROC, AP`);
      }
      expect(existsSync(join(runDir, 'cases', 'unimodal_Trouser', 'detector', 'manifest.json'))).toBe(true);
      const manifest = JSON.parse(readFileSync(join(runDir, 'cases', 'unimodal_Trouser', 'detector', 'manifest.json'), 'utf8'));
      expect(manifest.config.distiller.options.blocks).toEqual({ last: 1 });
      // Fetched once, into the HF_HOME cache, through the hub's resolve URLs.
      const snapshot = join(home, 'hub', 'models--google--vit-base-patch16-224');
      expect(existsSync(snapshot)).toBe(true);
      expect(hub.log.filter((l) => l.method === 'GET' && l.path.includes('/blobs/' + sha256(files['model.safetensors'])))).toHaveLength(1);
    } finally {
      await pipeline.dispose();
    }
  }, 600_000);
});
