// The default: ViT-B/16 (ImageNet-21k pretrained, ImageNet-1k fine-tuned) from the Hugging Face hub, on the
// Fashion-MNIST demo subset shipped in demo/, unimodal, with the compact variant of the method (a student for the
// last block only, a few epochs) so that it finishes in minutes on a laptop CPU. presets/paper.config.ts has the
// paper's settings.
import { defineConfig } from '@transformaly/core';

export default defineConfig({
  data: { use: 'idx', options: { dir: './demo/fashion-mnist', classNames: 'fashion-mnist' } },
  protocol: { mode: 'unimodal', classes: ['Trouser', 'Bag'] },
  backbone: { use: 'vit', options: { checkpoint: 'google/vit-base-patch16-224' } },
  runtime: { use: 'onnx' },
  distiller: { use: 'transformaly', options: { blocks: { last: 1 }, epochs: 3 } },
  scorers: {
    pretrained: { use: 'gaussian', options: { whiten: { varianceFraction: 0.9 } } },
    finetuned: { use: 'gaussian' },
  },
  combiner: { use: 'sum' },
  batchSize: 16,
  threshold: { quantile: 0.05 },
});
