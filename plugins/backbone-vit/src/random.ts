import { expectedShapes, type VitArch, type VitWeights } from './arch.js';

/** xoshiro128** seeded through splitmix32: fast, and the same stream on every platform. */
function generator(seed: number): () => number {
  let s = seed >>> 0;
  const split = () => {
    s = (s + 0x9e3779b9) >>> 0;
    let z = s;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
    return (z ^ (z >>> 16)) >>> 0;
  };
  let a = split();
  let b = split();
  let c = split();
  let d = split();
  return () => {
    const result = Math.imul(((Math.imul(b, 5) << 7) | (Math.imul(b, 5) >>> 25)) >>> 0, 9) >>> 0;
    const t = b << 9;
    c ^= a;
    d ^= b;
    b ^= c;
    a ^= d;
    c ^= t;
    d = (d << 11) | (d >>> 21);
    return (result + 0.5) / 4294967296;
  };
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
