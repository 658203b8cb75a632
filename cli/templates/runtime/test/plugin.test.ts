// The conformance kit checks every rule of the Runtime contract: a graph computed exactly as written (values worked
// out by hand), its inputs and outputs reported, bad feeds refused, runs repeatable, sessions released.
import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { OnnxGraph, serializeOnnxModel } from '@transformaly/core';
import { disposeKit, registerChecks, runtimeChecks } from '@transformaly/testing';
import plugin, { ProvidersRuntime } from '../src/index.js';

registerChecks(runtimeChecks({ plugin, options: { executionProviders: ['cpu'], threads: 1 } }), test, 'conformance: ');
after(() => disposeKit());

test('runs a graph of its own: y = 2x + 1', async () => {
  const graph = new OnnxGraph('affine');
  graph.input('x', 'float32', ['n']);
  graph.op('Add', [graph.op('Mul', ['x', graph.scalar(2)]), graph.scalar(1)], {}, { output: 'y' });
  graph.output('y', 'float32', ['n']);
  const runtime = new ProvidersRuntime();
  try {
    const session = await runtime.createSession(await serializeOnnxModel(graph));
    const { y } = await session.run({ x: { dims: [3], data: Float32Array.of(0, 1, -2) } });
    assert.deepEqual([...y.data], [1, 3, -3]);
  } finally {
    await runtime.dispose();
  }
});

test('names an execution provider onnxruntime does not have', async () => {
  const runtime = new ProvidersRuntime({ executionProviders: ['no-such-provider'] });
  const graph = new OnnxGraph('identity');
  graph.input('x', 'float32', [1]);
  graph.op('Identity', ['x'], {}, { output: 'y' });
  graph.output('y', 'float32', [1]);
  await assert.rejects(runtime.createSession(await serializeOnnxModel(graph)), /providers-runtime: could not load the ONNX model: .*no-such-provider/);
});
