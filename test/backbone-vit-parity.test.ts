// Parity with torchvision's VisionTransformer (golden files from scripts/golden/torch_vit.py): the features and every
// block's output, for two architectures, each read from a Hugging Face and a timm checkpoint (F32, F16, BF16).
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { readSafetensors, type Tensor } from '@transformaly/core';
import { OnnxRuntime } from '@transformaly/runtime-onnx';
import { loadVitBackbone, type VitBackboneOptions } from '@transformaly/backbone-vit';
import { expectClose } from './fixtures/close.js';

const GOLDEN = join(import.meta.dirname, 'golden', 'vit');
const runtime = new OnnxRuntime({ threads: 1 });
afterAll(() => runtime.dispose());

async function reference(file: string) {
  const { metadata, arrays } = await readSafetensors(join(GOLDEN, file));
  const tensor = (name: string): Tensor => ({ dims: arrays[name].dims, data: arrays[name].data as Float32Array });
  return { metadata, tensor, names: Object.keys(arrays) };
}


const CASES: Array<{ arch: 'a' | 'b'; layout: 'hf' | 'timm'; dtype: string; options: Partial<VitBackboneOptions> }> = [
  { arch: 'a', layout: 'hf', dtype: 'F32', options: {} },
  { arch: 'a', layout: 'timm', dtype: 'BF16', options: {} },
  { arch: 'b', layout: 'hf', dtype: 'F16', options: {} },
  // A bare timm file: heads and the (non-timm) epsilon come from options.
  { arch: 'b', layout: 'timm', dtype: 'F32', options: { heads: 2, layerNormEps: 1e-12 } },
];

describe('ViT parity with torchvision', () => {
  for (const { arch, layout, dtype, options } of CASES) {
    it(`architecture ${arch}, ${layout} layout (${dtype}): features and every block within 1e-4 relative`, async () => {
      const ref = await reference(join(arch, 'reference.safetensors'));
      const meta = Object.fromEntries(Object.entries(ref.metadata).map(([k, v]) => [k, JSON.parse(v)]));
      const backbone = await loadVitBackbone({ checkpoint: join(GOLDEN, arch, layout), ...options }, { runtime });
      try {
        expect(backbone.info).toMatchObject({
          imageSize: [meta.image_size, meta.image_size],
          patchSize: meta.patch_size,
          width: meta.width,
          depth: meta.depth,
          heads: meta.heads,
          mlpDim: meta.mlp,
          layerNormEps: meta.eps,
          qkvBias: meta.qkv_bias,
          tokens: (meta.image_size / meta.patch_size) ** 2 + 1,
          untrained: false,
        });
        const depth = meta.depth as number;
        const out = await backbone.forward(ref.tensor('pixels'), { taps: Array.from({ length: depth }, (_, i) => i) });
        const features = ref.tensor('features');
        expect([out.features.rows, out.features.cols]).toEqual(features.dims);
        expectClose(out.features.data, features.data, 1e-4, 'features');
        for (let i = 0; i < depth; i++) {
          const tap = out.taps.get(i)!;
          expect(tap.input.dims).toEqual(ref.tensor(`hidden_${i}`).dims);
          expectClose(tap.input.data, ref.tensor(`hidden_${i}`).data, 1e-4, `block ${i} input`);
          expectClose(tap.output.data, ref.tensor(`hidden_${i + 1}`).data, 1e-4, `block ${i} output`);
        }
      } finally {
        await backbone.dispose();
      }
    });
  }

  it('runs at another (non-square) size with bicubically resampled position embeddings, like torch', async () => {
    const ref = await reference(join('a', 'resampled.safetensors'));
    const backbone = await loadVitBackbone({ checkpoint: join(GOLDEN, 'a', 'hf'), imageSize: [40, 48] }, { runtime });
    try {
      expect(backbone.info.imageSize).toEqual([40, 48]);
      expect(backbone.info.tokens).toBe(5 * 6 + 1);
      expect(backbone.info.preprocess.size).toEqual([40, 48]);
      const out = await backbone.forward(ref.tensor('pixels'), { taps: [0, 2] });
      expectClose(out.features.data, ref.tensor('features').data, 1e-4, 'features');
      expectClose(out.taps.get(0)!.input.data, ref.tensor('hidden_0').data, 1e-4, 'block 0 input');
      expectClose(out.taps.get(2)!.output.data, ref.tensor('hidden_3').data, 1e-4, 'block 2 output');
    } finally {
      await backbone.dispose();
    }
  });
});
