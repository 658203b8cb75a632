// `transformaly run` through a config file and the real bin reproduces the PyTorch reference's per-class AUROC table
// (scripts/golden/torch_transformaly.py) on the distillation parity subset, in both protocols. The subset is written
// as IDX files, in the reference's order, so that the config's built-in `idx` source reads exactly those images.
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gunzipSync, gzipSync } from 'node:zlib';
import { afterAll, describe, expect, it } from 'vitest';
import { expectClose } from './fixtures/close.js';

const repo = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const golden = join(repo, 'test', 'golden', 'distill');
const expected = JSON.parse(readFileSync(join(golden, 'expected.json'), 'utf8')) as {
  classes: string[];
  trainIndices: number[];
  testIndices: number[];
  blocks: number[];
  epochs: number;
  batchSize: number;
  seed: number;
  validationFraction: number;
  adam: { lr: number; betas: [number, number]; eps: number };
  cases: Record<string, { auroc: Record<'pretrained' | 'finetuned' | 'combined', number> }>;
};

/** Copies the chosen images and labels of a Fashion-MNIST split into new gzipped IDX files, in the given order. */
function writeSubset(dir: string, prefix: 'train' | 't10k', indices: number[]): void {
  const src = '/usr/share/datasets/fashion-mnist';
  const images = gunzipSync(readFileSync(join(src, `${prefix}-images-idx3-ubyte.gz`)));
  const labels = gunzipSync(readFileSync(join(src, `${prefix}-labels-idx1-ubyte.gz`)));
  const imageOut = Buffer.alloc(16 + indices.length * 784);
  images.copy(imageOut, 0, 0, 16);
  imageOut.writeUInt32BE(indices.length, 4);
  const labelOut = Buffer.alloc(8 + indices.length);
  labels.copy(labelOut, 0, 0, 8);
  labelOut.writeUInt32BE(indices.length, 4);
  indices.forEach((i, k) => {
    images.copy(imageOut, 16 + k * 784, 16 + i * 784, 16 + (i + 1) * 784);
    labelOut[8 + k] = labels[8 + i];
  });
  writeFileSync(join(dir, `${prefix}-images-idx3-ubyte.gz`), gzipSync(imageOut));
  writeFileSync(join(dir, `${prefix}-labels-idx1-ubyte.gz`), gzipSync(labelOut));
}

describe('transformaly run reproduces the PyTorch AUROC table', () => {
  // Inside the repo, so that the config's import of @transformaly/core resolves as in a user's project.
  mkdirSync(join(repo, 'test', 'fixtures'), { recursive: true });
  const work = mkdtempSync(join(repo, 'test', 'fixtures', 'cli-parity-'));
  afterAll(() => rmSync(work, { recursive: true, force: true }));
  writeSubset(work, 'train', expected.trainIndices);
  writeSubset(work, 't10k', expected.testIndices);

  it.each(['unimodal', 'multimodal'] as const)('%s protocol, through transformaly.config.ts and the bin', (mode) => {
    const folder = mkdtempSync(join(work, `${mode}-`));
    const config = {
      data: { use: 'idx', options: { dir: work, classNames: 'fashion-mnist' } },
      protocol: { mode, classes: expected.classes },
      backbone: { use: 'vit', options: { checkpoint: join(golden, 'teacher') } },
      runtime: { use: 'onnx', options: { threads: 2 } },
      distiller: {
        use: 'transformaly',
        options: {
          blocks: expected.blocks,
          epochs: expected.epochs,
          lr: expected.adam.lr,
          betas: expected.adam.betas,
          eps: expected.adam.eps,
          initialWeights: join(golden, 'students_init.safetensors'),
        },
      },
      batchSize: expected.batchSize,
      seed: expected.seed,
      validationFraction: expected.validationFraction,
    };
    writeFileSync(join(folder, 'transformaly.config.ts'), `import { defineConfig } from '@transformaly/core';\nexport default defineConfig(${JSON.stringify(config)});\n`);
    const run = spawnSync(process.execPath, [join(repo, 'cli', 'bin', 'transformaly.js'), 'run', '--config', join(folder, 'transformaly.config.ts'), '--run-id', 'parity'], {
      cwd: folder,
      encoding: 'utf8',
    });
    expect(run.status, run.stderr).toBe(0);
    const results = JSON.parse(readFileSync(join(folder, 'results', 'parity', 'results.json'), 'utf8'));
    expect(results.cases.map((c: { caseId: string }) => c.caseId)).toEqual(expected.classes.map((c) => `${mode}/${c}`));
    // As in test/distill-parity.test.ts: equal but for at most a near-tied pair or two of the 180000 pairs.
    const spaces = ['pretrained', 'finetuned', 'combined'] as const;
    for (const c of results.cases) {
      const reference = spaces.map((space) => expected.cases[c.caseId].auroc[space]);
      expectClose(spaces.map((space) => c.metrics[space].auroc), reference, 2e-5, `${c.caseId} AUROC (${spaces}) vs torch`);
    }
    // The table printed for the user is the same numbers, as percentages.
    expect(run.stdout).toMatch(/AUROC \(%\)/);
    expect(run.stdout).toContain((100 * results.auroc.mean.combined).toFixed(1));
  });
});
