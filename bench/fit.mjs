#!/usr/bin/env node
// Issue 11's benchmark: the compact preset's whole job, fit on 1000 normal Fashion-MNIST images (one student for the
// last block, 5 epochs, batch 32) and scoring of 1000 test images, as whole processes: the project (bench/fit-job.mjs)
// against a PyTorch script doing the same job (bench/fit_torch.py, Debian's /usr/bin/python3 with torch, tuned BLAS
// environment for that process only), alternating, the same thread count on both sides. For ViT-B/16 (random
// weights in the real layout) and the real ViT-Ti/16 (the shared model; skipped, saying so, when it is absent).
//
// The project runs as:  stream = teacher every epoch (teacherCache: false, the fit before issue 11);
//                       cache  = teacher once per image (the default);
//                       int8   = cache with the int8 teacher (backbone precision: 'int8').
// Printed: whole-process seconds and ratios (project / torch: lower is better), AUROCs, the cached run's stage profile
// (busy seconds per stage; "wait: ..." is time a stage waited for another), and the paper preset's hours per class
// extrapolated from this run's unit costs, before (stream) and after (cache, int8).
//
//   npx tsc -b && node bench/fit.mjs [--models vit-b,vit-ti] [--variants stream,cache,int8] [--train 1000] [--test 1000]
//       [--epochs 5] [--batch 32] [--threads 2] [--repeats 1] [--quick] [--no-torch] [--vit-ti DIR] [--data DIR]
//   --quick: 128 training and 100 test images, 2 epochs (a few minutes).
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '..');
const { values: args } = parseArgs({
  options: {
    models: { type: 'string', default: 'vit-b,vit-ti' },
    variants: { type: 'string', default: 'stream,cache,int8' },
    train: { type: 'string' },
    test: { type: 'string' },
    epochs: { type: 'string' },
    batch: { type: 'string', default: '32' },
    threads: { type: 'string', default: '2' },
    repeats: { type: 'string', default: '1' },
    quick: { type: 'boolean', default: false },
    'no-torch': { type: 'boolean', default: false },
    'vit-ti': { type: 'string' },
    data: { type: 'string', default: '/usr/share/datasets/fashion-mnist' },
  },
});
const size = {
  train: Number(args.train ?? (args.quick ? 128 : 1000)),
  test: Number(args.test ?? (args.quick ? 100 : 1000)),
  epochs: Number(args.epochs ?? (args.quick ? 2 : 5)),
  batch: Number(args.batch),
  threads: Number(args.threads),
};
for (const [name, value] of Object.entries(size)) {
  if (!Number.isInteger(value) || value < 1) {
    console.error(`bench/fit: --${name} must be a positive integer, got ${value}`);
    process.exit(2);
  }
}
if (size.test % 10 !== 0) {
  console.error(`bench/fit: --test must be a multiple of 10 (the same number from each class), got ${size.test}`);
  process.exit(2);
}
const repeats = Number(args.repeats);
const variants = args.variants.split(',');
const unknown = variants.filter((v) => !['stream', 'cache', 'int8'].includes(v));
if (unknown.length > 0) {
  console.error(`bench/fit: unknown variant ${unknown.join(', ')} (stream, cache, int8)`);
  process.exit(2);
}
if (!existsSync(join(args.data, 'train-images-idx3-ubyte.gz'))) {
  console.error(`bench/fit: Fashion-MNIST not found in ${args.data} (apt install dataset-fashion-mnist, or --data DIR)`);
  process.exit(1);
}

const core = await import(join(root, 'core', 'dist', 'index.js'));
const vit = await import(join(root, 'plugins', 'backbone-vit', 'dist', 'index.js'));
const work = mkdtempSync(join(tmpdir(), 'transformaly-bench-fit-'));

/** The models to run: ViT-B/16 with random weights written here, the shared ViT-Ti when present. */
async function models() {
  const out = [];
  for (const name of args.models.split(',')) {
    if (name === 'vit-b') {
      const arch = { imageSize: [224, 224], patchSize: 16, width: 768, depth: 12, heads: 12, mlpDim: 3072, layerNormEps: 1e-6, qkvBias: true };
      const checkpoint = join(work, 'vit-b16.safetensors');
      await core.writeSafetensors(checkpoint, Object.fromEntries(vit.randomVitWeights(arch, 1)));
      out.push({ name: 'ViT-B/16 (random weights)', key: 'vit-b', checkpoint, heads: 12, gflops: 35.1 });
    } else if (name === 'vit-ti') {
      const dir = args['vit-ti'] ?? [join(root, '..', 'shared', 'models', 'vit-ti16-augreg'), '/work/shared/models/vit-ti16-augreg'].find((d) => existsSync(d));
      const checkpoint = dir && join(dir, 'model.safetensors');
      if (!checkpoint || !existsSync(checkpoint)) {
        console.log(`ViT-Ti/16: the real model is not there (${dir ?? '../shared/models/vit-ti16-augreg'}; --vit-ti DIR): skipped`);
        continue;
      }
      out.push({ name: 'ViT-Ti/16 (real, augreg)', key: 'vit-ti', checkpoint, heads: 3, gflops: 1.26 });
    } else {
      console.error(`bench/fit: unknown model ${name} (vit-b, vit-ti)`);
      process.exit(2);
    }
  }
  return out;
}

function run(command, argv, env) {
  const t = performance.now();
  const result = spawnSync(command, argv, { encoding: 'utf8', env, cwd: root, maxBuffer: 1 << 26 });
  const seconds = (performance.now() - t) / 1000;
  if (result.status !== 0) throw new Error(`${command} ${argv.join(' ')} failed:\n${result.stderr}`);
  const lines = result.stdout.trim().split('\n');
  return { seconds, report: JSON.parse(lines[lines.length - 1]) };
}

function project(model, variant) {
  const flags = { stream: ['--cache', 'off'], cache: ['--cache', 'on'], int8: ['--cache', 'on', '--precision', 'int8'] }[variant];
  return run(process.execPath, [
    join(here, 'fit-job.mjs'), '--checkpoint', model.checkpoint, '--heads', String(model.heads), '--data', args.data,
    '--train', String(size.train), '--test', String(size.test), '--epochs', String(size.epochs), '--batch', String(size.batch),
    '--threads', String(size.threads), ...flags,
  ]);
}

function torch(model) {
  const threads = String(size.threads);
  const env = { ...process.env, OPENBLAS_CORETYPE: 'SkylakeX', OMP_NUM_THREADS: threads, OPENBLAS_NUM_THREADS: threads, MKL_NUM_THREADS: threads };
  return run(process.env.TORCH_PYTHON ?? '/usr/bin/python3', [
    join(here, 'fit_torch.py'), model.checkpoint, String(model.heads), args.data, '0',
    String(size.train), String(size.test), String(size.epochs), String(size.batch), threads,
  ], env);
}

const pad = (s, n) => String(s).padEnd(n);
const fmt = (x, digits = 1) => x.toFixed(digits);

/** The paper preset's hours per CIFAR-10 class from one run's unit costs (teacher per image, student step and scoring per batch). */
function paperHours(stages, teacherImages, teacherEvery) {
  const seconds = (name) => stages[name]?.seconds ?? 0;
  const calls = (name) => stages[name]?.calls ?? 0;
  const perImage = seconds('teacher') / teacherImages;
  const perStep = seconds('students: train') / calls('students: train');
  const perScore = (seconds('students: score') + seconds('students: held-out')) / (calls('students: score') + calls('students: held-out'));
  const [fit, held, test, epochs, students] = [4500, 500, 10000, 30, 10];
  const batchesOf = (n) => Math.ceil(n / 32);
  const images = teacherEvery ? epochs * (fit + held) + fit + held + test : fit + held + test;
  const steps = epochs * batchesOf(fit) * students;
  const scores = (epochs * batchesOf(held) + batchesOf(fit) + batchesOf(held) + batchesOf(test)) * students;
  return { teacher: (images * perImage) / 3600, students: (steps * perStep + scores * perScore) / 3600 };
}

const all = {};
try {
  for (const model of await models()) {
    const results = { torch: [], ...Object.fromEntries(variants.map((v) => [v, []])) };
    for (let r = 0; r < repeats; r++) {
      if (!args['no-torch']) results.torch.push(torch(model));
      for (const v of variants) results[v].push(project(model, v));
    }
    const best = (list) => list.reduce((a, b) => (b.seconds < a.seconds ? b : a));
    const torchBest = results.torch.length ? best(results.torch) : undefined;
    console.log(`\n${model.name}: fit on ${size.train} normal images (${size.epochs} epochs, one student for the last block, batch ${size.batch}) and score ${size.test}, ${size.threads} threads, best of ${repeats}`);
    console.log(`  ${pad('', 34)}${pad('process s', 11)}${pad('fit s', 9)}${pad('score s', 9)}${pad('/ torch', 9)}AUROC pre / fine / combined`);
    const line = (label, r) => {
      const s = r.report.seconds;
      const ratio = torchBest ? fmt(r.seconds / torchBest.seconds, 2) + 'x' : '-';
      const a = r.report.auroc;
      console.log(`  ${pad(label, 34)}${pad(fmt(r.seconds), 11)}${pad(fmt(s.fit), 9)}${pad(fmt(s.score), 9)}${pad(ratio, 9)}${fmt(a.pretrained, 4)} / ${fmt(a.finetuned, 4)} / ${fmt(a.combined, 4)}`);
    };
    if (torchBest) line('torch script', torchBest);
    const labels = { stream: 'project, teacher every epoch', cache: 'project, teacher cache', int8: 'project, teacher cache, int8' };
    for (const v of variants) line(labels[v], best(results[v]));
    if (repeats > 1) {
      for (const [k, list] of Object.entries(results)) if (list.length) console.log(`  ${k} runs: ${list.map((x) => fmt(x.seconds)).join(', ')} s`);
    }

    const profiled = results.cache?.length ? best(results.cache) : undefined;
    if (profiled) {
      const { stages, seconds } = profiled.report;
      const wall = seconds.fit + seconds.score;
      console.log(`  stage profile of the teacher-cache run (busy seconds; fit + score took ${fmt(wall)} s; the worker's stage runs beside the main thread):`);
      for (const [stage, t] of Object.entries(stages).sort((a, b) => b[1].seconds - a[1].seconds)) {
        console.log(`    ${pad(stage, 36)}${pad(fmt(t.seconds, 2), 9)}${pad(fmt((100 * t.seconds) / wall) + '%', 8)}${t.calls} calls`);
      }
    }
    if (model.key === 'vit-b') {
      const hours = {};
      const teacherImages = (r) => r.report.teacherImages.fit + r.report.teacherImages.score;
      if (results.stream?.length) hours.before = paperHours(best(results.stream).report.stages, teacherImages(best(results.stream)), true);
      if (profiled) hours.after = paperHours(profiled.report.stages, teacherImages(profiled), false);
      if (results.int8?.length) hours.int8 = paperHours(best(results.int8).report.stages, teacherImages(best(results.int8)), false);
      const labels2 = { before: 'before (teacher every epoch)', after: 'after (teacher cache)', int8: 'after, int8 teacher' };
      console.log('  paper preset (CIFAR-10 class: 4500 fit + 500 held-out, 10000 test; 10 students, 30 epochs), extrapolated from these unit costs:');
      for (const [k, h] of Object.entries(hours)) {
        console.log(`    ${pad(labels2[k], 32)}${fmt(h.teacher + h.students)} h per class  (teacher ${fmt(h.teacher)} h, students ${fmt(h.students)} h)`);
      }
      all[model.key] = { hours };
    }
    all[model.key] = {
      ...all[model.key],
      torch: results.torch.map((r) => ({ seconds: r.seconds, ...r.report })),
      ...Object.fromEntries(variants.map((v) => [v, results[v].map((r) => ({ seconds: r.seconds, ...r.report }))])),
    };
  }
} finally {
  rmSync(work, { recursive: true, force: true });
}
console.log(JSON.stringify({ size, results: all }));
