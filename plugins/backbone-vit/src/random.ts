import { Rng } from '@transformaly/core';
import { expectedShapes, type VitArch, type VitWeights } from './arch.js';

/** Uniform floats in (0, 1) from core's seeded xoshiro128**: the same stream on every platform. */
function generator(seed: number): () => number {
  const rng = new Rng(seed);
  return () => (rng.nextUint32() + 0.5) / 4294967296;
}

/** Uniform values with standard deviation `std`: as good as normal ones for an untrained model, and much faster. */
function fillUniform(data: Float32Array, std: number, uniform: () => number): void {
  const half = std * Math.sqrt(3);
  for (let i = 0; i < data.length; i++) data[i] = (2 * uniform() - 1) * half;
}

/**
 * Untrained weights in the timm layout, the same for the same seed and architecture: LayerNorms start at identity,
 * everything else has the standard deviation 0.02 that timm initialises ViTs with (uniformly distributed here).
 */
export function randomVitWeights(arch: VitArch, seed: number): VitWeights {
  const uniform = generator(seed);
  const weights: VitWeights = new Map();
  for (const [name, dims] of expectedShapes(arch)) {
    const data = new Float32Array(dims.reduce((a, b) => a * b, 1));
    if (/norm\d?\.weight$/.test(name)) data.fill(1);
    else if (!/norm\d?\.bias$/.test(name)) fillUniform(data, 0.02, uniform);
    weights.set(name, { dims, data });
  }
  return weights;
}
