// Transformaly sized for a laptop CPU: the same method as presets/paper.config.ts, with one student for the last
// block of ViT-B/16 (224 px) trained for 5 epochs instead of ten students for 30 epochs, on a capped share of each
// class (protocol.limit). The pre-trained space is unchanged.
//
// Cost on 2 cores (onnxruntime, 2 threads), from `npm run bench` (2026-11-28): the ViT-B/16 forward runs at about
// 178 GFLOP/s, i.e. about 6.3 s per batch of 32 images (35.1 GFLOP each), and one student step (forward, backward,
// Adam) takes 1.77 s per batch. Extrapolated, not run end to end: a case of 450 training images (405 fit = 13
// batches, 45 held out) runs the teacher once over them (15 batches, about 1.6 minutes: the distiller's teacher
// cache keeps their taps for the other epochs and the features) and trains 5 epochs of student steps in about 2
// minutes; the 2000 test images (200 per class) take about 6.6 minutes more: some 10-11 minutes per class, under 2
// hours for the 10 classes. Streaming the teacher every epoch (teacherCache: false, the fit before the cache) took
// some 18-20 minutes per class.
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
