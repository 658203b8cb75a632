#!/usr/bin/env node
// The project's side of bench/fit.mjs, one whole process: the same job as bench/fit_torch.py through the public API
// (createPipeline, Detector.fit, Detector.score), with the stage profile on. Prints one JSON line: seconds (load,
// fit, score), the stage profile, images through the teacher, and the AUROCs.
//
//   node bench/fit-job.mjs --checkpoint FILE --heads H --data DIR [--class 0] [--train 1000] [--test 1000]
//       [--epochs 5] [--batch 32] [--threads 2] [--cache on|off] [--precision float32|int8] [--taps float32|float16|bfloat16]
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const started = performance.now();
const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const { values: args } = parseArgs({
  options: {
    checkpoint: { type: 'string' },
    heads: { type: 'string' },
    data: { type: 'string', default: '/usr/share/datasets/fashion-mnist' },
    class: { type: 'string', default: '0' },
    train: { type: 'string', default: '1000' },
    test: { type: 'string', default: '1000' },
    epochs: { type: 'string', default: '5' },
    batch: { type: 'string', default: '32' },
    threads: { type: 'string', default: '2' },
    cache: { type: 'string', default: 'on' },
    precision: { type: 'string', default: 'float32' },
    taps: { type: 'string', default: 'float32' },
  },
});
const core = await import(join(root, 'core', 'dist', 'index.js'));

const CLASS_NAMES = ['T-shirt/top', 'Trouser', 'Pullover', 'Dress', 'Coat', 'Sandal', 'Shirt', 'Sneaker', 'Bag', 'Ankle boot'];
const normal = CLASS_NAMES[Number(args.class)];
const [trainCount, testCount] = [Number(args.train), Number(args.test)];
const quiet = { task: () => ({ tick() {}, done() {} }), info() {}, warn: (m) => process.stderr.write(`warning: ${m}\n`) };

const pipeline = await core.createPipeline(
  {
    data: { use: 'idx', options: { dir: args.data, classNames: 'fashion-mnist' } },
    backbone: {
      use: 'vit',
      options: { checkpoint: args.checkpoint, heads: Number(args.heads), mean: [0.5, 0.5, 0.5], std: [0.5, 0.5, 0.5], ...(args.precision === 'float32' ? {} : { precision: args.precision }) },
    },
    runtime: { use: 'onnx', options: { threads: Number(args.threads) } },
    distiller: {
      use: 'transformaly',
      options: { blocks: { last: 1 }, epochs: Number(args.epochs), teacherCache: args.cache === 'on' ? { precision: args.taps } : false },
    },
    batchSize: Number(args.batch),
    seed: 0,
    validationFraction: 0.1,
  },
  { progress: quiet },
);
try {
  const source = await pipeline.source();
  const train = (await source.items('train')).filter((item) => item.label === normal).slice(0, trainCount);
  const perClass = new Map();
  const test = (await source.items('test')).filter((item) => {
    const n = perClass.get(item.label) ?? 0;
    perClass.set(item.label, n + 1);
    return n < testCount / 10;
  });
  const backbone = await pipeline.backbone();
  let teacherImages = 0;
  const forward = backbone.forward.bind(backbone);
  backbone.forward = (pixels, options) => {
    teacherImages += pixels.dims[0];
    return forward(pixels, options);
  };
  const detector = await pipeline.createDetector();
  const loaded = performance.now();

  core.stageProfile.start();
  await detector.fit(train);
  const fitted = performance.now();
  const fitTeacherImages = teacherImages;
  const scores = await detector.score(test);
  const scored = performance.now();
  const stages = core.stageProfile.stop();
  await detector.dispose();

  const anomalous = test.map((item) => item.label !== normal);
  const auroc = Object.fromEntries(
    ['pretrained', 'finetuned', 'combined'].map((space) => [space, core.auroc(Array.from(scores[space], (s) => -s), anomalous)]),
  );
  console.log(
    JSON.stringify({
      seconds: { load: (loaded - started) / 1000, fit: (fitted - loaded) / 1000, score: (scored - fitted) / 1000 },
      stages,
      teacherImages: { fit: fitTeacherImages, score: teacherImages - fitTeacherImages },
      images: { train: train.length, test: test.length },
      auroc,
    }),
  );
} finally {
  await pipeline.dispose();
}
