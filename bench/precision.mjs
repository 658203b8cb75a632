#!/usr/bin/env node
// What lower precision costs and gives (issue 11): the int8 teacher (backbone precision: 'int8') and 16-bit teacher
// cache storage (distiller teacherCache.precision float16 / bfloat16), each against float32.
//
// 1. Speed: the backbone's forward (features and the last block's taps, batch 32) in float32 and int8, alternating
//    in this process, for ViT-B/16 (random weights) and, when present, the real ViT-Ti/16.
// 2. Accuracy: Fashion-MNIST, unimodal protocol, every class, with the real ViT-Ti/16 (the compact preset's
//    method: one student for the last block, 5 epochs, batch 32; a seeded capped share of each class): the AUROC of
//    each space per class, and the mean change against float32, for teacher int8, taps float16 and taps bfloat16.
//    Skipped, saying so, when the model is absent.
//
//   npx tsc -b && node bench/precision.mjs [--threads 2] [--repeats 3] [--train 300] [--test-per-class 100]
//       [--epochs 5] [--classes all|0,1,...] [--variants float32,int8,float16,bfloat16] [--no-speed] [--no-accuracy]
//       [--vit-ti DIR] [--data DIR]
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const { values: args } = parseArgs({
  options: {
    threads: { type: 'string', default: '2' },
    repeats: { type: 'string', default: '3' },
    train: { type: 'string', default: '300' },
    'test-per-class': { type: 'string', default: '100' },
    epochs: { type: 'string', default: '5' },
    classes: { type: 'string', default: 'all' },
    variants: { type: 'string', default: 'float32,int8,float16,bfloat16' },
    'no-speed': { type: 'boolean', default: false },
    'no-accuracy': { type: 'boolean', default: false },
    'vit-ti': { type: 'string' },
    data: { type: 'string', default: '/usr/share/datasets/fashion-mnist' },
  },
});
const threads = Number(args.threads);
const core = await import(join(root, 'core', 'dist', 'index.js'));
const vit = await import(join(root, 'plugins', 'backbone-vit', 'dist', 'index.js'));
const { OnnxRuntime } = await import(join(root, 'plugins', 'runtime-onnx', 'dist', 'index.js'));
const CLASS_NAMES = ['T-shirt/top', 'Trouser', 'Pullover', 'Dress', 'Coat', 'Sandal', 'Shirt', 'Sneaker', 'Bag', 'Ankle boot'];
const tiDir = args['vit-ti'] ?? [join(root, '..', 'shared', 'models', 'vit-ti16-augreg'), '/work/shared/models/vit-ti16-augreg'].find((d) => existsSync(d));
const tiCheckpoint = tiDir && existsSync(join(tiDir, 'model.safetensors')) ? join(tiDir, 'model.safetensors') : undefined;
const quiet = { task: () => ({ tick() {}, done() {} }), info() {}, warn() {} };
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const summary = {};

if (!args['no-speed']) {
  const runtime = new OnnxRuntime({ threads });
  const models = [{ name: 'ViT-B/16', options: { random: { seed: 1, arch: 'ViT-B/16' } }, gflops: 35.1 }];
  if (tiCheckpoint) models.push({ name: 'ViT-Ti/16', options: { checkpoint: tiCheckpoint, heads: 3, resample: 'bicubic' }, gflops: 1.26 });
  else console.log('ViT-Ti/16: the real model is not there (--vit-ti DIR): its speed is skipped');
  for (const model of models) {
    const backbones = {};
    for (const precision of ['float32', 'int8']) backbones[precision] = await vit.loadVitBackbone({ ...model.options, precision }, { runtime, progress: quiet });
    const info = backbones.float32.info;
    const n = 32;
    const data = new Float32Array(n * 3 * info.imageSize[0] * info.imageSize[1]);
    for (let i = 0; i < data.length; i++) data[i] = Math.sin(i * 0.37);
    const pixels = { dims: [n, 3, ...info.imageSize], data };
    const taps = [info.depth - 1];
    const times = { float32: [], int8: [] };
    for (const precision of ['float32', 'int8']) await backbones[precision].forward(pixels, { taps });
    for (let r = 0; r < Number(args.repeats); r++) {
      for (const precision of ['float32', 'int8']) {
        const t = performance.now();
        await backbones[precision].forward(pixels, { taps });
        times[precision].push((performance.now() - t) / 1000);
      }
    }
    const ratio = median(times.float32) / median(times.int8);
    console.log(
      `${model.name} forward, batch ${n}, ${threads} threads: float32 ${median(times.float32).toFixed(2)} s, int8 ${median(times.int8).toFixed(2)} s ` +
        `(medians of ${times.int8.length}; runs ${times.float32.map((t) => t.toFixed(2)).join(' ')} / ${times.int8.map((t) => t.toFixed(2)).join(' ')}): int8 ${ratio.toFixed(2)}x faster`,
    );
    summary[`${model.name} forward`] = { float32: times.float32, int8: times.int8, speedup: ratio };
    for (const b of Object.values(backbones)) await b.dispose();
  }
  await runtime.dispose();
}

if (!args['no-accuracy']) {
  if (!tiCheckpoint) {
    console.log('accuracy: the real ViT-Ti/16 is not there (--vit-ti DIR): skipped');
  } else {
    const known = {
      float32: ['float32', { backbone: {}, taps: 'float32' }],
      int8: ['int8 teacher', { backbone: { precision: 'int8' }, taps: 'float32' }],
      float16: ['float16 taps', { backbone: {}, taps: 'float16' }],
      bfloat16: ['bfloat16 taps', { backbone: {}, taps: 'bfloat16' }],
    };
    const asked = args.variants.split(',');
    if (asked[0] !== 'float32' || asked.some((v) => !known[v])) {
      console.error(`bench/precision: --variants must start with float32 (the reference) and name only ${Object.keys(known).join(', ')}`);
      process.exit(2);
    }
    const variants = Object.fromEntries(asked.map((v) => known[v]));
    const classes = args.classes === 'all' ? CLASS_NAMES : args.classes.split(',').map((c) => CLASS_NAMES[Number(c)]);
    const results = {};
    for (const [label, variant] of Object.entries(variants)) {
      const pipeline = await core.createPipeline(
        {
          data: { use: 'idx', options: { dir: args.data, classNames: 'fashion-mnist' } },
          protocol: { mode: 'unimodal', classes, limit: { train: Number(args.train), testPerClass: Number(args['test-per-class']) } },
          backbone: { use: 'vit', options: { checkpoint: tiCheckpoint, heads: 3, resample: 'bicubic', ...variant.backbone } },
          runtime: { use: 'onnx', options: { threads } },
          distiller: { use: 'transformaly', options: { blocks: { last: 1 }, epochs: Number(args.epochs), teacherCache: { precision: variant.taps } } },
          batchSize: 32,
          seed: 0,
          validationFraction: 0.1,
        },
        { progress: quiet },
      );
      results[label] = {};
      const started = performance.now();
      try {
        for (const c of await pipeline.cases()) {
          const detector = await pipeline.createDetector();
          await detector.fit(c.train);
          const scores = await detector.score(c.test.map((t) => t.item));
          await detector.dispose();
          const anomalous = c.test.map((t) => t.anomalous);
          results[label][c.className] = Object.fromEntries(
            ['pretrained', 'finetuned', 'combined'].map((space) => [space, core.auroc(Array.from(scores[space], (s) => -s), anomalous)]),
          );
        }
      } finally {
        await pipeline.dispose();
      }
      console.log(`  ${label}: ${((performance.now() - started) / 1000).toFixed(0)} s ${JSON.stringify(results[label])}`);
    }
    const base = results.float32;
    console.log(`\nFashion-MNIST, unimodal, ${classes.length} classes (${args.train} training, ${args['test-per-class']} test images per class), ViT-Ti/16, one student for the last block, ${args.epochs} epochs`);
    console.log('AUROC per class (combined):');
    console.log(`  ${'class'.padEnd(14)}${Object.keys(variants).map((v) => v.padEnd(16)).join('')}`);
    for (const name of classes) console.log(`  ${name.padEnd(14)}${Object.keys(variants).map((v) => results[v][name].combined.toFixed(4).padEnd(16)).join('')}`);
    console.log('mean AUROC change against float32 (negative = worse), per space:');
    for (const v of Object.keys(variants).slice(1)) {
      const change = (space) => classes.reduce((sum, name) => sum + results[v][name][space] - base[name][space], 0) / classes.length;
      const worst = (space) => Math.min(...classes.map((name) => results[v][name][space] - base[name][space]));
      console.log(
        `  ${v.padEnd(16)}` +
          ['pretrained', 'finetuned', 'combined'].map((s) => `${s} ${change(s) >= 0 ? '+' : ''}${change(s).toFixed(4)} (worst class ${worst(s).toFixed(4)})`).join(', '),
      );
    }
    summary.auroc = results;
  }
}
console.log(JSON.stringify(summary));
