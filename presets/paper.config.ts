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
// Cost: heavy on a CPU. From `npm run bench` on 2 cores (onnxruntime, 2 threads): a ViT-B/16 teacher pass with its
// taps takes about 6.3 s per batch of 32 images and one student step 1.77 s (about 15% more with the memory arena
// off, as here). For a CIFAR-10 class (4500 fit images = 141 batches, 500 held out) the ten students' steps take
// about 48 minutes per epoch, 24 hours for 30 epochs; the teacher runs once over the 5000 training and 10000 test
// images (about 50 minutes: the distiller's teacher cache replays the taps, 6.7 MB per image for ten blocks, mostly
// from a temporary file in the checkpoint folder): some 25-26 hours per class (extrapolated, not run end to end).
// Streaming the teacher every epoch (teacherCache: false) adds about 16 minutes per epoch: some 32-33 hours. Use a
// GPU (runtime: { use: 'onnx', options: { device: 'cuda' } }) or presets/cpu.config.ts.
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
