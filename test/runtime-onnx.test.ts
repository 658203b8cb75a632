import { existsSync, readdirSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { Ajv } from 'ajv';
import onnxProto from 'onnx-proto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initStudentWeights, stageResolver, stageSlot } from '@transformaly/core';
import type { ProgressReporter, ProgressTask, Runtime, Tensor } from '@transformaly/core';
import runtimePlugin, { CUDA_INSTALL_COMMAND, OnnxRuntime, ortSessionOptions, plugin, resolveSessionSettings, runBatched } from '@transformaly/runtime-onnx';
import { registerChecks, runtimeChecks } from '@transformaly/testing';
import { expectClose } from './fixtures/close.js';

const { onnx } = onnxProto;

class RecordingProgress implements ProgressReporter {
  readonly infos: string[] = [];
  readonly warnings: string[] = [];
  task(): ProgressTask {
    return { tick() {}, done() {} };
  }
  info(message: string): void {
    this.infos.push(message);
  }
  warn(message: string): void {
    this.warnings.push(message);
  }
}

// y = relu(x W + b), z = 2 x: two outputs, so output selection is observable.
const W = Float32Array.from([0.5, -1, 2, 1.5, 0.25, -0.75]); // [2, 3]
const B = Float32Array.from([0.1, 0.2, -0.3]);

function reference(x: Float32Array, rows: number): { y: Float32Array; z: Float32Array } {
  const y = new Float32Array(rows * 3);
  for (let i = 0; i < rows; i++) {
    for (let j = 0; j < 3; j++) {
      const v = x[i * 2] * W[j] + x[i * 2 + 1] * W[3 + j] + B[j];
      y[i * 3 + j] = Math.max(0, v);
    }
  }
  return { y, z: x.map((v) => 2 * v) };
}

function valueInfo(name: string, width: number) {
  return {
    name,
    type: { tensorType: { elemType: onnx.TensorProto.DataType.FLOAT, shape: { dim: [{ dimParam: 'N' }, { dimValue: width }] } } },
  };
}

/** With `external`, W and B go to `weights.bin` (W at offset 0, B after it) instead of into the protobuf. */
function buildModel(external?: { location: string }): Uint8Array {
  const initializer = (name: string, dims: number[], values: Float32Array, offset: number) =>
    external
      ? {
          name,
          dims,
          dataType: onnx.TensorProto.DataType.FLOAT,
          dataLocation: onnx.TensorProto.DataLocation.EXTERNAL,
          externalData: [
            { key: 'location', value: external.location },
            { key: 'offset', value: String(offset) },
            { key: 'length', value: String(values.byteLength) },
          ],
        }
      : { name, dims, dataType: onnx.TensorProto.DataType.FLOAT, floatData: Array.from(values) };
  const two = { name: 'two', dims: [], dataType: onnx.TensorProto.DataType.FLOAT, floatData: [2] };
  const model = onnx.ModelProto.create({
    irVersion: 8,
    opsetImport: [{ domain: '', version: 17 }],
    producerName: 'transformaly-test',
    graph: {
      name: 'tiny',
      initializer: [initializer('W', [2, 3], W, 0), initializer('B', [3], B, W.byteLength), two],
      node: [
        { opType: 'MatMul', input: ['x', 'W'], output: ['xw'] },
        { opType: 'Add', input: ['xw', 'B'], output: ['pre'] },
        { opType: 'Relu', input: ['pre'], output: ['y'] },
        { opType: 'Mul', input: ['x', 'two'], output: ['z'] },
      ],
      input: [valueInfo('x', 2)],
      output: [valueInfo('y', 3), valueInfo('z', 2)],
    },
  });
  return onnx.ModelProto.encode(model).finish();
}

function input(rows: number): Tensor {
  const data = new Float32Array(rows * 2);
  for (let i = 0; i < data.length; i++) data[i] = Math.sin(i * 1.7) * 3;
  return { dims: [rows, 2], data };
}


/** The float32 values of `bytes`, each multiplied by `k`, as bytes again. */
function scaled(bytes: Uint8Array, k: number): Uint8Array {
  const values = new Float32Array(bytes.slice().buffer).map((v) => v * k);
  return new Uint8Array(values.buffer);
}

const threadCount = () => readdirSync('/proc/self/task').length;

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'transformaly-runtime-onnx-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('OnnxRuntime on the CPU', () => {
  it('runs a small graph and gives the right numbers, for all outputs or only the requested one', async () => {
    const runtime = new OnnxRuntime({ threads: 1 });
    expect(runtime).toMatchObject({ name: 'onnx', device: 'cpu', threads: 1, canTrain: true });
    const session = await runtime.createSession({ bytes: buildModel() });
    expect(session.inputNames).toEqual(['x']);
    expect(session.outputNames).toEqual(['y', 'z']);
    const x = input(5);
    const ref = reference(x.data, 5);

    const all = await session.run({ x });
    expect(Object.keys(all).sort()).toEqual(['y', 'z']);
    expect(all.y.dims).toEqual([5, 3]);
    expect(all.y.data).toBeInstanceOf(Float32Array);
    expectClose(all.y.data, ref.y, 1e-6, 'y');
    expectClose(all.z.data, ref.z, 1e-6, 'z');

    const onlyZ = await session.run({ x }, ['z']);
    expect(Object.keys(onlyZ)).toEqual(['z']);
    expectClose(onlyZ.z.data, ref.z, 1e-6, 'z');

    const restricted = await runtime.createSession({ bytes: buildModel() }, { outputs: ['y'] });
    expect(Object.keys(await restricted.run({ x }))).toEqual(['y']);

    await expect(session.run({ x }, ['nope'])).rejects.toThrow(/no output 'nope'/);
    await expect(session.run({})).rejects.toThrow(/missing feed for model input 'x'/);
    await expect(session.run({ x: { dims: [5, 3], data: x.data } })).rejects.toThrow(/10 values but dims \[5, 3\]/);
    await runtime.dispose();
    await expect(session.run({ x })).rejects.toThrow(/disposed/);
  });

  it('applies the thread options to the session (one pool worker per extra thread)', async () => {
    const model = { bytes: buildModel() };
    const warm = await new OnnxRuntime({ threads: 1 }).createSession(model); // starts onnxruntime's environment
    const before = threadCount();
    const one = await new OnnxRuntime({ threads: 1 }).createSession(model);
    expect(threadCount() - before).toBe(0);
    const four = await new OnnxRuntime({ threads: 4 }).createSession(model);
    expect(threadCount() - before).toBe(3);
    const inter = await new OnnxRuntime({ threads: 1, interOpThreads: 3 }).createSession(model);
    expect(threadCount() - before).toBe(3 + 2);
    const x = input(3);
    expectClose((await inter.run({ x })).y.data, reference(x.data, 3).y, 1e-6, 'y');
    for (const s of [warm, one, four, inter]) await s.dispose();
    expect(threadCount()).toBe(before);
  });

  it("trains students in sessions with the runtime's settings (one pool worker per extra thread, in each of a trainer's two sessions)", async () => {
    const spec = { width: 16, heads: 2, mlpDim: 32, layerNormEps: 1e-6, qkvBias: true, tokens: 5 };
    const adam = { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8 };
    const warm = await new OnnxRuntime({ threads: 1 }).createStudentTrainer(spec, initStudentWeights(spec, 1), adam);
    const before = threadCount();
    const three = await new OnnxRuntime({ threads: 3 }).createStudentTrainer(spec, initStudentWeights(spec, 1), adam);
    expect(threadCount() - before).toBe(2 * 2);
    const inter = await new OnnxRuntime({ threads: 1, interOpThreads: 2, spinning: false }).createStudentTrainer(spec, initStudentWeights(spec, 1), adam);
    expect(threadCount() - before).toBe(2 * 2 + 2 * 1);
    for (const t of [warm, three, inter]) await t.dispose();
    expect(threadCount()).toBe(before);
  });

  it('maps its settings to onnxruntime session options, with onnxruntime defaults where unset', async () => {
    expect(ortSessionOptions(resolveSessionSettings({ threads: 2 }))).toEqual({
      intraOpNumThreads: 2,
      interOpNumThreads: 1,
      executionMode: 'sequential',
      graphOptimizationLevel: 'all',
      enableCpuMemArena: true,
      executionProviders: ['cpu'],
    });
    const settings = { threads: 4, interOpThreads: 3, graphOptimizationLevel: 'basic', memoryArena: false, spinning: false, executionProviders: ['cuda', 'cpu'] } as const;
    expect(ortSessionOptions(resolveSessionSettings(settings))).toEqual({
      intraOpNumThreads: 4,
      interOpNumThreads: 3,
      executionMode: 'parallel',
      graphOptimizationLevel: 'basic',
      enableCpuMemArena: false,
      executionProviders: ['cuda', 'cpu'],
      extra: { session: { intra_op: { allow_spinning: '0' } } },
    });
    expect(await new OnnxRuntime({ threads: 2, memoryArena: false, spinning: false }).sessionSettings()).toEqual({
      threads: 2,
      interOpThreads: 1,
      executionProviders: ['cpu'],
      graphOptimizationLevel: 'all',
      memoryArena: false,
      spinning: false,
    });
    expect(() => resolveSessionSettings({ memoryArena: 'no' as never })).toThrow(/runtime-onnx: option memoryArena must be a boolean, got "no"/);
    expect(() => resolveSessionSettings({ executionProviders: [] })).toThrow(/option executionProviders must be a non-empty list/);
  });

  it('rejects bad options with the field name', () => {
    expect(() => new OnnxRuntime({ threads: 0 })).toThrow(/threads must be a positive integer/);
    expect(() => new OnnxRuntime({ graphOptimizationLevel: 'max' as never })).toThrow(/graphOptimizationLevel/);
    expect(() => new OnnxRuntime({ device: 'tpu' as never })).toThrow(/device must be/);
  });

  it('loads a model whose weights are external data in a side file, with identical results', async () => {
    const weightsDir = join(dir, 'external');
    await mkdir(weightsDir, { recursive: true });
    const side = new Uint8Array(W.byteLength + B.byteLength);
    side.set(new Uint8Array(W.buffer), 0);
    side.set(new Uint8Array(B.buffer), W.byteLength);
    await writeFile(join(weightsDir, 'weights.bin'), side);
    const bytes = buildModel({ location: 'weights.bin' });
    // The weights really are outside the protobuf.
    for (const init of onnx.ModelProto.decode(bytes).graph!.initializer!.slice(0, 2)) {
      expect(init.floatData ?? []).toHaveLength(0);
      expect(init.rawData?.length ?? 0).toBe(0);
    }

    const runtime = new OnnxRuntime({ threads: 1, graphOptimizationLevel: 'basic' });
    const x = input(7);
    const embedded = await (await runtime.createSession({ bytes: buildModel() })).run({ x });
    const external = await (await runtime.createSession({ bytes, externalDataDir: weightsDir })).run({ x });
    expect(Array.from(external.y.data)).toEqual(Array.from(embedded.y.data));
    expect(Array.from(external.z.data)).toEqual(Array.from(embedded.z.data));

    // A second session of the same graph reuses the written graph file instead of adding another.
    const filesAfterFirst = (await readdir(weightsDir)).sort();
    await runtime.createSession({ bytes, externalDataDir: weightsDir });
    expect((await readdir(weightsDir)).sort()).toEqual(filesAfterFirst);
    expect(filesAfterFirst.filter((f) => f.endsWith('.onnx'))).toHaveLength(1);

    // The numbers come from the side file: scaling the weights there changes the output of a new session.
    await writeFile(join(weightsDir, 'weights.bin'), scaled(side, 3));
    const tripled = await (await runtime.createSession({ bytes, externalDataDir: weightsDir })).run({ x }, ['y']);
    const expectedTripled = new Float32Array(7 * 3);
    for (let i = 0; i < 7; i++) {
      for (let j = 0; j < 3; j++) {
        expectedTripled[i * 3 + j] = Math.max(0, 3 * (x.data[i * 2] * W[j] + x.data[i * 2 + 1] * W[3 + j] + B[j]));
      }
    }
    expectClose(tripled.y.data, expectedTripled, 1e-6, 'y');

    // Without the side file the load fails with onnxruntime's reason, not silently.
    await rm(join(weightsDir, 'weights.bin'));
    await expect(runtime.createSession({ bytes, externalDataDir: weightsDir })).rejects.toThrow(/could not load the ONNX model/);
    await runtime.dispose();
  });

  it('runBatched splits along the first dimension and concatenates outputs', async () => {
    const runtime = new OnnxRuntime({ threads: 1 });
    const session = await runtime.createSession({ bytes: buildModel() });
    const x = input(11);
    const ref = reference(x.data, 11);
    for (const batch of [1, 4, 11, 32]) {
      const out = await runBatched(session, { x }, batch);
      expect(out.y.dims).toEqual([11, 3]);
      expect(out.z.dims).toEqual([11, 2]);
      expectClose(out.y.data, ref.y, 1e-6, 'y');
      expectClose(out.z.data, ref.z, 1e-6, 'z');
    }
    const onlyY = await runBatched(session, { x }, 3, ['y']);
    expect(Object.keys(onlyY)).toEqual(['y']);
    await expect(runBatched(session, { x }, 0)).rejects.toThrow(/batchSize must be a positive integer/);
    await runtime.dispose();
  });
});

describe('CUDA', () => {
  const require = createRequire(import.meta.url);
  const providerPath = join(
    dirname(require.resolve('onnxruntime-node')),
    '..',
    'bin',
    'napi-v6',
    process.platform,
    process.arch,
    'libonnxruntime_providers_cuda.so',
  );
  const providerInstalled = existsSync(providerPath);

  it('asking for CUDA without its provider fails with the reinstall command', async () => {
    if (providerInstalled) {
      // On a machine that has the provider, the same request must give a working CUDA runtime instead.
      const runtime = new OnnxRuntime({ device: 'cuda' });
      const session = await runtime.createSession({ bytes: buildModel() });
      expect(runtime.device).toBe('cuda');
      const x = input(4);
      expectClose((await session.run({ x })).y.data, reference(x.data, 4).y, 1e-6, 'y');
      await runtime.dispose();
      return;
    }
    let message = '';
    try {
      new OnnxRuntime({ device: 'cuda' });
    } catch (error) {
      message = (error as Error).message;
    }
    expect(message).toContain(CUDA_INSTALL_COMMAND);
    expect(CUDA_INSTALL_COMMAND).toBe('ONNXRUNTIME_NODE_INSTALL=cuda12 npm install onnxruntime-node');
    expect(message).toContain('allowCpuFallback');
  });

  it('with allowCpuFallback it runs on the CPU and reports the fallback', async () => {
    const progress = new RecordingProgress();
    const runtime = new OnnxRuntime({ device: 'cuda', allowCpuFallback: true, threads: 1, progress });
    const session = await runtime.createSession({ bytes: buildModel() });
    const x = input(4);
    expectClose((await session.run({ x })).y.data, reference(x.data, 4).y, 1e-6, 'y');
    if (providerInstalled) {
      expect(runtime.device).toBe('cuda');
      expect(progress.warnings).toEqual([]);
    } else {
      expect(runtime.device).toBe('cpu');
      expect(progress.warnings).toHaveLength(1);
      expect(progress.warnings[0]).toMatch(/CUDA requested but unavailable; running on the CPU/);
      expect(progress.warnings[0]).toContain(CUDA_INSTALL_COMMAND);
    }
    await runtime.dispose();
  });
});

describe('plugin', () => {
  it('makes one Runtime per pipeline from the options and the pipeline progress reporter', async () => {
    expect(runtimePlugin).toBe(plugin);
    expect(plugin.name).toBe('@transformaly/runtime-onnx');
    expect(plugin.aliases).toEqual(['onnx']);
    // The engine it runs on is recorded with results.
    expect(plugin.provenance).toEqual({ 'onnxruntime-node': createRequire(import.meta.url)('onnxruntime-node/package.json').version });
    const ajv = new Ajv({ allErrors: true });
    const validate = ajv.compile(plugin.stages.runtime.optionsSchema);
    expect(validate({ threads: 2, device: 'cuda', allowCpuFallback: true, graphOptimizationLevel: 'extended' })).toBe(true);
    expect(validate({ threads: 2, progress: {} })).toBe(false);
    expect(validate({ threads: 0 })).toBe(false);
    expect(validate({ graphOptimizationLevel: 'max' })).toBe(false);

    const progress = new RecordingProgress();
    const resolve = await stageResolver<Runtime>(plugin, stageSlot('runtime'), { threads: 1, device: 'cuda', allowCpuFallback: true }, { progress });
    const runtime = await resolve();
    expect(runtime).toBeInstanceOf(OnnxRuntime);
    expect(runtime.threads).toBe(1);
    const session = await runtime.createSession({ bytes: buildModel() });
    const x = input(2);
    expectClose((await session.run({ x })).z.data, reference(x.data, 2).z, 1e-6, 'z');
    if (runtime.device === 'cpu') expect(progress.warnings.join('\n')).toContain(CUDA_INSTALL_COMMAND);
    await runtime.dispose();
  });
});

// The Runtime contract (a graph computed as written, refusals of bad feeds, sessions released, float64 numerics),
// through the core's binding of the plugin.
describe('conformance', () => registerChecks(runtimeChecks({ plugin, options: { threads: 1 } }), it));
