import type { BackboneGraphValues, OnnxExportContext } from '@transformaly/core';
import type { VitArch, VitWeights } from './arch.js';
import { buildVitGraph, FEATURES, hiddenName, PIXELS } from './graph.js';

/**
 * The backbone's part of an exported detector: the very graph the backbone runs (`buildVitGraph`), appended with its
 * pixels input bound to `pixels`; the features and the hidden states around each tapped block are its outputs.
 */
export function exportVitGraph(ctx: OnnxExportContext, arch: VitArch, weights: VitWeights, pixels: string, taps: readonly number[]): BackboneGraphValues {
  for (const i of taps) {
    if (!Number.isInteger(i) || i < 0 || i >= arch.depth) throw new Error(`tap ${i} is not a block index (0..${arch.depth - 1})`);
  }
  const values = ctx.append(buildVitGraph(arch, weights), { [PIXELS]: pixels });
  return {
    features: values[FEATURES],
    taps: new Map(taps.map((i) => [i, { input: values[hiddenName(i)], output: values[hiddenName(i + 1)] }])),
  };
}
