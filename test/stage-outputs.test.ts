// The core checks what every stage returns (one finite value per image, features of the declared width) and names the
// stage and its plugin when a plugin breaks the contract, instead of computing a threshold from the wrong numbers.
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ContainerModule } from 'inversify';
import { afterEach, describe, expect, it } from 'vitest';
import {
  createPipeline,
  heldOutSplit,
  SilentProgress,
  TOKENS,
  type BackboneOutput,
  type DensityScorer,
  type Distiller,
  type FeatureCombiner,
  type Matrix,
  type Pipeline,
  type StageState,
  type TransformalyConfig,
  type TransformalyPlugin,
} from '@transformaly/core';

const repo = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const tinyVit = { random: { seed: 3, arch: { imageSize: [28, 28], patchSize: 7, width: 32, depth: 2, heads: 2, mlpDim: 64, layerNormEps: 1e-6, qkvBias: true } } };

/** A scorer whose scores are minus the row sums, passed through `tamper` before they are returned. */
class TamperingScorer implements DensityScorer {
  readonly name = 'tampering';
  constructor(private readonly tamper: (scores: Float64Array) => unknown) {}
  fit(): void {}
  scoreSamples(Y: Matrix): Float64Array {
    const scores = new Float64Array(Y.rows);
    for (let i = 0; i < Y.rows; i++) for (let j = 0; j < Y.cols; j++) scores[i] -= Y.data[i * Y.cols + j];
    return this.tamper(scores) as Float64Array;
  }
  exportState(): StageState {
    return { meta: {}, arrays: {} };
  }
  importState(): void {}
}

const scorerPlugin = (name: string, tamper: (scores: Float64Array) => unknown): TransformalyPlugin => ({
  name,
  version: '1.0.0',
  register: () =>
    new ContainerModule(({ bind }) => {
      bind<DensityScorer>(TOKENS.DensityScorer).toDynamicValue(() => new TamperingScorer(tamper)).inTransientScope();
    }),
});

const pipelines: Pipeline[] = [];
afterEach(async () => {
  await Promise.all(pipelines.splice(0).map((p) => p.dispose()));
});

/** 10 normal training images of the demo (9 fitted, 1 held out) through a tiny random ViT. */
async function pipelineWith(stages: Partial<TransformalyConfig>, plugins: Record<string, TransformalyPlugin>): Promise<Pipeline> {
  const pipeline = await createPipeline(
    {
      data: { use: 'idx', options: { dir: './demo/fashion-mnist', classNames: 'fashion-mnist' } },
      protocol: { mode: 'unimodal', classes: ['Trouser'], limit: { train: 10, testPerClass: 1 } },
      backbone: { use: 'vit', options: tinyVit },
      runtime: { use: 'onnx', options: { threads: 1 } },
      distiller: false,
      ...stages,
    },
    { baseDir: repo, plugins, progress: new SilentProgress() },
  );
  pipelines.push(pipeline);
  return pipeline;
}

async function fitWithScorer(tamper: (scores: Float64Array) => unknown): Promise<void> {
  const pipeline = await pipelineWith({ scorers: { pretrained: 'bad-scorer' } }, { 'bad-scorer': scorerPlugin('bad-scorer', tamper) });
  const [trouser] = await pipeline.cases();
  await (await pipeline.createDetector()).fit(trouser.train);
}

describe('stage outputs are checked, naming the stage and the plugin', () => {
  it('a scorer returning one score too many or too few', async () => {
    const oneMore = (s: Float64Array) => Float64Array.from([...s, 0]);
    await expect(fitWithScorer(oneMore)).rejects.toThrow('scorers.pretrained plugin "bad-scorer" returned 10 scores for 9 images');
    await expect(fitWithScorer((s) => s.subarray(1))).rejects.toThrow('scorers.pretrained plugin "bad-scorer" returned 8 scores for 9 images');
  });

  it('a scorer returning 4 scores for the 1 held-out image (the threshold would come from 4 values)', async () => {
    await expect(fitWithScorer((s) => (s.length === 1 ? Float64Array.of(1, 2, 3, 4) : s))).rejects.toThrow(
      'scorers.pretrained plugin "bad-scorer" returned 4 scores for 1 image',
    );
  });

  it('a scorer returning the wrong type, or NaN, naming the image', async () => {
    await expect(fitWithScorer((s) => Float32Array.from(s))).rejects.toThrow(
      'scorers.pretrained plugin "bad-scorer": scoreSamples returned Float32Array; expected a Float64Array of 9 scores',
    );
    await expect(fitWithScorer((s) => Array.from(s))).rejects.toThrow('scoreSamples returned Array; expected a Float64Array of 9 scores');
    const pipeline = await pipelineWith({}, {});
    const [trouser] = await pipeline.cases();
    const third = heldOutSplit(trouser.train, 0.1, 0).fit[2];
    await expect(
      fitWithScorer((s) => {
        if (s.length === 9) s[2] = NaN;
        return s;
      }),
    ).rejects.toThrow(`scorers.pretrained plugin "bad-scorer" returned the score NaN for image ${third.id}`);
  });

  it('a combiner returning one score too many', async () => {
    const combiner: FeatureCombiner = {
      name: 'long',
      fit() {},
      combine: (scores) => Float64Array.from([...scores.pretrained, 1]),
      exportState: () => ({ meta: {}, arrays: {} }),
      importState() {},
    };
    const plugin: TransformalyPlugin = {
      name: 'long-combiner',
      version: '1.0.0',
      register: () => new ContainerModule(({ bind }) => void bind<FeatureCombiner>(TOKENS.FeatureCombiner).toConstantValue(combiner)),
    };
    const pipeline = await pipelineWith({ combiner: 'long-combiner' }, { 'long-combiner': plugin });
    const [trouser] = await pipeline.cases();
    await expect((await pipeline.createDetector()).fit(trouser.train)).rejects.toThrow('combiner plugin "long-combiner" returned 2 scores for 1 image');
  });

  it('a distiller whose features are not one column per block', async () => {
    const distiller: Distiller = {
      name: 'wide',
      blocks: [1],
      async fit() {},
      // Two columns for its one block.
      features: async (output: BackboneOutput) => {
        const rows = output.features.rows;
        return { rows, cols: 2, data: new Float64Array(rows * 2) };
      },
      exportState: () => ({ meta: {}, arrays: {} }),
      importState() {},
    };
    const plugin: TransformalyPlugin = {
      name: 'wide-distiller',
      version: '1.0.0',
      register: () => new ContainerModule(({ bind }) => void bind<Distiller>(TOKENS.Distiller).toConstantValue(distiller)),
    };
    const pipeline = await pipelineWith({ distiller: 'wide-distiller', batchSize: 16 }, { 'wide-distiller': plugin });
    const [trouser] = await pipeline.cases();
    await expect((await pipeline.createDetector()).fit(trouser.train)).rejects.toThrow(
      'distiller plugin "wide-distiller" returned features of shape [9, 2] (18 values) for 9 images; expected [9, 1]',
    );
  });
});
