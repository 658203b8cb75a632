import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import sharp from 'sharp';
import { beforeAll, describe, expect, it } from 'vitest';
import { readNpy } from '@transformaly/core';
import { expectClose } from './fixtures/close.js';
import { casesOfScoresCsv, definitionAveragePrecision, pairwiseAuroc } from './fixtures/ranking.js';

// The real `transformaly` bin (built by `tsc -b`, which `npm test` runs first), on the demo Fashion-MNIST subset
// with a tiny untrained ViT: every command end to end, in a child process, as a user runs it.
const repo = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const bin = join(repo, 'cli', 'bin', 'transformaly.js');
const work = mkdtempSync(join(tmpdir(), 'transformaly-cli-'));

const tinyVit = { random: { seed: 3, arch: { imageSize: [28, 28], patchSize: 7, width: 32, depth: 2, heads: 2, mlpDim: 64, layerNormEps: 1e-6, qkvBias: true } } };

function config(extra: Record<string, unknown> = {}): string {
  return `export default ${JSON.stringify(
    {
      data: { use: 'idx', options: { dir: join(repo, 'demo', 'fashion-mnist'), classNames: 'fashion-mnist' } },
      protocol: { mode: 'unimodal', classes: ['Trouser', 'Bag'] },
      backbone: { use: 'vit', options: tinyVit },
      runtime: { use: 'onnx', options: { threads: 1 } },
      distiller: { use: 'transformaly', options: { blocks: { last: 1 }, epochs: 2 } },
      batchSize: 25,
      outputDir: './results',
      ...extra,
    },
    null,
    2,
  )};\n`;
}

function cli(args: string[], cwd = work) {
  const result = spawnSync(process.execPath, [bin, ...args], { cwd, encoding: 'utf8', env: { ...process.env, DEBUG: '' } });
  return { code: result.status, stdout: result.stdout, stderr: result.stderr };
}

beforeAll(() => {
  if (!existsSync(join(repo, 'cli', 'dist', 'main.js'))) throw new Error('cli/dist is missing: run "npx tsc -b" (npm test does it first)');
  writeFileSync(join(work, 'transformaly.config.ts'), config());
});

// One `transformaly run` in its own folder, made by whichever test needs it first: every test sets up what it uses,
// so they pass in any order and alone (vitest --sequence.shuffle, -t).
let firstRun: { code: number | null; stdout: string; stderr: string; folder: string; runDir: string } | undefined;
function theRun() {
  if (!firstRun) {
    const folder = mkdtempSync(join(tmpdir(), 'transformaly-cli-run-'));
    writeFileSync(join(folder, 'transformaly.config.ts'), config());
    const result = cli(['run'], folder);
    const runs = existsSync(join(folder, 'results')) ? readdirSync(join(folder, 'results')) : [];
    firstRun = { ...result, folder, runDir: join(folder, 'results', runs[0] ?? 'missing') };
    expect(runs, result.stderr).toHaveLength(1);
  }
  return firstRun;
}

/** What the run's scores.csv says, case by case, with AUROC and AP computed from it by their definitions. */
function metricsFromScores(runDir: string) {
  const cases = casesOfScoresCsv(readFileSync(join(runDir, 'scores.csv'), 'utf8'));
  return new Map(
    [...cases].map(([caseId, c]) => [
      caseId,
      Object.fromEntries(
        (['pretrained', 'finetuned', 'combined'] as const).map((space) => [
          space,
          { auroc: pairwiseAuroc(c.spaces[space], c.anomalous), averagePrecision: definitionAveragePrecision(c.spaces[space], c.anomalous) },
        ]),
      ),
    ]),
  );
}

describe('transformaly CLI', () => {
  it('run: fits, scores and evaluates every case and writes results, scores, report and detectors', () => {
    const { code, stdout, stderr, runDir } = theRun();
    expect(stderr).toMatch(/random weights: every result of this run is from an UNTRAINED model/);
    expect(code, stderr).toBe(0);
    expect(stdout).toMatch(/AUROC \(%\)/);
    expect(stdout).toMatch(/unimodal\/Trouser/);
    expect(stdout).toMatch(/UNTRAINED backbone/);
    const results = JSON.parse(readFileSync(join(runDir, 'results.json'), 'utf8'));
    expect(results.untrainedBackbone).toBe(true);
    expect(results.cases.map((c: { caseId: string }) => c.caseId)).toEqual(['unimodal/Trouser', 'unimodal/Bag']);
    const csv = readFileSync(join(runDir, 'scores.csv'), 'utf8').trim().split('\n');
    expect(csv[0]).toBe('case,path,label,anomalous,pretrained,finetuned,combined,flagged');
    expect(csv).toHaveLength(1 + 400);
    const fromScores = metricsFromScores(runDir);
    for (const c of results.cases) {
      // 100 normal training images, 10% held out; 200 test images of which 180 are other classes.
      expect(c.trainImages).toBe(90);
      expect(c.heldOutImages).toBe(10);
      expect(c.testImages).toBe(200);
      expect(c.anomalousTestImages).toBe(180);
      // The metrics are those of the scores written beside them, counted pair by pair.
      for (const space of ['pretrained', 'finetuned', 'combined'] as const) {
        const want = fromScores.get(c.caseId)![space];
        expectClose([c.metrics[space].auroc, c.metrics[space].averagePrecision], [want.auroc, want.averagePrecision], 1e-12, `${c.caseId} ${space}`);
      }
    }
    // Even random ViT features separate trousers from the other clothes.
    expect(results.cases[0].metrics.pretrained.auroc).toBeGreaterThan(0.8);
    // The sum combiner: each combined score is the sum of the two spaces' scores.
    for (const c of casesOfScoresCsv(readFileSync(join(runDir, 'scores.csv'), 'utf8')).values()) {
      expectClose(c.spaces.combined, c.spaces.pretrained.map((p, i) => p + c.spaces.finetuned[i]), 1e-12, 'combined = pretrained + finetuned');
    }
    expect(readFileSync(join(runDir, 'report.html'), 'utf8')).toMatch(/UNTRAINED backbone/);
    expect(existsSync(join(runDir, 'cases', 'unimodal_Trouser', 'detector', 'manifest.json'))).toBe(true);
  });

  it('run again: finds the same run and keeps the finished cases', () => {
    const { folder } = theRun();
    const { code, stderr } = cli(['run'], folder);
    expect(code, stderr).toBe(0);
    expect(stderr).toMatch(/unimodal\/Trouser: already done, kept/);
    expect(stderr).toMatch(/unimodal\/Bag: already done, kept/);
  });

  it('eval: recomputes the metrics from scores.csv, equal to AUROC and AP counted by their definitions', () => {
    const { runDir } = theRun();
    const out = join(mkdtempSync(join(tmpdir(), 'transformaly-cli-eval-')), 'eval.json');
    const { code, stdout, stderr } = cli(['eval', join(runDir, 'scores.csv'), '--out', out]);
    expect(code, stderr).toBe(0);
    expect(stdout).toMatch(/average precision/);
    const evaluation = JSON.parse(readFileSync(out, 'utf8'));
    const fromScores = metricsFromScores(runDir);
    expect(evaluation.cases.map((c: { caseId: string }) => c.caseId)).toEqual([...fromScores.keys()]);
    for (const c of evaluation.cases) {
      for (const space of ['pretrained', 'finetuned', 'combined'] as const) {
        const want = fromScores.get(c.caseId)![space];
        expectClose([c.metrics[space].auroc, c.metrics[space].averagePrecision], [want.auroc, want.averagePrecision], 1e-12, `${c.caseId} ${space}`);
      }
    }
  });

  it('score: a saved detector scores new images without retraining, with the decision at the fit-time threshold', async () => {
    const { runDir } = theRun();
    const images = mkdtempSync(join(tmpdir(), 'transformaly-cli-new-images-'));
    // Two images that are not 28x28: the checkpoint's preprocessing resizes them.
    for (const [name, colour] of [['b.png', 40], ['a.png', 200]] as const) {
      await sharp({ create: { width: 40, height: 30, channels: 3, background: { r: colour, g: colour, b: colour } } }).png().toFile(join(images, name));
    }
    const out = join(images, 'scored.csv');
    const { code, stderr } = cli(['score', '--detector', join(runDir, 'cases', 'unimodal_Trouser', 'detector'), images, '--out', out]);
    expect(code, stderr).toBe(0);
    expect(stderr).toMatch(/an UNTRAINED backbone \(random weights\)/);
    const lines = readFileSync(out, 'utf8').trim().split('\n');
    expect(lines[0]).toBe('path,pretrained,finetuned,combined,threshold,anomalous');
    expect(lines.slice(1).map((l) => l.split(',')[0])).toEqual([join(images, 'a.png'), join(images, 'b.png')]);
    const result = JSON.parse(readFileSync(join(runDir, 'cases', 'unimodal_Trouser', 'result.json'), 'utf8'));
    for (const line of lines.slice(1)) {
      const [, pretrained, finetuned, combined, threshold, anomalous] = line.split(',').map((v, i) => (i === 0 ? v : Number(v)));
      expectClose([combined as number], [(pretrained as number) + (finetuned as number)], 1e-12, 'combined = pretrained + finetuned');
      // The threshold calibrated when the detector was fitted, as its run recorded it.
      expect(threshold).toBe(result.threshold);
      expect(anomalous).toBe((combined as number) < (threshold as number) ? 1 : 0);
    }
  });

  it('fit: one class gives one detector folder; several classes is a clear error', () => {
    const folder = mkdtempSync(join(tmpdir(), 'transformaly-fit-'));
    writeFileSync(join(folder, 'transformaly.config.ts'), config({ protocol: { mode: 'unimodal', classes: ['Sneaker'] } }));
    const { code, stdout, stderr } = cli(['fit', '--out', 'sneaker'], folder);
    expect(code, stderr).toBe(0);
    expect(stdout).toMatch(/fitted on 90 images/);
    expect(existsSync(join(folder, 'sneaker', 'manifest.json'))).toBe(true);
    const several = cli(['fit']);
    expect(several.code).toBe(1);
    expect(several.stderr).toMatch(/fit fits one detector, but the config's protocol gives 2 cases/);
  });

  it('embed: features as float32 .npy in path order (resized as the checkpoint says), the paths beside it', async () => {
    const images = join(work, 'embed-images');
    mkdirSync(join(images, 'sub'), { recursive: true });
    for (const [i, name] of ['z.png', 'sub/m.png', 'a.png'].entries()) {
      await sharp({ create: { width: 28, height: 28, channels: 3, background: { r: 60 * i, g: 9, b: 100 } } }).png().toFile(join(images, name));
    }
    // A Hugging Face layout checkpoint folder (config.json, preprocessor_config.json at 32 px, model.safetensors).
    const checkpoint = join(repo, 'test', 'golden', 'vit', 'a', 'hf');
    const out = join(work, 'features.npy');
    const { code, stdout, stderr } = cli(['embed', images, '--checkpoint', checkpoint, '--batch', '2', '--out', out]);
    expect(code, stderr).toBe(0);
    expect(stdout).toMatch(/wrote 3 x 48 features/);
    const paths = [join(images, 'a.png'), join(images, 'sub', 'm.png'), join(images, 'z.png')];
    expect(readFileSync(join(work, 'features.paths.txt'), 'utf8').trim().split('\n')).toEqual(paths);
    const features = await readNpy(out);
    expect(features.shape).toEqual([3, 48]);
    // The same images through the library, one at a time: the CLI wrote exactly these rows, in this order.
    const { OnnxRuntime } = await import('@transformaly/runtime-onnx');
    const { loadVitBackbone } = await import('@transformaly/backbone-vit');
    const { createPreprocessor, decodeImage } = await import('@transformaly/core');
    const runtime = new OnnxRuntime({ threads: 1 });
    const backbone = await loadVitBackbone({ checkpoint }, { runtime });
    const preprocessor = createPreprocessor(backbone.info.preprocess);
    for (const [row, path] of paths.entries()) {
      const { features: expected } = await backbone.forward(await preprocessor.run([await decodeImage(path)]));
      // Batched (the CLI, 2 per batch) against one at a time: float32 sums in another order.
      expectClose(features.data.subarray(row * 48, (row + 1) * 48), expected.data, 1e-5, `features of ${path}`);
    }
    await backbone.dispose();
    await runtime.dispose();
  });

  it('--version prints the package version', () => {
    const { code, stdout } = cli(['--version']);
    expect(code).toBe(0);
    expect(stdout.trim()).toBe(JSON.parse(readFileSync(join(repo, 'cli', 'package.json'), 'utf8')).version);
  });

  it('plugins: lists built-in stages and first-party plugins with their options', () => {
    const { code, stdout, stderr } = cli(['plugins']);
    expect(code, stderr).toBe(0);
    for (const name of ['folder', 'idx', 'cifar100', 'transformaly', 'sum', 'zscore', 'gaussian', 'knn', 'gmm', 'vit', 'onnx']) {
      expect(stdout).toMatch(new RegExp(`^${name}\\b`, 'm'));
    }
    expect(stdout).toMatch(/^\s+k\?: integer/m);
  });

  it('a config error exits 1 with every problem named, and nothing else', () => {
    const folder = mkdtempSync(join(tmpdir(), 'transformaly-bad-'));
    writeFileSync(join(folder, 'transformaly.config.ts'), config({ batchSize: 0, scorers: { pretrained: { use: 'knn', options: { k: 'two' } } } }));
    const { code, stdout, stderr } = cli(['run'], folder);
    expect(code).toBe(1);
    expect(stdout).toBe('');
    expect(stderr).toMatch(/transformaly\.config\.ts: 2 problems in the config/);
    expect(stderr).toMatch(/batchSize: found 0/);
    expect(stderr).toMatch(/scorers\.pretrained\.options\.k: found "two"/);
    expect(stderr).not.toMatch(/    at /);
  });
});

describe('transformaly run, interrupted', () => {
  it('stops cleanly on Ctrl-C, keeps the training checkpoint, and the same command resumes from it', async () => {
    const { spawn } = await import('node:child_process');
    const folder = mkdtempSync(join(tmpdir(), 'transformaly-sigint-'));
    writeFileSync(
      join(folder, 'transformaly.config.ts'),
      config({ protocol: { mode: 'unimodal', classes: ['Trouser'] }, distiller: { use: 'transformaly', options: { blocks: { last: 1 }, epochs: 120 } }, batchSize: 45 }),
    );
    const child = spawn(process.execPath, [bin, 'run', '--run-id', 'r'], { cwd: folder, env: { ...process.env, DEBUG: '' } });
    let stderr = '';
    const interruptedAt = await new Promise<number>((resolveEpoch, reject) => {
      child.stderr.on('data', (chunk) => {
        stderr += chunk;
        const epoch = /distill epoch (\d+)\/120/g;
        let last = 0;
        for (const m of stderr.matchAll(epoch)) last = Number(m[1]);
        if (last >= 6 && !child.killed) {
          child.kill('SIGINT');
          resolveEpoch(last);
        }
      });
      child.on('exit', () => reject(new Error(`run ended before it could be interrupted:\n${stderr}`)));
    });
    const code = await new Promise<number | null>((done) => child.on('exit', (c) => done(c)));
    expect(code).toBe(130);
    expect(stderr).toMatch(/interrupted: finishing the current step/);
    expect(stderr).toMatch(/stopped; rerun the same command to resume/);
    expect(existsSync(join(folder, 'results', 'r', 'checkpoints', 'unimodal_Trouser', 'distiller-checkpoint.safetensors'))).toBe(true);
    expect(existsSync(join(folder, 'results', 'r', 'cases', 'unimodal_Trouser', 'result.json'))).toBe(false);

    const again = cli(['run', '--run-id', 'r'], folder);
    expect(again.code, again.stderr).toBe(0);
    const resumedAfter = Number(/resuming after epoch (\d+)/.exec(again.stderr)?.[1]);
    expect(resumedAfter).toBeGreaterThanOrEqual(interruptedAt - 2);
    expect(again.stderr).not.toMatch(/distill epoch 1\/120/);
    expect(existsSync(join(folder, 'results', 'r', 'cases', 'unimodal_Trouser', 'result.json'))).toBe(true);
    // The checkpoint is gone once the case's detector is saved.
    expect(existsSync(join(folder, 'results', 'r', 'checkpoints', 'unimodal_Trouser'))).toBe(false);
  });
});
