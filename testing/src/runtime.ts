import { createNumericEngine, OnnxGraph, serializeOnnxModel, type OnnxModel, type Runtime } from '@transformaly/core';
import { check, contractName, expectRefusal, firstDifference, instances, runChecks, subjectName, type Check, type Subject, type SubjectOptions } from './checks.js';
import { gaussianRows } from './data.js';

/** Y = Relu(X W + b) with symbolic batch size: W [3, 2] and b [2] as initializers. */
async function affineReluModel(): Promise<OnnxModel> {
  const g = new OnnxGraph('conformance');
  g.input('X', 'float32', ['n', 3]);
  g.initializer('W', { dims: [3, 2], data: Float32Array.from([1, -1, 2, 0.5, -3, 0.25]) });
  g.initializer('b', { dims: [2], data: Float32Array.from([0.5, -0.5]) });
  g.op('MatMul', ['X', 'W'], {}, { output: 'XW' });
  g.op('Add', ['XW', 'b'], {}, { output: 'Z' });
  g.op('Relu', ['Z'], {}, { output: 'Y' });
  g.output('Y', 'float32', ['n', 2]);
  g.output('Z', 'float32', ['n', 2]);
  return serializeOnnxModel(g);
}

// X = [[1, 2, 3], [-1, 0, 1]]: Z = X W + b, by hand.
const X = Float32Array.from([1, 2, 3, -1, 0, 1]);
const Z = [1 + 4 - 9 + 0.5, -1 + 1 + 0.75 - 0.5, -1 + 0 - 3 + 0.5, 1 + 0 + 0.25 - 0.5];
const Y = Z.map((v) => Math.max(0, v));

/**
 * The Runtime contract as checks: runs an ONNX graph exactly (hand-computed values), reports its inputs and outputs,
 * computes the outputs asked for, refuses missing feeds, mismatched data and unknown outputs, is deterministic, and
 * releases sessions (each on its own, and all of them with the runtime). A runtime that offers numerics
 * (`createNumericSession`) computes float64 products to 1e-12.
 */
export function runtimeChecks(subject: Subject<'runtime'>, options: SubjectOptions = {}): Check[] {
  const make = instances('runtime', subject, options);
  let shared: Promise<Runtime> | undefined;
  const runtime = () => (shared ??= make());

  return [
    check('describes-itself', 'name, device, threads and canTrain describe the runtime', async (fail) => {
      const r = await runtime();
      if (typeof r.name !== 'string' || r.name === '') fail(`name is ${JSON.stringify(r.name)}`);
      if (!['cpu', 'cuda', 'gpu'].includes(r.device)) fail(`device is ${JSON.stringify(r.device)}`);
      if (!Number.isInteger(r.threads) || r.threads < 1) fail(`threads is ${r.threads}`);
      if (typeof r.canTrain !== 'boolean') fail(`canTrain is ${JSON.stringify(r.canTrain)}`);
      if (r.canTrain && typeof (r as { createStudentTrainer?: unknown }).createStudentTrainer !== 'function') fail('canTrain is true but createStudentTrainer is missing');
    }),
    check('runs-a-graph', 'a session computes a graph exactly as written (MatMul, Add, Relu on hand-checked values) and reports its inputs and outputs', async (fail) => {
      const session = await (await runtime()).createSession(await affineReluModel());
      try {
        if (JSON.stringify(session.inputNames) !== '["X"]') fail(`inputNames are ${JSON.stringify(session.inputNames)}`);
        if (JSON.stringify([...session.outputNames].sort()) !== '["Y","Z"]') fail(`outputNames are ${JSON.stringify(session.outputNames)}`);
        const out = await session.run({ X: { dims: [2, 3], data: X } });
        if (JSON.stringify(out.Y?.dims) !== '[2,2]') fail(`output Y has dims ${JSON.stringify(out.Y?.dims)}, expected [2, 2]`);
        const worst = Math.max(...Y.map((v, i) => Math.abs(out.Y.data[i] - v)), ...Z.map((v, i) => Math.abs(out.Z.data[i] - v)));
        if (!(worst <= 1e-6)) fail(`outputs differ from the hand-computed values by ${worst}`);
        const only = await session.run({ X: { dims: [2, 3], data: X } }, ['Z']);
        if (JSON.stringify(Object.keys(only)) !== '["Z"]') fail(`asking for Z alone returned ${JSON.stringify(Object.keys(only))}`);
      } finally {
        await session.dispose();
      }
    }),
    check('refuses-bad-feeds', 'run refuses a missing feed, data that does not match its dims, and an unknown output', async (fail) => {
      const session = await (await runtime()).createSession(await affineReluModel());
      try {
        await expectRefusal(() => session.run({}), fail, 'run without the feed X');
        await expectRefusal(() => session.run({ X: { dims: [2, 3], data: X.slice(1) } }), fail, 'run on 5 values for dims [2, 3]');
        await expectRefusal(() => session.run({ X: { dims: [2, 3], data: X } }, ['nope']), fail, 'run asking for an unknown output');
      } finally {
        await session.dispose();
      }
    }),
    check('deterministic', 'the same feeds give the same outputs', async (fail) => {
      const session = await (await runtime()).createSession(await affineReluModel());
      try {
        const a = await session.run({ X: { dims: [2, 3], data: X } });
        const b = await session.run({ X: { dims: [2, 3], data: X } });
        if (firstDifference(a.Z.data, b.Z.data) >= 0) fail('two runs on the same feeds differ');
      } finally {
        await session.dispose();
      }
    }),
    check('session-dispose', 'a disposed session refuses to run; dispose may be called again', async (fail) => {
      const session = await (await runtime()).createSession(await affineReluModel());
      await session.dispose();
      await session.dispose();
      await expectRefusal(() => session.run({ X: { dims: [2, 3], data: X } }), fail, 'run on a disposed session');
    }),
    check('numerics', 'a runtime that offers numerics (createNumericSession) computes float64 products to 1e-12', async (fail) => {
      const r = await runtime();
      if (typeof r.createNumericSession !== 'function') return;
      const engine = createNumericEngine(r as Runtime & Required<Pick<Runtime, 'createNumericSession'>>);
      try {
        const A = gaussianRows(9, 5, 7);
        const product = await engine.matmul(A, A, { transA: true });
        let worst = 0;
        for (let i = 0; i < 5; i++) {
          for (let j = 0; j < 5; j++) {
            let s = 0;
            for (let k = 0; k < 9; k++) s += A.data[k * 5 + i] * A.data[k * 5 + j];
            worst = Math.max(worst, Math.abs(product.data[i * 5 + j] - s) / Math.max(1, Math.abs(s)));
          }
        }
        if (!(worst <= 1e-12)) fail(`A^T A differs from the float64 sum by ${worst} (relative)`);
      } finally {
        await engine.dispose();
      }
    }),
    // Last: it releases the instance the other checks share.
    check('runtime-dispose', "dispose releases every session the runtime made; they refuse to run after it", async (fail) => {
      const r = await runtime();
      shared = undefined;
      const session = await r.createSession(await affineReluModel());
      await r.dispose();
      await expectRefusal(() => session.run({ X: { dims: [2, 3], data: X } }), fail, "run on a session after its runtime's dispose");
    }),
  ];
}

/** Runs `runtimeChecks`; throws a ConformanceError listing every broken rule. */
export function checkRuntime(subject: Subject<'runtime'>, options: SubjectOptions = {}): Promise<string[]> {
  return runChecks(runtimeChecks(subject, options), subjectName(subject), contractName('runtime'));
}
