import { timed } from '../profile.js';
import type { BackboneOutput, BlockSpec, BlockTap, DistillerFitContext, TapBatch, TapSource, Tensor } from '../types.js';

export type { BlockTap, TapBatch, TapSource };

/** The taps of `block` in a backbone output, checked against the students' shape. */
export function tapOf(output: BackboneOutput, block: number, spec: BlockSpec): BlockTap {
  const tap = output.taps.get(block);
  if (!tap) throw new Error(`distiller: the backbone output has no taps for block ${block} (forward must be called with taps: distiller.blocks)`);
  for (const [which, t] of [['input', tap.input], ['output', tap.output]] as const) {
    if (t.dims.length !== 3 || t.dims[1] !== spec.tokens || t.dims[2] !== spec.width) {
      throw new Error(`distiller: block ${block}'s tapped ${which} has shape [${t.dims}], expected [N, ${spec.tokens}, ${spec.width}]`);
    }
  }
  return tap;
}

/**
 * The teacher streamed: each batch of the fit context's pixels gets one backbone pass with taps at `blocks`, so hidden
 * states are never held for the whole data set. The signal is honoured before every pass.
 */
export function streamTeacherTaps(context: DistillerFitContext, blocks: readonly number[], spec: BlockSpec): TapSource {
  const { backbone, signal } = context;
  async function* tapsOf(batches: AsyncIterable<Tensor>): AsyncGenerator<TapBatch> {
    for await (const pixels of batches) {
      signal?.throwIfAborted();
      const output = await timed('teacher', () => backbone.forward(pixels, { taps: [...blocks] }));
      yield { images: pixels.dims[0], taps: new Map(blocks.map((block) => [block, tapOf(output, block, spec)])) };
    }
  }
  return {
    train: (epoch) => tapsOf(context.trainBatches(epoch)),
    validation: () => tapsOf(context.validationBatches()),
  };
}
