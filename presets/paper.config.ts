// Transformaly with the paper's settings (Cohen & Avidan, 2021), on CIFAR-10, one-class (unimodal) protocol:
//
// - teacher: ViT-B/16 pretrained on ImageNet-21k and fine-tuned on ImageNet-1k. Here google/vit-base-patch16-224,
//   at 224 px. The authors' released code uses the 384-px variant of the same network (timm's
//   vit_base_patch16_384, on the hub as google/vit-base-patch16-384); put that checkpoint here to match it, at 3-4x
//   the cost per image.
// - pre-trained space: the final-LayerNorm CLS token, PCA-whitened to 90% of the variance, full-covariance Gaussian;
// - fine-tuned space: a student for each of blocks 2..11 (0-based range(2, 12)), xavier-initialised, trained
//   30 epochs with Adam (lr 1e-4, betas 0.9/0.999, eps 1e-8) on batches of 32 to reproduce its teacher block; each
//   keeps the epoch of lowest loss on the 10% of normal images held out; per-block mean squared discrepancy,
//   Gaussian;
// - normality score: the sum of the two log-likelihoods.
//
// Cost: heavy on a CPU. `node bench/fit.mjs` (2 cores, onnxruntime, 2 threads) measures the unit costs on the compact
// job (ViT-B/16, one student, 1000 images) and extrapolates this preset for a CIFAR-10 class (4500 fit images, 500
// held out, 10000 test; 10 students, 30 epochs): about 17 hours per class with the distiller's teacher cache (the
// teacher runs once per image, 0.6 h; its taps, 6.7 MB per image for ten blocks, are replayed mostly from a temporary
// file in the checkpoint folder), 22 hours streaming the teacher every epoch (teacherCache: false), 15 hours with the
// int8 teacher (backbone precision: 'int8'). Not run end to end, and measured with the memory arena on, which this
// preset turns off to save about 1 GB per student (student steps about 15% slower). Use a GPU
// (runtime: { use: 'onnx', options: { device: 'cuda' } }) or presets/cpu.config.ts.
//
// Get the data: the "CIFAR-10 binary version" from https://www.cs.toronto.edu/~kriz/cifar.html, unpacked beside
// this repository's presets folder as data/cifar-10-batches-bin (paths here are relative to this file).
import { defineConfig } from '@transformaly/core';

export default defineConfig({
  data: { use: 'cifar10', options: { dir: '../data/cifar-10-batches-bin' } },
  protocol: { mode: 'unimodal', classes: 'all' },
  backbone: { use: 'vit', options: { checkpoint: 'google/vit-base-patch16-224' } },
  // Ten ViT-B students train at once: without the memory arena each keeps about 1 GB less resident, for steps
  // about 15% slower.
  runtime: { use: 'onnx', options: { memoryArena: false } },
  distiller: {
    use: 'transformaly',
    options: { blocks: { from: 2, to: 12 }, epochs: 30, lr: 1e-4, betas: [0.9, 0.999], eps: 1e-8, seed: 0 },
  },
  scorers: {
    pretrained: { use: 'gaussian', options: { whiten: { varianceFraction: 0.9 } } },
    finetuned: { use: 'gaussian' },
  },
  combiner: { use: 'sum' },
  // The students' training batch is this batch size too.
  batchSize: 32,
  validationFraction: 0.1,
  seed: 0,
  threshold: { quantile: 0.05 },
  outputDir: '../results',
});
