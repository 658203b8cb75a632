#!/usr/bin/env node
// One ViT-B block (768 wide, 12 heads, MLP 3072) training step on 32 x 197 tokens (forward, MSE, backward, Adam):
// the onnxruntime StudentTrainer against torch autograd + torch.optim.Adam (bench/training_step_torch.py) in the same
// run, with the same thread count on both sides. The two engines' steps alternate (torch waits in its own process for
// each `step` command), so both see the same background load. Issue 4's target: no slower than torch.
//
//   npx tsc -b && node bench/training-step.mjs [--threads 2] [--steps 5] [--warmup 2] [--batch 32] [--no-torch]
//       [--no-arena]      (onnxruntime's CPU memory arena off: about 10% slower, less memory; the trainer's default is on)
//       [--profile DIR]   (writes onnxruntime's per-node profile of the training session's runs to DIR)
//
// Prints a table and, last, one JSON line with every number. The torch side runs Debian's /usr/bin/python3 (torch
// 1.13) with OPENBLAS_CORETYPE=SkylakeX (set for that process only); set TORCH_PYTHON to use another interpreter.
import { spawn } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';

const here = dirname(fileURLToPath(import.meta.url));
const { values: args } = parseArgs({
  options: {
    threads: { type: 'string', default: '2' },
    steps: { type: 'string', default: '5' },
    warmup: { type: 'string', default: '2' },
    batch: { type: 'string', default: '32' },
    'no-torch': { type: 'boolean', default: false },
    arena: { type: 'boolean', default: true },
    profile: { type: 'string' },
  },
});
function integerArg(name, min) {
  const value = Number(args[name]);
  if (!Number.isInteger(value) || value < min) {
    console.error(`bench/training-step: --${name} must be an integer >= ${min}, got ${args[name]}`);
    process.exit(2);
  }
  return value;
}
const threads = integerArg('threads', 1);
const steps = integerArg('steps', 1);
const warmup = integerArg('warmup', 0);
const batch = integerArg('batch', 1);
const spec = { width: 768, heads: 12, mlpDim: 3072, layerNormEps: 1e-6, qkvBias: true, tokens: 197 };

let training;
try {
  training = await import(join(here, '..', 'plugins', 'runtime-onnx', 'dist', 'training', 'index.js'));
} catch (error) {
  console.error(`bench/training-step: build the packages first (npx tsc -b): ${error.message}`);
  process.exit(1);
}

/** A seeded generator of uniform floats in [-1, 1) (mulberry32), so every run trains the same problem. */
function uniform(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 31 - 1;
  };
}

function randomWeights(rand) {
  const weights = {};
  for (const [name, dims] of training.studentWeightShapes(spec)) {
    const n = dims.reduce((a, b) => a * b, 1);
    const data = new Float32Array(n);
    if (name.startsWith('norm')) data.fill(name.endsWith('weight') ? 1 : 0);
    else if (dims.length === 2) {
      const bound = Math.sqrt(6 / (dims[0] + dims[1]));
      for (let i = 0; i < n; i++) data[i] = bound * rand();
    } else for (let i = 0; i < n; i++) data[i] = 1e-6 * rand();
    weights[name] = { dims, data };
  }
  return weights;
}

function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

function timed(fn) {
  return async () => {
    const start = process.hrtime.bigint();
    const cpu = process.cpuUsage();
    const loss = await fn();
    const used = process.cpuUsage(cpu);
    return { seconds: Number(process.hrtime.bigint() - start) / 1e9, cpuSeconds: (used.user + used.system) / 1e6, loss };
  };
}

async function createOurs() {
  const rand = uniform(1);
  const dims = [batch, spec.tokens, spec.width];
  const count = batch * spec.tokens * spec.width;
  const input = { dims, data: Float32Array.from({ length: count }, rand) };
  const target = { dims, data: Float32Array.from({ length: count }, rand) };
  const trainer = await training.createOnnxStudentTrainer({ threads, memoryArena: args.arena }, spec, randomWeights(rand), {
    lr: 1e-4,
    beta1: 0.9,
    beta2: 0.999,
    eps: 1e-8,
  });
  return { step: timed(() => trainer.step(input, target)), close: () => trainer.dispose() };
}

/** The torch process in --serve mode, or `{ error }` when it cannot start. */
async function createTorch() {
  const python = process.env.TORCH_PYTHON ?? '/usr/bin/python3';
  const script = join(here, 'training_step_torch.py');
  const child = spawn(python, [script, '--serve', '--threads', String(threads), '--batch', String(batch)], {
    env: { ...process.env, OPENBLAS_CORETYPE: 'SkylakeX' },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (chunk) => (stderr += chunk));
  const failed = new Promise((resolve) => child.on('error', (error) => resolve({ error })));
  const lines = createInterface({ input: child.stdout })[Symbol.asyncIterator]();
  const next = async () => {
    const line = await Promise.race([lines.next(), failed]);
    if (line.error || line.done) throw new Error(`${python} ${script}: ${line.error?.message ?? 'exited'} ${stderr.trim().slice(-500)}`);
    return line.value;
  };
  try {
    if ((await next()) !== 'ready') throw new Error(`${python} ${script} did not start`);
  } catch (error) {
    child.kill();
    return { error: error.message };
  }
  return {
    step: async () => {
      child.stdin.write('step\n');
      return JSON.parse(await next());
    },
    close: async () => {
      child.stdin.write('quit\n');
      const info = JSON.parse(await next());
      child.stdin.end();
      return info;
    },
  };
}

async function profile(dir) {
  // A session of the training graph alone, with onnxruntime's per-node profiler (prefix: DIR/training-step) and the
  // optimised graph written beside it, to see which nodes the time goes to after onnxruntime's fusions.
  const ort = await import('onnxruntime-node');
  const { serializeOnnxModel } = await import(join(here, '..', 'core', 'dist', 'index.js'));
  const { graph } = training.buildStudentTrainingGraph(spec);
  const model = await serializeOnnxModel(graph, { opsetImports: { ...training.STUDENT_OPSET_IMPORTS } });
  mkdirSync(dir, { recursive: true });
  // The trainer's own session options (runtime-onnx's session factory), plus the profiler.
  const { ortSessionOptions, resolveSessionSettings } = await import(join(here, '..', 'plugins', 'runtime-onnx', 'dist', 'sessions.js'));
  const session = await ort.InferenceSession.create(model.bytes, {
    ...ortSessionOptions(resolveSessionSettings({ threads, memoryArena: args.arena })),
    enableProfiling: true,
    profileFilePrefix: join(dir, 'training-step'),
    optimizedModelFilePath: join(dir, 'training-step.optimized.onnx'),
  });
  const rand = uniform(2);
  const dims = [batch, spec.tokens, spec.width];
  const count = batch * spec.tokens * spec.width;
  const feeds = {
    input: new ort.Tensor('float32', Float32Array.from({ length: count }, rand), dims),
    target: new ort.Tensor('float32', Float32Array.from({ length: count }, rand), dims),
  };
  for (const [name, w] of Object.entries(randomWeights(rand))) feeds[name] = new ort.Tensor('float32', w.data, w.dims);
  for (let i = 0; i < 3; i++) await session.run(feeds);
  session.endProfiling();
  await session.release();
  // onnxruntime names the file <prefix>_<date and time>.json; take the newest.
  const files = readdirSync(dir).filter((f) => f.startsWith('training-step_') && f.endsWith('.json')).sort();
  const path = join(dir, files.at(-1));
  return { path, byOp: kernelTimeByOp(path) };
}

/** Kernel milliseconds per op type in the last run of an onnxruntime profile. */
function kernelTimeByOp(path) {
  const events = JSON.parse(readFileSync(path, 'utf8'));
  const runs = events.filter((e) => e.cat === 'Session' && e.name === 'model_run');
  const last = runs.at(-1);
  const byOp = {};
  for (const e of events) {
    if (e.cat !== 'Node' || !e.name.endsWith('_kernel_time') || e.ts < last.ts) continue;
    byOp[e.args.op_name] = (byOp[e.args.op_name] ?? 0) + e.dur / 1000;
  }
  return Object.fromEntries(Object.entries(byOp).sort((a, b) => b[1] - a[1]));
}

const onnx = await createOurs();
const torch = args['no-torch'] ? undefined : await createTorch();
const samples = { onnxruntime: [], torch: [] };
for (let i = 0; i < warmup + steps; i++) {
  const a = await onnx.step();
  const b = torch && !torch.error ? await torch.step() : undefined;
  if (i < warmup) continue;
  samples.onnxruntime.push(a);
  if (b) samples.torch.push(b);
}
await onnx.close();
const peakRssBytes = process.resourceUsage().maxRSS * 1024; // maxRSS is in KiB
const torchInfo = torch && !torch.error ? await torch.close() : undefined;

const summary = (list) => ({
  medianSeconds: median(list.map((s) => s.seconds)),
  medianCpuSeconds: median(list.map((s) => s.cpuSeconds)),
  times: list.map((s) => s.seconds),
  loss: list.at(-1).loss,
});
const result = { bench: 'training-step', spec, batch, threads, steps, warmup, memoryArena: args.arena, onnxruntime: { ...summary(samples.onnxruntime), peakRssBytes } };
const gib = (b) => `${(b / 2 ** 30).toFixed(2)} GiB`;
const line = (name, s, rss) =>
  `  ${name.padEnd(12)} ${s.medianSeconds.toFixed(3)} s  (CPU ${s.medianCpuSeconds.toFixed(2)} s)  peak RSS ${gib(rss)}`;
console.log(
  `ViT-B block training step, ${batch} x ${spec.tokens} tokens, ${threads} threads, median of ${steps} after ${warmup} warm-up` +
    ` (steps alternate; onnxruntime memory arena ${args.arena ? 'on' : 'off'})`,
);
console.log(line('onnxruntime', result.onnxruntime, peakRssBytes));
if (torch?.error) {
  console.log(`  torch        unavailable: ${torch.error}`);
  result.torch = { error: torch.error };
} else if (torch) {
  result.torch = { ...summary(samples.torch), peakRssBytes: torchInfo.peakRssBytes, version: torchInfo.version };
  result.ratioTorchOverOnnx = result.torch.medianSeconds / result.onnxruntime.medianSeconds;
  console.log(`${line('torch', result.torch, torchInfo.peakRssBytes)}  (torch ${torchInfo.version})`);
  console.log(`  torch / onnxruntime = ${result.ratioTorchOverOnnx.toFixed(2)} (>= 1: onnxruntime is no slower)`);
}
if (args.profile) {
  const { path, byOp } = await profile(args.profile);
  console.log(`  onnxruntime profile: ${path}; kernel time of the last run by op type:`);
  for (const [op, ms] of Object.entries(byOp).slice(0, 12)) console.log(`    ${op.padEnd(20)} ${ms.toFixed(1)} ms`);
  result.profile = { path, kernelMillisecondsByOp: byOp };
}
console.log(JSON.stringify(result));
