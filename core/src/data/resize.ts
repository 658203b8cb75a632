// Separable resampling of float RGB images with Pillow's semantics (`PIL.Image.resize` on 'F' images):
// per-output-pixel filter taps computed once per (input size, output size), a horizontal pass into a float32
// intermediate, then a vertical pass. When downsampling, the filter support is widened by the scale (antialias),
// as Pillow and torchvision's antialiased resize do.
import type { Resample } from '../types.js';

/** Filter taps of one axis: output pixel `o` reads `count[o]` inputs from `start[o]`, weights at `o * ksize`. */
export interface AxisTaps {
  inSize: number;
  outSize: number;
  ksize: number;
  start: Int32Array;
  count: Int32Array;
  weights: Float64Array;
}

function bilinear(x: number): number {
  if (x < 0) x = -x;
  return x < 1 ? 1 - x : 0;
}

// Keys' cubic with a = -0.5, as Pillow's bicubic filter.
const A = -0.5;
function bicubic(x: number): number {
  if (x < 0) x = -x;
  if (x < 1) return ((A + 2) * x - (A + 3)) * x * x + 1;
  if (x < 2) return (((x - 5) * x + 8) * x - 4) * A;
  return 0;
}

const FILTERS = { bilinear: { support: 1, fn: bilinear }, bicubic: { support: 2, fn: bicubic } } as const;

/** Pillow's `precompute_coeffs` for the whole input range. */
function filterTaps(inSize: number, outSize: number, filter: (typeof FILTERS)['bilinear' | 'bicubic']): AxisTaps {
  const scale = inSize / outSize;
  const filterScale = Math.max(scale, 1);
  const support = filter.support * filterScale;
  const ksize = Math.ceil(support) * 2 + 1;
  const start = new Int32Array(outSize);
  const count = new Int32Array(outSize);
  const weights = new Float64Array(outSize * ksize);
  const ss = 1 / filterScale;
  for (let o = 0; o < outSize; o++) {
    const center = (o + 0.5) * scale;
    // Math.trunc matches the C (int) cast Pillow uses to round these bounds.
    const lo = Math.max(Math.trunc(center - support + 0.5), 0);
    const hi = Math.min(Math.trunc(center + support + 0.5), inSize);
    const n = hi - lo;
    const base = o * ksize;
    let total = 0;
    for (let k = 0; k < n; k++) {
      const w = filter.fn((k + lo - center + 0.5) * ss);
      weights[base + k] = w;
      total += w;
    }
    if (total !== 0) for (let k = 0; k < n; k++) weights[base + k] /= total;
    start[o] = lo;
    count[o] = n;
  }
  return { inSize, outSize, ksize, start, count, weights };
}

/**
 * Pillow's nearest neighbour (`ImagingScaleAffine`): output pixel `o` takes input `floor((o + 0.5) * in / out)`,
 * with the position accumulated step by step exactly as Pillow does, so ties land on the same pixel.
 */
function nearestTaps(inSize: number, outSize: number): AxisTaps {
  const step = inSize / outSize;
  const start = new Int32Array(outSize);
  const count = new Int32Array(outSize).fill(1);
  const weights = new Float64Array(outSize).fill(1);
  let position = step * 0.5;
  for (let o = 0; o < outSize; o++) {
    start[o] = Math.min(Math.max(Math.trunc(position), 0), inSize - 1);
    position += step;
  }
  return { inSize, outSize, ksize: 1, start, count, weights };
}

export function axisTaps(inSize: number, outSize: number, resample: Resample): AxisTaps {
  return resample === 'nearest' ? nearestTaps(inSize, outSize) : filterTaps(inSize, outSize, FILTERS[resample]);
}

/** Horizontal pass over HWC RGB rows: `height x inWidth` -> `height x outWidth`, float32 like Pillow's buffer. */
export function resizeRows(src: Float32Array, height: number, taps: AxisTaps): Float32Array {
  const { inSize, outSize, ksize, start, count, weights } = taps;
  const out = new Float32Array(height * outSize * 3);
  for (let y = 0; y < height; y++) {
    const rowIn = y * inSize * 3;
    let o3 = y * outSize * 3;
    for (let x = 0; x < outSize; x++, o3 += 3) {
      const n = count[x];
      const base = x * ksize;
      let p = rowIn + start[x] * 3;
      let r = 0;
      let g = 0;
      let b = 0;
      for (let k = 0; k < n; k++, p += 3) {
        const w = weights[base + k];
        r += src[p] * w;
        g += src[p + 1] * w;
        b += src[p + 2] * w;
      }
      out[o3] = r;
      out[o3 + 1] = g;
      out[o3 + 2] = b;
    }
  }
  return out;
}

/**
 * Vertical pass over HWC RGB (`inHeight x width` -> `outHeight x width`), writing normalised values straight into
 * the three CHW planes of `out` at `offset`: plane c gets `(v - mean[c]) / std[c]`.
 */
export function resizeColumnsToPlanes(
  src: Float32Array,
  width: number,
  taps: AxisTaps,
  out: Float32Array,
  offset: number,
  mean: readonly number[],
  std: readonly number[],
  acc: Float64Array,
): void {
  const { outSize, ksize, start, count, weights } = taps;
  const plane = outSize * width;
  const row3 = width * 3;
  const [m0, m1, m2] = mean;
  const [s0, s1, s2] = std;
  for (let y = 0; y < outSize; y++) {
    acc.fill(0, 0, row3);
    const n = count[y];
    const base = y * ksize;
    // Rows outer, pixels inner: the same per-pixel summation order as Pillow, with contiguous reads.
    for (let k = 0; k < n; k++) {
      const w = weights[base + k];
      const rowIn = (start[y] + k) * row3;
      for (let i = 0; i < row3; i++) acc[i] += src[rowIn + i] * w;
    }
    const o = offset + y * width;
    for (let x = 0, i = 0; x < width; x++, i += 3) {
      // Math.fround: Pillow stores the resampled value as float32 before anything else happens to it.
      out[o + x] = (Math.fround(acc[i]) - m0) / s0;
      out[o + plane + x] = (Math.fround(acc[i + 1]) - m1) / s1;
      out[o + 2 * plane + x] = (Math.fround(acc[i + 2]) - m2) / s2;
    }
  }
}

/** Copies HWC RGB into CHW planes with normalisation (no resampling). */
export function toPlanes(
  src: Float32Array,
  pixels: number,
  out: Float32Array,
  offset: number,
  mean: readonly number[],
  std: readonly number[],
): void {
  const [m0, m1, m2] = mean;
  const [s0, s1, s2] = std;
  for (let p = 0, i = 0; p < pixels; p++, i += 3) {
    out[offset + p] = (src[i] - m0) / s0;
    out[offset + pixels + p] = (src[i + 1] - m1) / s1;
    out[offset + 2 * pixels + p] = (src[i + 2] - m2) / s2;
  }
}
