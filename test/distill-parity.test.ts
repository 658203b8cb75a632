// End-to-end parity of the fine-tuned feature space with a PyTorch implementation of the same method
// (scripts/golden/torch_transformaly.py, Debian's torch 1.13 and scikit-learn 1.2.1): the project runs through its
// composition root on the same Fashion-MNIST subset, teacher and initial students, and must reproduce the script's
// held-out split, batch order, per-epoch training losses (1e-5 relative) and AUROCs (2e-5), in both protocols.
import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ContainerModule } from 'inversify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  IdxSource,
  TOKENS,
  TransformalyDistiller,
  createPipeline,
  epochOrder,
  heldOutSplit,
  runProtocol,
  type ImageItem,
  type ImageSource,
  type ProgressReporter,
  type Split,
  type TransformalyConfig,
  type TransformalyPlugin,
} from '@transformaly/core';
import { expectClose } from './fixtures/close.js';

const GOLDEN = join(import.meta.dirname, 'golden', 'distill');
const FASHION_MNIST = '/usr/share/datasets/fashion-mnist';

interface GoldenCase {
  heldOut: number[];
  epochOrders: number[][];
  trainLoss: number[][];
  heldOutLoss: number[][];
  bestEpochs: number[];
  auroc: { pretrained: number; finetuned: number; combined: number };
}

const golden = JSON.parse(readFileSync(join(GOLDEN, 'expected.json'), 'utf8')) as {
  classes: string[];
  trainIndices: number[];
  testIndices: number[];
  blocks: number[];
  epochs: number;
  batchSize: number;
  seed: number;
  validationFraction: number;
  adam: { lr: number; betas: [number, number]; eps: number };
  cases: Record<string, GoldenCase>;
};

const trainId = (i: number) => `train-images-idx3-ubyte.gz#${i}`;
const testId = (i: number) => `t10k-images-idx3-ubyte.gz#${i}`;

/** The golden subset of Fashion-MNIST, read by the real IDX source; every image load is logged in order. */
class SubsetSource implements ImageSource {
  readonly name = 'fashion-mnist-subset';
  readonly loads: string[] = [];
  private readonly idx = new IdxSource({ dir: FASHION_MNIST, classNames: 'fashion-mnist' });
  private readonly keep: Record<Split, Set<string>> = {
    train: new Set(golden.trainIndices.map(trainId)),
    test: new Set(golden.testIndices.map(testId)),
  };

  async classes(): Promise<string[]> {
    return [...golden.classes];
  }

  async items(split: Split): Promise<ImageItem[]> {
    return (await this.idx.items(split))
      .filter((item) => this.keep[split].has(item.id))
      .map((item) => ({ id: item.id, label: item.label, load: () => (this.loads.push(item.id), item.load()) }));
  }
}

const source = new SubsetSource();
// The advanced form: a ContainerModule of its own, given in code.
const sourcePlugin: TransformalyPlugin = {
  name: 'fashion-mnist-subset',
  version: '1.0.0',
  register: () =>
    new ContainerModule(({ bind }) => {
      bind<ImageSource>(TOKENS.ImageSource).toConstantValue(source);
    }),
};

const quiet: ProgressReporter = { task: () => ({ tick() {}, done() {} }), info() {}, warn() {} };

function config(mode: 'unimodal' | 'multimodal'): TransformalyConfig {
  return {
    data: { use: 'fashion-mnist-subset' },
    protocol: { mode },
    backbone: { use: 'vit', options: { checkpoint: join(GOLDEN, 'teacher') } },
    runtime: { use: 'onnx', options: { threads: 2 } },
    distiller: {
      use: 'transformaly',
      options: {
        blocks: { from: golden.blocks[0], to: golden.blocks[golden.blocks.length - 1] + 1 },
        epochs: golden.epochs,
        lr: golden.adam.lr,
        betas: golden.adam.betas,
        eps: golden.adam.eps,
        initialWeights: join(GOLDEN, 'students_init.safetensors'),
      },
    },
    // The defaults are the paper's: PCA-whitened (90%) Gaussian for the pre-trained space, Gaussian for the
    // fine-tuned one, summed.
    batchSize: golden.batchSize,
    seed: golden.seed,
    validationFraction: golden.validationFraction,
  };
}

const caseFolder = (caseId: string) => caseId.replace(/[^A-Za-z0-9._-]+/g, '_');

let work: string;
beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'distill-parity-'));
});
afterAll(async () => {
  if (work) await rm(work, { recursive: true, force: true });
});

describe.each(['unimodal', 'multimodal'] as const)('parity with PyTorch, %s protocol', (mode) => {
  it('reproduces the split, the batch order, the per-epoch losses and the AUROCs', async () => {
    const pipeline = await createPipeline(config(mode), {
      progress: quiet,
      plugins: { 'fashion-mnist-subset': sourcePlugin },
    });
    try {
      const cases = await pipeline.cases();
      expect(cases.map((c) => c.id)).toEqual(golden.classes.map((name) => `${mode}/${name}`));

      // The project's own split and epoch orders must be the ones the script used.
      for (const c of cases) {
        const g = golden.cases[c.id];
        const { fit, heldOut } = heldOutSplit(c.train, golden.validationFraction, golden.seed);
        expect(heldOut.map((i) => i.id), `${c.id} held out`).toEqual(g.heldOut.map(trainId));
        for (let epoch = 0; epoch < golden.epochs; epoch++) {
          expect(epochOrder(fit, golden.seed, epoch).map((i) => i.id), `${c.id} epoch ${epoch + 1}`).toEqual(g.epochOrders[epoch].map(trainId));
        }
      }

      source.loads.length = 0;
      const runDir = join(work, mode);
      const results = await runProtocol(pipeline, { runDir });

      // Image loads, case by case: the first epoch's training order, then the held-out images (best-epoch choice),
      // then the test images. The teacher runs once per image: later epochs, held-out evaluations and the features
      // of the fit and held-out images read its recorded outputs.
      let at = 0;
      const expectLoads = (ids: string[], what: string) => {
        expect(source.loads.slice(at, at + ids.length), what).toEqual(ids);
        at += ids.length;
      };
      for (const c of cases) {
        const g = golden.cases[c.id];
        const heldOut = g.heldOut.map(trainId);
        expectLoads(g.epochOrders[0].map(trainId), `${c.id} epoch 1 order`);
        expectLoads(heldOut, `${c.id} epoch 1 held-out`);
        expectLoads(c.test.map((t) => t.item.id), `${c.id} test`);
      }
      expect(at).toBe(source.loads.length);

      for (const c of cases) {
        const g = golden.cases[c.id];
        const result = results.cases.find((r) => r.caseId === c.id)!;
        const detector = await pipeline.loadDetector(join(runDir, 'cases', caseFolder(c.id), 'detector'));
        const distiller = detector.parts.distiller as TransformalyDistiller;
        expect(distiller.blocks).toEqual(golden.blocks);
        const history = distiller.history!;
        // Measured: within 5e-7 of torch's (float32 sums in another order); 1e-5 leaves room for other CPUs' kernels.
        for (let epoch = 0; epoch < golden.epochs; epoch++) {
          expectClose(history.train[epoch], g.trainLoss[epoch], 1e-5, `${c.id} epoch ${epoch + 1} training losses (blocks ${golden.blocks})`);
          expectClose(history.validation[epoch] as number[], g.heldOutLoss[epoch], 1e-5, `${c.id} epoch ${epoch + 1} held-out losses`);
        }
        expect(distiller.bestEpochs, `${c.id} best epochs`).toEqual(g.bestEpochs);
        // Measured: equal to 1e-15, but for one pair of test images (of 300 x 600) that the fine-tuned space of
        // unimodal/T-shirt orders the other way (a near tie), 5.6e-6. 2e-5 admits two such pairs.
        const spaces = ['pretrained', 'finetuned', 'combined'] as const;
        expectClose(spaces.map((space) => result.metrics[space].auroc), spaces.map((space) => g.auroc[space]), 2e-5, `${c.id} AUROC (${spaces})`);
      }
    } finally {
      await pipeline.dispose();
    }
  });
});
