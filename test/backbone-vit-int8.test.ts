// The int8 teacher (backbone-vit precision 'int8'): the weights' per-channel quantization by hand, and the whole
// ViT against scripts/golden/torch_vit_int8.py, which computes the same dynamic quantization (onnxruntime's
// DynamicQuantizeMatMul as documented) in float64 from the definitions; and its distance from float32.
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { readSafetensors, type Tensor } from '@transformaly/core';
import { OnnxRuntime } from '@transformaly/runtime-onnx';
import { TfjsRuntime } from '@transformaly/runtime-tfjs';
import { loadVitBackbone, quantizeWeightPerChannel } from '@transformaly/backbone-vit';

const GOLDEN = join(import.meta.dirname, 'golden', 'vit', 'a');
const runtime = new OnnxRuntime({ threads: 1 });
afterAll(() => runtime.dispose());

/** max|ours - ref| / max|ref| */
function relativeError(ours: Float32Array, ref: Float32Array): number {
  expect(ours.length).toBe(ref.length);
  let diff = 0;
  let scale = 0;
  for (let i = 0; i < ref.length; i++) {
    diff = Math.max(diff, Math.abs(ours[i] - ref[i]));
    scale = Math.max(scale, Math.abs(ref[i]));
  }
  return diff / scale;
}

async function golden(file: string) {
  const { arrays } = await readSafetensors(join(GOLDEN, file));
  return (name: string): Tensor => ({ dims: arrays[name].dims, data: arrays[name].data as Float32Array });
}

describe('int8 ViT', () => {
  it('quantizes a weight per output channel: scale max|w| / 127, rounded half away from zero, stored [in, out]', () => {
    // Rows (outputs) [1, -2, 0.5] and [0, 0, 0]: scales 2/127 and 1 (nothing to scale).
    const { data, scales } = quantizeWeightPerChannel(Float32Array.of(1, -2, 0.5, 0, 0, 0), 2, 3);
    expect(Array.from(scales)).toEqual([Math.fround(2 / 127), 1]);
    // 1 / (2/127) = 63.5 -> 64; -2 -> -127; 0.5 / (2/127) = 31.75 -> 32.
    expect(Array.from(data)).toEqual([64, 0, -127, 0, 32, 0]);
    // A scale folded in first (the query's 1/sqrt(head)) scales the step, not the integers.
    const scaled = quantizeWeightPerChannel(Float32Array.of(1, -2, 0.5, 0, 0, 0), 2, 3, 0.25);
    expect(Array.from(scaled.data)).toEqual(Array.from(data));
    expect(scaled.scales[0]).toBeCloseTo(0.5 / 127, 9);
  });

  it('computes the features and every block as the float64 reference of the same quantization does', async () => {
    const ref = await golden('reference.safetensors');
    const int8 = await golden('int8.safetensors');
    const backbone = await loadVitBackbone({ checkpoint: join(GOLDEN, 'timm'), precision: 'int8' }, { runtime });
    try {
      expect(backbone.info.precision).toBe('int8');
      const out = await backbone.forward(ref('pixels'), { taps: [0, 1, 2] });
      expect(relativeError(out.features.data as Float32Array, int8('features').data)).toBeLessThanOrEqual(1e-5);
      for (let i = 0; i < 3; i++) expect(relativeError(out.taps.get(i)!.output.data, int8(`hidden_${i + 1}`).data), `block ${i}`).toBeLessThanOrEqual(1e-5);
      // And it is quantized: a few per cent from the float32 model, far more than float32's own 1e-4.
      const fromFloat = relativeError(out.features.data as Float32Array, ref('features').data);
      expect(fromFloat).toBeGreaterThan(1e-3);
      expect(fromFloat).toBeLessThan(0.1);
    } finally {
      await backbone.dispose();
    }
  });

  it('says that it needs onnxruntime when the runtime cannot run it', async () => {
    const tfjs = new TfjsRuntime({ backend: 'cpu' });
    try {
      await expect(loadVitBackbone({ checkpoint: join(GOLDEN, 'timm'), precision: 'int8' }, { runtime: tfjs })).rejects.toThrow(
        /precision 'int8' uses onnxruntime's DynamicQuantizeMatMul \(runtime 'onnx'\); runtime "tfjs" could not load it/,
      );
    } finally {
      await tfjs.dispose();
    }
  });
});
