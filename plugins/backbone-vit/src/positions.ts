import type { Tensor } from '@transformaly/core';

/**
 * Resamples learned position embeddings [1, 1 + rows * cols, D] to another grid, as transformers'
 * `interpolate_pos_encoding` and timm's `resample_abs_pos_embed` do: the CLS position is kept, the patch grid is
 * interpolated bicubically (PyTorch's `interpolate(mode='bicubic', align_corners=False)`, a = -0.75, borders
 * clamped). Shrinking is done without antialiasing, like transformers.
 */
export function resamplePositions(pos: Tensor, from: [number, number], to: [number, number]): Tensor {
  const [fromRows, fromCols] = from;
  const [toRows, toCols] = to;
  const d = pos.dims[2];
  if (pos.dims.length !== 3 || pos.dims[0] !== 1 || pos.dims[1] !== 1 + fromRows * fromCols) {
    throw new Error(`position embeddings of shape [${pos.dims.join(', ')}] do not hold a CLS position and a ${fromRows}x${fromCols} grid`);
  }
  if (fromRows === toRows && fromCols === toCols) return pos;
  const rowTaps = cubicTaps(fromRows, toRows);
  const colTaps = cubicTaps(fromCols, toCols);
  const src = pos.data;
  // Columns first into [fromRows, toCols, D], then rows; double precision throughout.
  const mid = new Float64Array(fromRows * toCols * d);
  for (let r = 0; r < fromRows; r++) {
    for (let c = 0; c < toCols; c++) {
      const { index, weight } = colTaps[c];
      const out = (r * toCols + c) * d;
      for (let k = 0; k < 4; k++) {
        const base = d + (r * fromCols + index[k]) * d;
        const w = weight[k];
        for (let j = 0; j < d; j++) mid[out + j] += w * src[base + j];
      }
    }
  }
  const data = new Float32Array((1 + toRows * toCols) * d);
  data.set(src.subarray(0, d), 0);
  const acc = new Float64Array(d);
  for (let r = 0; r < toRows; r++) {
    const { index, weight } = rowTaps[r];
    for (let c = 0; c < toCols; c++) {
      acc.fill(0);
      for (let k = 0; k < 4; k++) {
        const base = (index[k] * toCols + c) * d;
        const w = weight[k];
        for (let j = 0; j < d; j++) acc[j] += w * mid[base + j];
      }
      data.set(acc, d + (r * toCols + c) * d);
    }
  }
  return { dims: [1, 1 + toRows * toCols, d], data };
}

function cubicTaps(inSize: number, outSize: number): Array<{ index: number[]; weight: number[] }> {
  const scale = inSize / outSize;
  const a = -0.75;
  const near = (x: number) => ((a + 2) * x - (a + 3)) * x * x + 1;
  const far = (x: number) => ((a * x - 5 * a) * x + 8 * a) * x - 4 * a;
  return Array.from({ length: outSize }, (_, o) => {
    const source = (o + 0.5) * scale - 0.5;
    const base = Math.floor(source);
    const t = source - base;
    const weight = [far(t + 1), near(t), near(1 - t), far(2 - t)];
    const index = [base - 1, base, base + 1, base + 2].map((i) => Math.min(Math.max(i, 0), inSize - 1));
    return { index, weight };
  });
}
