import { createRng, type Backbone, type Tensor } from '@transformaly/core';
import { check, contractName, expectRefusal, firstDifference, instances, runChecks, subjectName, type Check, type Subject, type SubjectOptions } from './checks.js';

export interface BackboneCheckOptions extends SubjectOptions {
  /** Relative tolerance of the batch-independence check (float32 kernels may block a batch differently); default 1e-4. */
  tolerance?: number;
}

/** Seeded preprocessed pixels, NCHW. */
function pixels(backbone: Backbone, n: number, seed: number): Tensor {
  const [h, w] = backbone.info.imageSize;
  const rng = createRng(seed);
  return { dims: [n, 3, h, w], data: Float32Array.from({ length: n * 3 * h * w }, () => rng.normal()) };
}

/**
 * The Backbone contract as checks: a consistent `info`, features [N, width] and taps [N, tokens, width] for the
 * requested blocks (each block's output the next block's input), images independent of their batch, deterministic,
 * wrong shapes refused, block weights in the timm layout, and a dispose that can be repeated.
 * One instance serves the whole suite (a backbone is built once per pipeline); the last check disposes it.
 */
export function backboneChecks(subject: Subject<'backbone'>, options: BackboneCheckOptions = {}): Check[] {
  const make = instances('backbone', subject, options);
  let shared: Promise<Backbone> | undefined;
  const backbone = () => (shared ??= make());
  const tolerance = options.tolerance ?? 1e-4;

  return [
    check('info', 'info describes the architecture consistently (image size, patches, tokens, width, heads, preprocessing)', async (fail) => {
      const { info } = await backbone();
      const positive = (v: unknown) => Number.isInteger(v) && (v as number) > 0;
      for (const key of ['patchSize', 'width', 'depth', 'heads', 'mlpDim', 'tokens'] as const) if (!positive(info[key])) fail(`info.${key} is ${info[key]}, not a positive integer`);
      const [h, w] = info.imageSize;
      if (!positive(h) || !positive(w) || h % info.patchSize !== 0 || w % info.patchSize !== 0) fail(`imageSize [${h}, ${w}] is not a multiple of patchSize ${info.patchSize}`);
      if (info.tokens !== (h / info.patchSize) * (w / info.patchSize) + 1) fail(`tokens is ${info.tokens}, expected ${(h / info.patchSize) * (w / info.patchSize) + 1} (patches + CLS)`);
      if (info.width % info.heads !== 0) fail(`width ${info.width} does not split into ${info.heads} heads`);
      if (info.preprocess.size[0] !== h || info.preprocess.size[1] !== w) fail(`preprocess.size [${info.preprocess.size}] differs from imageSize [${h}, ${w}]`);
      if (info.preprocess.std.length !== 3 || info.preprocess.std.some((s) => !(s > 0))) fail(`preprocess.std ${JSON.stringify(info.preprocess.std)} is not three positive numbers`);
      if (typeof info.id !== 'string' || typeof info.sha256 !== 'string' || typeof info.untrained !== 'boolean') fail('id, sha256 and untrained describe the weights');
    }),
    check('forward', 'forward gives finite features [N, width] and, for each requested block, its input and output [N, tokens, width]', async (fail) => {
      const b = await backbone();
      const { width, tokens, depth } = b.info;
      const taps = [...new Set([0, depth - 1])];
      const out = await b.forward(pixels(b, 2, 1), { taps });
      if (!out || !out.features || !(out.features.data instanceof Float32Array || out.features.data instanceof Float64Array)) fail('forward returned no features { rows, cols, data }');
      if (!(out.taps instanceof Map)) fail('forward returned no taps Map');
      if (out.features.rows !== 2 || out.features.cols !== width) fail(`features are ${out.features.rows} x ${out.features.cols}, expected 2 x ${width}`);
      if (out.features.data.some((v) => !Number.isFinite(v))) fail('features hold non-finite values');
      for (const t of taps) {
        const tap = out.taps.get(t);
        if (!tap) return fail(`no tap for block ${t}`);
        for (const [which, tensor] of Object.entries(tap)) {
          if (JSON.stringify(tensor.dims) !== JSON.stringify([2, tokens, width])) fail(`tap ${t} ${which} has dims [${tensor.dims}], expected [2, ${tokens}, ${width}]`);
        }
      }
    }),
    check('taps-chain', "each block's output is the next block's input", async (fail) => {
      const b = await backbone();
      if (b.info.depth < 2) return;
      const out = await b.forward(pixels(b, 1, 2), { taps: [0, 1] });
      if (firstDifference(out.taps.get(0)!.output.data, out.taps.get(1)!.input.data) >= 0) fail('the output of block 0 differs from the input of block 1');
    }),
    check('batch-independent', "an image's features do not depend on the other images of its batch", async (fail) => {
      const b = await backbone();
      const batch = pixels(b, 3, 3);
      const size = batch.data.length / 3;
      const alone = await b.forward({ dims: [1, ...batch.dims.slice(1)], data: batch.data.slice(size, 2 * size) });
      const together = await b.forward(batch);
      const w = b.info.width;
      let scale = 0;
      let worst = 0;
      for (let j = 0; j < w; j++) {
        scale = Math.max(scale, Math.abs(alone.features.data[j]));
        worst = Math.max(worst, Math.abs(alone.features.data[j] - together.features.data[w + j]));
      }
      if (worst > tolerance * scale) fail(`image 1 alone and in a batch of 3 differ by ${worst} (allowed ${tolerance * scale})`);
    }),
    check('deterministic', 'the same pixels give the same features', async (fail) => {
      const b = await backbone();
      const p = pixels(b, 2, 4);
      if (firstDifference((await b.forward(p)).features.data, (await b.forward(p)).features.data) >= 0) fail('two forward passes on the same pixels differ');
    }),
    check('refuses-wrong-input', 'forward refuses pixels of another shape, data that does not match the dims, and unknown taps', async (fail) => {
      const b = await backbone();
      const [h, w] = b.info.imageSize;
      const good = pixels(b, 1, 5);
      await expectRefusal(() => b.forward({ dims: [1, 1, h, w], data: good.data.slice(0, h * w) }), fail, 'one-channel pixels');
      await expectRefusal(() => b.forward({ dims: [1, 3, h + b.info.patchSize, w], data: new Float32Array(3 * (h + b.info.patchSize) * w) }), fail, 'pixels of another size');
      await expectRefusal(() => b.forward({ dims: good.dims, data: good.data.slice(1) }), fail, 'data shorter than the dims');
      await expectRefusal(() => b.forward(good, { taps: [b.info.depth] }), fail, `a tap of block ${b.info.depth} (the last is ${b.info.depth - 1})`);
    }),
    check('block-weights', 'blockWeights(i) gives the timm-named weights of block i, and refuses a block that does not exist', async (fail) => {
      const b = await backbone();
      const { width, mlpDim, depth } = b.info;
      const weights = b.blockWeights(depth - 1);
      const expected: Record<string, number[]> = {
        'norm1.weight': [width],
        'attn.qkv.weight': [3 * width, width],
        'attn.proj.weight': [width, width],
        'norm2.weight': [width],
        'mlp.fc1.weight': [mlpDim, width],
        'mlp.fc2.weight': [width, mlpDim],
      };
      for (const [name, dims] of Object.entries(expected)) {
        if (!weights[name]) fail(`no weight "${name}"`);
        if (JSON.stringify(weights[name].dims) !== JSON.stringify(dims)) fail(`"${name}" has dims [${weights[name].dims}], expected [${dims}]`);
      }
      await expectRefusal(() => b.blockWeights(depth), fail, `blockWeights(${depth})`);
    }),
    // Last: it releases the instance the other checks share.
    check('dispose', 'dispose releases the backbone and may be called again', async () => {
      const b = await backbone();
      shared = undefined;
      await b.dispose();
      await b.dispose();
    }),
  ];
}

/** Runs `backboneChecks`; throws a ConformanceError listing every broken rule. */
export async function checkBackbone(subject: Subject<'backbone'>, options: BackboneCheckOptions = {}): Promise<string[]> {
  const checks = backboneChecks(subject, options);
  return runChecks(checks, subjectName(subject), contractName('backbone'));
}
