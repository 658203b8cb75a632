// Scoring with trained students (runtime-onnx's createStudentScorer): every student's discrepancy from one session
// must equal the student's own trainer (whose discrepancy test/training-onnx.test.ts ties to torch), also when a
// block's output is the next block's input (the same buffer fed twice).
import { afterAll, describe, expect, it } from 'vitest';
import { Rng, initStudentWeights, type BlockSpec, type Tensor } from '@transformaly/core';
import { OnnxRuntime } from '@transformaly/runtime-onnx';
import { buildStudentScoringGraph } from '../plugins/runtime-onnx/src/training/index.js';
import { expectClose } from './fixtures/close.js';

const spec: BlockSpec = { width: 32, heads: 4, mlpDim: 64, layerNormEps: 1e-6, qkvBias: true, tokens: 17 };
const adam = { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8 };
const runtime = new OnnxRuntime({ threads: 2 });
afterAll(() => runtime.dispose());

function hidden(n: number, seed: number): Tensor {
  const rng = new Rng(seed);
  return { dims: [n, spec.tokens, spec.width], data: Float32Array.from({ length: n * spec.tokens * spec.width }, () => rng.normal()) };
}

describe('student scorer', () => {
  it('gives every student the discrepancy its trainer gives, in one run', async () => {
    const students = [1, 2, 3].map((seed) => initStudentWeights(spec, seed));
    // Hidden states 0..3: block i reads hidden i and is compared with hidden i + 1.
    const states = [0, 1, 2, 3].map((i) => hidden(5, 40 + i));
    const taps = students.map((_, i) => ({ input: states[i], output: states[i + 1] }));
    const scorer = await runtime.createStudentScorer(spec, students);
    const features = await scorer.discrepancies(taps);
    expect([features.rows, features.cols]).toEqual([5, 3]);
    for (const [i, weights] of students.entries()) {
      const trainer = await runtime.createStudentTrainer(spec, weights, adam);
      const expected = await trainer.discrepancy(taps[i].input, taps[i].output);
      await trainer.dispose();
      const column = Array.from({ length: 5 }, (_, r) => features.data[r * 3 + i]);
      expectClose(column, expected, 1e-6, `student ${i}`);
    }
    await expect(scorer.discrepancies(taps.slice(1))).rejects.toThrow(/2 taps for 3 students/);
    await expect(scorer.discrepancies([taps[0], taps[1], { input: hidden(4, 1), output: hidden(4, 2) }])).rejects.toThrow(/4 images/);
    await scorer.dispose();
    await expect(scorer.discrepancies(taps)).rejects.toThrow(/after dispose/);
  });

  it('holds no constant that no node reads (onnxruntime warns about each on the console)', () => {
    const graph = buildStudentScoringGraph(spec, [initStudentWeights(spec, 1), initStudentWeights(spec, 2)]);
    const read = new Set(graph.nodes.flatMap((node) => node.inputs));
    expect(graph.initializers.filter(({ name }) => !read.has(name)).map(({ name }) => name)).toEqual([]);
    expect(graph.outputs.map((o) => o.name)).toEqual(['student0/per_token', 'student1/per_token']);
  });

  it('refuses weights of another shape, naming the tensor', async () => {
    const weights = initStudentWeights(spec, 1);
    weights['mlp.fc1.weight'] = { dims: [64, 31], data: new Float32Array(64 * 31) };
    await expect(runtime.createStudentScorer(spec, [weights])).rejects.toThrow(/mlp\.fc1\.weight/);
  });
});
