// Transformaly sized for a laptop CPU: the same method as presets/paper.config.ts, with one student for the last
// block of ViT-B/16 (224 px) trained for 5 epochs instead of ten students for 30 epochs, on a capped share of each
// class (protocol.limit). The pre-trained space is unchanged.
//
// Cost on 2 cores (onnxruntime, 2 threads), from the unit costs `node bench/fit.mjs` measured (2026-12-02: the
// ViT-B/16 teacher 0.136 s per image, a student step 1.31 s per batch of 32), extrapolated, not run end to end: a
// case of 450 training images (405 fit = 13 batches, 45 held out) runs the teacher once over them (about 1 minute:
// the distiller's teacher cache keeps their taps for the other epochs and the features) and trains 5 epochs of
// student steps in about 1.5 minutes; the 2000 test images (200 per class) take about 5 minutes more: some 7-8
// minutes per class, about 1.3 hours for the 10 classes. Streaming the teacher every epoch (teacherCache: false, the
// fit before the cache) takes some 12-13 minutes per class. bench/fit.mjs's own compact job (1000 training and 1000
// test images) took 8.7 minutes as one process.
// Run end to end: the default transformaly.config.ts (the same method, 3 epochs, 100 training and 200 test images per
// case, 2 classes) took 4 min 41 s.
//
// The data here is Fashion-MNIST (gzipped IDX files; Debian's dataset-fashion-mnist installs them in
// /usr/share/datasets/fashion-mnist); point dir at your copy, e.g. '../demo/fashion-mnist' for the 1000-image demo
// subset in this repository.
import { defineConfig } from '@transformaly/core';

export default defineConfig({
  data: { use: 'idx', options: { dir: '/usr/share/datasets/fashion-mnist', classNames: 'fashion-mnist' } },
  protocol: { mode: 'unimodal', classes: 'all', limit: { train: 450, testPerClass: 200 } },
  backbone: { use: 'vit', options: { checkpoint: 'google/vit-base-patch16-224' } },
  runtime: { use: 'onnx' },
  distiller: { use: 'transformaly', options: { blocks: { last: 1 }, epochs: 5 } },
  scorers: {
    pretrained: { use: 'gaussian', options: { whiten: { varianceFraction: 0.9 } } },
    finetuned: { use: 'gaussian' },
  },
  combiner: { use: 'sum' },
  batchSize: 32,
  validationFraction: 0.1,
  seed: 0,
  outputDir: '../results',
});
