// The onnxruntime StudentTrainer against torch (float64 golden files from scripts/golden/torch_training.py): a whole
// student block's loss and gradients, its discrepancy, Adam trajectories of torch.optim.Adam, checkpoint continuation
// and the failure modes the distiller relies on.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { afterAll, describe, expect, it } from 'vitest';
import { readSafetensors, serializeOnnxModel, writeSafetensors } from '@transformaly/core';
import type { AdamSettings, ArrayEntry, BlockSpec, StudentTrainer, Tensor } from '@transformaly/core';
import {
  adamUpdate,
  buildStudentForwardGraph,
  buildStudentTrainingGraph,
  createOnnxStudentTrainer,
  STUDENT_OPSET_IMPORTS,
  studentWeightShapes,
} from '../plugins/runtime-onnx/src/training/index.js';
import { expectClose } from './fixtures/close.js';

const DIR = join(import.meta.dirname, 'golden', 'training');
const OPTIONS = { threads: 2 };
const ADAM: AdamSettings = { lr: 1e-4, beta1: 0.9, beta2: 0.999, eps: 1e-8 };

interface Golden {
  meta: Record<string, string>;
  arrays: Record<string, ArrayEntry>;
  get(name: string): ArrayEntry;
  tensor(name: string): Tensor;
}

async function golden(file: string): Promise<Golden> {
  const { metadata, arrays } = await readSafetensors(join(DIR, file));
  const get = (name: string) => {
    const entry = arrays[name];
    if (entry === undefined) throw new Error(`${file}: no tensor "${name}"`);
    return entry;
  };
  return {
    meta: metadata,
    arrays,
    get,
    tensor: (name) => {
      const { dims, data } = get(name);
      return { dims: [...dims], data: Float32Array.from(data as Float64Array) };
    },
  };
}

function specOf(g: Golden): BlockSpec {
  return JSON.parse(g.meta.spec) as BlockSpec;
}

function weightsOf(g: Golden, spec: BlockSpec, prefix = 'weight/'): Record<string, Tensor> {
  const out: Record<string, Tensor> = {};
  for (const name of studentWeightShapes(spec).keys()) out[name] = g.tensor(`${prefix}${name}`);
  return out;
}

const trainers: StudentTrainer[] = [];
async function trainer(spec: BlockSpec, weights: Record<string, Tensor>, adam = ADAM, options = OPTIONS): Promise<StudentTrainer> {
  const t = await createOnnxStudentTrainer(options, spec, weights, adam);
  trainers.push(t);
  return t;
}
afterAll(async () => {
  await Promise.all(trainers.map((t) => t.dispose()));
});

for (const block of ['a', 'b']) {
  describe(`student block ${block}`, async () => {
    const g = await golden(`block_${block}.safetensors`);
    const spec = specOf(g);
    const input = g.tensor('input');
    const target = g.tensor('target');

    it(`has loss and weight gradients equal to torch autograd (qkvBias ${spec.qkvBias}, eps ${spec.layerNormEps})`, async () => {
      const t = await trainer(spec, weightsOf(g, spec));
      const { loss, gradients } = await t.lossAndGradients(input, target);
      expectClose([loss], g.get('loss').data, 1e-5, 'loss');
      expect(Object.keys(gradients).sort()).toEqual([...studentWeightShapes(spec).keys()].sort());
      for (const [name, grad] of Object.entries(gradients)) {
        expect(grad.dims, name).toEqual(g.get(`grad/${name}`).dims);
        expectClose(grad.data, g.get(`grad/${name}`).data, 1e-4, `grad ${name}`);
      }
      // lossAndGradients changes nothing.
      expect(await t.weights()).toEqual(weightsOf(g, spec));
    });

    it('has the input gradient and the forward output of torch', async () => {
      const session = async (graph: Parameters<typeof serializeOnnxModel>[0]) =>
        ort.InferenceSession.create((await serializeOnnxModel(graph, { opsetImports: { ...STUDENT_OPSET_IMPORTS } })).bytes, { graphOptimizationLevel: 'all', intraOpNumThreads: 2 });
      const feeds: Record<string, ort.Tensor> = {
        input: new ort.Tensor('float32', input.data, input.dims),
        target: new ort.Tensor('float32', target.data, target.dims),
      };
      for (const [name, w] of Object.entries(weightsOf(g, spec))) feeds[name] = new ort.Tensor('float32', w.data, w.dims);
      const training = buildStudentTrainingGraph(spec, { inputGradient: true });
      const trainSession = await session(training.graph);
      const out = await trainSession.run(feeds, [training.inputGradient!]);
      expect(out[training.inputGradient!].dims).toEqual(input.dims);
      expectClose(out[training.inputGradient!].data as Float32Array, g.get('grad/input').data, 1e-4, 'grad input');
      const forwardSession = await session(buildStudentForwardGraph(spec));
      const fwd = await forwardSession.run(feeds, ['output']);
      expectClose(fwd.output.data as Float32Array, g.get('output').data, 1e-5, 'output');
      await Promise.all([trainSession.release(), forwardSession.release()]);
    });

    it('computes the per-image discrepancy of torch', async () => {
      const t = await trainer(spec, weightsOf(g, spec));
      const d = await t.discrepancy(input, target);
      expect(d).toBeInstanceOf(Float64Array);
      expect(d.length).toBe(input.dims[0]);
      expectClose(d, g.get('discrepancy').data, 1e-5, 'discrepancy');
      // Equal images' discrepancies average to the loss.
      const { loss } = await t.lossAndGradients(input, target);
      expectClose([d.reduce((a, b) => a + b, 0) / d.length], [loss], 1e-5, 'mean discrepancy against the loss');
    });

    it("gives an image the same discrepancy, to the bit, wherever it sits in a batch (a service's batches mix requests)", async () => {
      const t = await trainer(spec, weightsOf(g, spec));
      const d = await t.discrepancy(input, target);
      const [n, ...rest] = input.dims;
      const size = input.data.length / n;
      const rows = (x: Tensor, order: number[]): Tensor => {
        const data = new Float32Array(order.length * size);
        order.forEach((i, k) => data.set(x.data.subarray(i * size, (i + 1) * size), k * size));
        return { dims: [order.length, ...rest], data };
      };
      const reversed = Array.from({ length: n }, (_, k) => n - 1 - k);
      expect(Array.from(await t.discrepancy(rows(input, reversed), rows(target, reversed)))).toEqual(reversed.map((i) => d[i]));
      for (let i = 0; i < n; i++) expect((await t.discrepancy(rows(input, [i]), rows(target, [i])))[0]).toBe(d[i]);
    });
  });
}

describe('Adam', () => {
  it('updates one tensor exactly as torch.optim.Adam (float32), zero and tiny gradients included', async () => {
    const g = await golden('adam_update.safetensors');
    const s = JSON.parse(g.meta.adam) as { lr: number; beta1: number; beta2: number; eps: number };
    const param = Float32Array.from(g.get('param').data as Float32Array);
    const m = new Float32Array(param.length);
    const v = new Float32Array(param.length);
    for (let i = 0; i < Number(g.meta.steps); i++) {
      adamUpdate(param, g.get(`grad${i}`).data as Float32Array, m, v, i + 1, s.lr, s.beta1, s.beta2, s.eps);
      const after = g.get(`after${i}`).data as Float32Array;
      // Against the parameters' scale, and element by element against the size of the step itself.
      expectClose(param, after, 1e-6, `step ${i + 1}`);
      const before = i === 0 ? (g.get('param').data as Float32Array) : (g.get(`after${i - 1}`).data as Float32Array);
      for (let j = 0; j < param.length; j++) {
        expect(Math.abs(param[j] - after[j]), `step ${i + 1} element ${j}`).toBeLessThanOrEqual(1e-4 * Math.abs(after[j] - before[j]) + 2e-7 * Math.abs(after[j]));
      }
    }
  });

  for (const block of ['a', 'b']) {
    it(`trains block ${block} along torch.optim.Adam's trajectory (two settings, batches of different sizes)`, async () => {
      const g = await golden(`adam_${block}.safetensors`);
      const spec = specOf(g);
      const settings = JSON.parse(g.meta.adam) as { runs: Array<{ lr: number; eps: number }>; beta1: number; beta2: number };
      const steps = Number(g.meta.steps);
      const d = spec.width;
      for (const [r, { lr, eps }] of settings.runs.entries()) {
        const t = await trainer(spec, weightsOf(g, spec), { lr, eps, beta1: settings.beta1, beta2: settings.beta2 });
        for (let i = 0; i < steps; i++) {
          const label = `lr ${lr} step ${i + 1}`;
          const loss = await t.step(g.tensor(`batch${i}/input`), g.tensor(`batch${i}/target`));
          expectClose([loss], g.get(`run${r}/loss${i}`).data, 1e-5, `${label} loss`);
          const weights = await t.weights();
          for (const name of studentWeightShapes(spec).keys()) {
            const ref = g.get(`run${r}/step${i + 1}/${name}`).data as Float64Array;
            const initial = g.get(`weight/${name}`).data as Float64Array;
            const ours = weights[name].data;
            // The weights, and (more sharply) how far they moved. Adam's update of an element whose gradient is
            // near float32 noise is ill-conditioned (it divides by sqrt(v) + eps), so the update is compared as a
            // whole (relative L2 error), which still shows any error in the update rule or its inputs.
            const compare = (from: number, to: number, what: string) => {
              expectClose(ours.subarray(from, to), ref.subarray(from, to), 1e-4, `${label} ${what}`);
              let diff = 0;
              let norm = 0;
              for (let j = from; j < to; j++) {
                diff += (ours[j] - ref[j]) ** 2;
                norm += (ref[j] - initial[j]) ** 2;
              }
              expect(Math.sqrt(diff / norm), `${label} ${what} update`).toBeLessThanOrEqual(1e-3);
            };
            if (name !== 'attn.qkv.bias') {
              compare(0, ours.length, name);
              continue;
            }
            // The key bias gets an exactly zero gradient (softmax ignores a per-row constant), so its Adam update
            // normalises float rounding noise and only Adam's bound (|update| <= lr per step, about) is reproducible.
            compare(0, d, 'query bias');
            compare(2 * d, 3 * d, 'value bias');
            for (let j = d; j < 2 * d; j++) expect(Math.abs(ours[j] - initial[j])).toBeLessThanOrEqual(1.01 * lr * (i + 1));
          }
        }
      }
    });
  }
});

describe('checkpoints and failure modes', async () => {
  const g = await golden('adam_a.safetensors');
  const spec = specOf(g);
  const batches = [0, 1, 2, 0, 1].map((i) => ({ input: g.tensor(`batch${i}/input`), target: g.tensor(`batch${i}/target`) }));
  const adam = { ...ADAM, lr: 1e-2 };
  let dir: string | undefined;
  afterAll(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('continues bit-identically from an exported state (through safetensors) as an uninterrupted run', async () => {
    const straight = await trainer(spec, weightsOf(g, spec), adam);
    const straightLosses: number[] = [];
    for (const b of batches) straightLosses.push(await straight.step(b.input, b.target));

    const first = await trainer(spec, weightsOf(g, spec), adam);
    const losses: number[] = [];
    for (const b of batches.slice(0, 2)) losses.push(await first.step(b.input, b.target));
    const state = await first.exportState();
    expect(state.meta.step).toBe(2);
    dir = await mkdtemp(join(tmpdir(), 'transformaly-trainer-'));
    await writeSafetensors(join(dir, 'state.safetensors'), state.arrays);
    const stored = await readSafetensors(join(dir, 'state.safetensors'));

    // A fresh trainer from other weights: everything that matters must come from the state.
    const other = weightsOf(g, spec);
    for (const w of Object.values(other)) w.data.fill(0.5);
    const resumed = await trainer(spec, other, adam);
    resumed.importState({ meta: state.meta, arrays: stored.arrays });
    for (const b of batches.slice(2)) losses.push(await resumed.step(b.input, b.target));

    expect(losses).toEqual(straightLosses);
    expect(await resumed.weights()).toEqual(await straight.weights());
    const a = await resumed.exportState();
    const b = await straight.exportState();
    expect(a.meta).toEqual(b.meta);
    expect(a.arrays).toEqual(b.arrays);
  });

  it('returns a non-finite loss for a batch with NaN and leaves the student untouched', async () => {
    const t = await trainer(spec, weightsOf(g, spec), adam);
    await t.step(batches[0].input, batches[0].target);
    const before = await t.exportState();
    const bad = { dims: [...batches[1].input.dims], data: Float32Array.from(batches[1].input.data) };
    bad.data[5] = Number.NaN;
    const loss = await t.step(bad, batches[1].target);
    expect(Number.isFinite(loss)).toBe(false);
    expect(await t.exportState()).toEqual(before);
    const d = await t.discrepancy(bad, batches[1].target);
    expect(Number.isNaN(d[0])).toBe(true);
    expect(Number.isFinite(d[1])).toBe(true);
  });

  it('serialises concurrent calls so that no update overlaps a run', async () => {
    const straight = await trainer(spec, weightsOf(g, spec), adam);
    for (const b of batches.slice(0, 3)) await straight.step(b.input, b.target);
    const concurrent = await trainer(spec, weightsOf(g, spec), adam);
    await Promise.all(batches.slice(0, 3).map((b) => concurrent.step(b.input, b.target)));
    expect(await concurrent.weights()).toEqual(await straight.weights());
  });

  it('rejects bad weights, batches, settings and states with messages naming them', async () => {
    const weights = weightsOf(g, spec);
    const { ['attn.proj.bias']: _dropped, ...missing } = weights;
    await expect(createOnnxStudentTrainer(OPTIONS, spec, missing, adam)).rejects.toThrow(/"attn.proj.bias" is missing/);
    await expect(
      createOnnxStudentTrainer(OPTIONS, spec, { ...weights, 'mlp.fc1.weight': { dims: [3, 3], data: new Float32Array(9) } }, adam),
    ).rejects.toThrow(/"mlp.fc1.weight" has dims \[3, 3\], expected \[64, 32\]/);
    await expect(createOnnxStudentTrainer(OPTIONS, { ...spec, qkvBias: false }, weights, adam)).rejects.toThrow(
      /unexpected initial weight "attn.qkv.bias" \(spec.qkvBias is false\)/,
    );
    await expect(createOnnxStudentTrainer(OPTIONS, { ...spec, heads: 5 }, weights, adam)).rejects.toThrow(/multiple of spec.heads/);
    await expect(createOnnxStudentTrainer(OPTIONS, spec, weights, { ...adam, beta2: 1 })).rejects.toThrow(/beta2 must be in \[0, 1\)/);
    await expect(createOnnxStudentTrainer({ threads: 0 }, spec, weights, adam)).rejects.toThrow(/threads must be a positive integer/);
    await expect(createOnnxStudentTrainer({ executionProviders: ['no-such-provider'] }, spec, weights, adam)).rejects.toThrow(
      /could not load the student graphs \(execution providers \["no-such-provider"\]\)/,
    );

    const t = await trainer(spec, weights, adam);
    const { input, target } = batches[0];
    await expect(t.step({ dims: [3, 16, 32], data: new Float32Array(3 * 16 * 32) }, target)).rejects.toThrow(
      /input has dims \[3, 16, 32\], expected \[N, 17, 32\]/,
    );
    await expect(t.discrepancy(input, { dims: [2, 17, 32], data: new Float32Array(2 * 17 * 32) })).rejects.toThrow(
      /input has 3 images but target has 2/,
    );
    const state = await t.exportState();
    expect(() => t.importState({ ...state, meta: { ...state.meta, spec: { ...(state.meta.spec as object), width: 64 } } })).toThrow(
      /meta.spec.width is 64 but this trainer's block has 32/,
    );
    const { ['exp_avg_sq/norm2.bias']: _gone, ...partial } = state.arrays;
    expect(() => t.importState({ ...state, arrays: partial })).toThrow(/array "exp_avg_sq\/norm2.bias" is missing/);
    expect(() => t.importState({ ...state, meta: { ...state.meta, step: -1 } })).toThrow(/meta.step must be a non-negative integer/);
    // A rejected state changed nothing.
    expect(await t.exportState()).toEqual(state);

    await t.dispose();
    await expect(t.step(input, target)).rejects.toThrow(/after dispose/);
  });
});
