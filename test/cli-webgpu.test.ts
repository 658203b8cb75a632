// `transformaly run` with everything on the GPU runtime (`runtime: { use: 'tfjs', options: { backend: 'webgpu' } }`:
// the teacher and the students on tfjs-backend-webgpu) gives the AUROCs of the same config on onnxruntime, on a small
// Fashion-MNIST subset (one class, 100 normal training images, 200 test images; the distillation golden's teacher and
// initial students), and records the backend and adapter in results.json. CI runs it on lavapipe (fixtures/webgpu.ts).
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gunzipSync, gzipSync } from 'node:zlib';
import { afterAll, describe, expect, it } from 'vitest';
import { webgpuEnvironment } from './fixtures/webgpu.js';

const repo = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const golden = join(repo, 'test', 'golden', 'distill');
const expected = JSON.parse(readFileSync(join(golden, 'expected.json'), 'utf8')) as {
  trainIndices: number[];
  testIndices: number[];
  blocks: number[];
  adam: { lr: number; betas: [number, number]; eps: number };
};
const FASHION = '/usr/share/datasets/fashion-mnist';
const NORMAL_CLASS = 'T-shirt/top';
const env = webgpuEnvironment();

/** Writes the chosen images of a Fashion-MNIST split as new gzipped IDX files, in the given order. */
function writeSubset(dir: string, prefix: 'train' | 't10k', pick: (labels: Buffer) => number[]): void {
  const images = gunzipSync(readFileSync(join(FASHION, `${prefix}-images-idx3-ubyte.gz`)));
  const labels = gunzipSync(readFileSync(join(FASHION, `${prefix}-labels-idx1-ubyte.gz`)));
  const indices = pick(labels.subarray(8));
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

describe('transformaly run on the webgpu runtime', () => {
  // Inside the repo, so that the config's import of @transformaly/core resolves as in a user's project.
  mkdirSync(join(repo, 'test', 'fixtures'), { recursive: true });
  const work = mkdtempSync(join(repo, 'test', 'fixtures', 'cli-webgpu-'));
  afterAll(() => rmSync(work, { recursive: true, force: true }));
  // Label 0 is T-shirt/top: its first 100 training images of the golden subset are the normal ones.
  writeSubset(work, 'train', (labels) => expected.trainIndices.filter((i) => labels[i] === 0).slice(0, 100));
  writeSubset(work, 't10k', () => expected.testIndices.slice(0, 200));

  function run(name: string, runtime: object): { status: number | null; stdout: string; stderr: string; results: any } {
    const folder = join(work, name);
    mkdirSync(folder);
    const config = {
      data: { use: 'idx', options: { dir: work, classNames: 'fashion-mnist' } },
      protocol: { mode: 'unimodal', classes: [NORMAL_CLASS] },
      backbone: { use: 'vit', options: { checkpoint: join(golden, 'teacher') } },
      runtime,
      distiller: {
        use: 'transformaly',
        options: {
          blocks: expected.blocks,
          epochs: 2,
          lr: expected.adam.lr,
          betas: expected.adam.betas,
          eps: expected.adam.eps,
          initialWeights: join(golden, 'students_init.safetensors'),
        },
      },
      batchSize: 32,
      seed: 0,
      validationFraction: 0.1,
    };
    writeFileSync(join(folder, 'transformaly.config.ts'), `import { defineConfig } from '@transformaly/core';\nexport default defineConfig(${JSON.stringify(config)});\n`);
    const bin = join(repo, 'cli', 'bin', 'transformaly.js');
    const child = spawnSync(process.execPath, [bin, 'run', '--config', join(folder, 'transformaly.config.ts'), '--run-id', name], { cwd: folder, env, encoding: 'utf8' });
    const results = child.status === 0 ? JSON.parse(readFileSync(join(folder, 'results', name, 'results.json'), 'utf8')) : undefined;
    return { ...child, results };
  }

  it('fits and scores with the teacher and the students on webgpu, as onnxruntime does', () => {
    const reference = run('onnx', { use: 'onnx', options: { threads: 2 } });
    expect(reference.status, reference.stderr).toBe(0);
    const gpu = run('webgpu', { use: 'tfjs', options: { backend: 'webgpu', adapter: 'any' } });
    expect(gpu.status, gpu.stderr).toBe(0);

    const [ours, theirs] = [gpu.results.cases[0], reference.results.cases[0]];
    expect(ours.caseId).toBe(`unimodal/${NORMAL_CLASS}`);
    expect([ours.trainImages, ours.heldOutImages, ours.testImages]).toEqual([90, 10, 200]);
    for (const space of ['pretrained', 'finetuned', 'combined']) {
      const [a, b] = [ours.metrics[space].auroc, theirs.metrics[space].auroc];
      expect(Math.abs(a - b), `${space}: webgpu ${a}, onnxruntime ${b}`).toBeLessThan(0.005);
    }
    expect(gpu.results.runtime).toMatchObject({ name: 'tfjs', backend: 'webgpu', package: '@tensorflow/tfjs-backend-webgpu' });
    expect(reference.results.runtime).toMatchObject({ name: 'onnx', device: 'cpu', threads: 2 });
    // The start report names the backend and the adapter recorded in results.json.
    const adapter = gpu.results.runtime.adapter as { description: string; vendor: string };
    expect(`${gpu.stdout}\n${gpu.stderr}`).toContain(`runtime-tfjs: backend webgpu (@tensorflow/tfjs-backend-webgpu): requested in the options, on ${adapter.description} [${adapter.vendor}`);
  });
});
