#!/usr/bin/env node
// @transformaly/runtime-tfjs against the other engines, in one run:
//  - one ViT-B block training step (768 wide, 12 heads, MLP 3072; 32 x 197 tokens; forward, MSE, backward, Adam) on
//    tfjs (wasm), on the onnxruntime StudentTrainer and in torch (bench/training_step_torch.py), steps alternating so
//    that all three see the same background load. Target: tfjs wasm within 14x of torch.
//  - ViT-B/16 pre-trained features (random weights; the cost does not depend on them) on tfjs (wasm) and onnxruntime,
//    runs alternating. Target: within 10x of onnxruntime.
//
//   npx tsc -b && node bench/tfjs.mjs [--threads 2] [--steps 3] [--warmup 1] [--batch 32] [--images 4] [--runs 3]
//       [--backend wasm|cpu|tensorflow] [--no-torch] [--no-training] [--no-features]
//
// tfjs-backend-wasm runs single-threaded under Node; --threads applies to onnxruntime and torch. Prints a table and,
// last, one JSON line with every number. torch runs in Debian's /usr/bin/python3 (torch 1.13) with
// OPENBLAS_CORETYPE=SkylakeX (for that process only); set TORCH_PYTHON to use another interpreter.
import { spawn } from 'node:child_process';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const here = dirname(fileURLToPath(import.meta.url));
const { values: args } = parseArgs({
  options: {
    threads: { type: 'string', default: '2' },
    steps: { type: 'string', default: '3' },
    warmup: { type: 'string', default: '1' },
    batch: { type: 'string', default: '32' },
    images: { type: 'string', default: '4' },
    runs: { type: 'string', default: '3' },
    backend: { type: 'string', default: 'wasm' },
    'no-torch': { type: 'boolean', default: false },
    'no-training': { type: 'boolean', default: false },
    'no-features': { type: 'boolean', default: false },
  },
});
const threads = Number(args.threads);
const steps = Number(args.steps);
const warmup = Number(args.warmup);
const batch = Number(args.batch);
const images = Number(args.images);
const runs = Number(args.runs);
const spec = { width: 768, heads: 12, mlpDim: 3072, layerNormEps: 1e-6, qkvBias: true, tokens: 197 };

const dist = (pkg) => join(here, '..', ...pkg, 'dist', 'index.js');
let tfjsPkg, onnxPkg, vitPkg, tf;
try {
  [tfjsPkg, onnxPkg, vitPkg] = await Promise.all([
    import(dist(['plugins', 'runtime-tfjs'])),
    import(dist(['plugins', 'runtime-onnx'])),
    import(dist(['plugins', 'backbone-vit'])),
  ]);
  tf = await import('@tensorflow/tfjs-core');
} catch (error) {
  console.error(`bench/tfjs: build the packages first (npx tsc -b): ${error.message}`);
  process.exit(1);
}

const notes = [];
const progress = { task: () => ({ tick() {}, done() {} }), info: (m) => notes.push(m), warn: (m) => notes.push(m) };
const tfjs = new tfjsPkg.TfjsRuntime({ backend: args.backend, progress });
const backend = await tfjs.ready();
const onnx = new onnxPkg.OnnxRuntime({ threads });

/** A seeded generator of uniform floats in [-1, 1) (mulberry32), so every run measures the same problem. */
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

function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

async function timed(fn) {
  const start = process.hrtime.bigint();
  const cpu = process.cpuUsage();
  const value = await fn();
  const used = process.cpuUsage(cpu);
  return { seconds: Number(process.hrtime.bigint() - start) / 1e9, cpuSeconds: (used.user + used.system) / 1e6, value };
}

/** Bytes of the wasm backend's heap (it grows and never shrinks, so this is its peak); undefined on other backends. */
function wasmHeapBytes() {
  return tf.engine().registry.wasm?.wasm?.HEAPU8?.byteLength;
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
      const r = JSON.parse(await next());
      return { seconds: r.seconds, cpuSeconds: r.cpuSeconds, value: r.loss };
    },
    close: async () => {
      child.stdin.write('quit\n');
      const info = JSON.parse(await next());
      child.stdin.end();
      return info;
    },
  };
}

function studentWeights(rand) {
  const shapes = [
    ['norm1.weight', [768]], ['norm1.bias', [768]], ['attn.qkv.weight', [2304, 768]], ['attn.qkv.bias', [2304]],
    ['attn.proj.weight', [768, 768]], ['attn.proj.bias', [768]], ['norm2.weight', [768]], ['norm2.bias', [768]],
    ['mlp.fc1.weight', [3072, 768]], ['mlp.fc1.bias', [3072]], ['mlp.fc2.weight', [768, 3072]], ['mlp.fc2.bias', [768]],
  ];
  const weights = {};
  for (const [name, dims] of shapes) {
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

const summary = (list) => ({
  medianSeconds: median(list.map((s) => s.seconds)),
  medianCpuSeconds: median(list.map((s) => s.cpuSeconds)),
  times: list.map((s) => s.seconds),
});
const result = { bench: 'tfjs', backend: backend.name, backendReason: backend.reason, threads, tfjsThreads: tfjs.threads };
const lines = [];

if (!args['no-features']) {
  // Features first: the backbones are gone (their weights freed) before the training step needs the heap.
  const rand = uniform(7);
  const pixels = { dims: [images, 3, 224, 224], data: Float32Array.from({ length: images * 3 * 224 * 224 }, rand) };
  const options = { random: { seed: 0, arch: 'ViT-B/16' } };
  const [onnxVit, tfjsVit] = [await vitPkg.loadVitBackbone(options, { runtime: onnx }), await vitPkg.loadVitBackbone(options, { runtime: tfjs })];
  const samples = { onnxruntime: [], tfjs: [] };
  let worst = 0;
  for (let i = 0; i < runs + 1; i++) {
    const a = await timed(() => onnxVit.forward(pixels));
    const b = await timed(() => tfjsVit.forward(pixels));
    if (i === 0) {
      // Warm-up run; also the engines' agreement (random weights, so only a sanity check).
      const x = a.value.features.data;
      const y = b.value.features.data;
      let scale = 0;
      for (let j = 0; j < x.length; j++) {
        worst = Math.max(worst, Math.abs(x[j] - y[j]));
        scale = Math.max(scale, Math.abs(x[j]));
      }
      worst /= scale;
      continue;
    }
    samples.onnxruntime.push(a);
    samples.tfjs.push(b);
  }
  await Promise.all([onnxVit.dispose(), tfjsVit.dispose()]);
  const features = { images, runs, onnxruntime: summary(samples.onnxruntime), tfjs: summary(samples.tfjs), maxRelativeDifference: worst };
  features.ratioTfjsOverOnnx = features.tfjs.medianSeconds / features.onnxruntime.medianSeconds;
  result.features = features;
  lines.push(`ViT-B/16 features, ${images} images of 224 x 224, median of ${runs} runs after 1 warm-up (runs alternate)`);
  lines.push(`  onnxruntime  ${features.onnxruntime.medianSeconds.toFixed(3)} s  (${(features.onnxruntime.medianSeconds / images).toFixed(3)} s/image, ${threads} threads)`);
  lines.push(`  tfjs ${backend.name.padEnd(7)} ${features.tfjs.medianSeconds.toFixed(3)} s  (${(features.tfjs.medianSeconds / images).toFixed(3)} s/image, ${tfjs.threads} thread(s))`);
  lines.push(`  tfjs / onnxruntime = ${features.ratioTfjsOverOnnx.toFixed(2)} (target <= 10); features agree to ${worst.toExponential(1)} relative`);
}

if (!args['no-training']) {
  const rand = uniform(1);
  const dims = [batch, spec.tokens, spec.width];
  const count = batch * spec.tokens * spec.width;
  const input = { dims, data: Float32Array.from({ length: count }, rand) };
  const target = { dims, data: Float32Array.from({ length: count }, rand) };
  const weights = studentWeights(rand);
  const adam = { lr: 1e-4, beta1: 0.9, beta2: 0.999, eps: 1e-8 };
  const tfjsTrainer = await tfjs.createStudentTrainer(spec, weights, adam);
  const onnxTrainer = await onnx.createStudentTrainer(spec, weights, adam);
  const torch = args['no-torch'] ? undefined : await createTorch();
  const samples = { tfjs: [], onnxruntime: [], torch: [] };
  for (let i = 0; i < warmup + steps; i++) {
    const a = await timed(() => tfjsTrainer.step(input, target));
    const b = await timed(() => onnxTrainer.step(input, target));
    const c = torch && !torch.error ? await torch.step() : undefined;
    if (i < warmup) continue;
    samples.tfjs.push(a);
    samples.onnxruntime.push(b);
    if (c) samples.torch.push(c);
  }
  const training = {
    batch,
    steps,
    warmup,
    tfjs: { ...summary(samples.tfjs), loss: samples.tfjs.at(-1).value, wasmHeapBytes: wasmHeapBytes() },
    onnxruntime: { ...summary(samples.onnxruntime), loss: samples.onnxruntime.at(-1).value },
  };
  await Promise.all([tfjsTrainer.dispose(), onnxTrainer.dispose()]);
  lines.push(`ViT-B block training step, ${batch} x ${spec.tokens} tokens, median of ${steps} after ${warmup} warm-up (steps alternate)`);
  const heap = training.tfjs.wasmHeapBytes ? `, wasm heap ${(training.tfjs.wasmHeapBytes / 2 ** 30).toFixed(2)} GiB` : '';
  lines.push(`  tfjs ${backend.name.padEnd(7)} ${training.tfjs.medianSeconds.toFixed(3)} s  (${tfjs.threads} thread(s)${heap})`);
  lines.push(`  onnxruntime  ${training.onnxruntime.medianSeconds.toFixed(3)} s  (${threads} threads)`);
  if (torch?.error) {
    training.torch = { error: torch.error };
    lines.push(`  torch        unavailable: ${torch.error}`);
  } else if (torch) {
    const info = await torch.close();
    training.torch = { ...summary(samples.torch), loss: samples.torch.at(-1).value, version: info.version };
    training.ratioTfjsOverTorch = training.tfjs.medianSeconds / training.torch.medianSeconds;
    lines.push(`  torch        ${training.torch.medianSeconds.toFixed(3)} s  (${threads} threads, torch ${info.version})`);
    lines.push(`  tfjs / torch = ${training.ratioTfjsOverTorch.toFixed(2)} (target <= 14)`);
  }
  training.ratioTfjsOverOnnx = training.tfjs.medianSeconds / training.onnxruntime.medianSeconds;
  lines.push(`  tfjs / onnxruntime = ${training.ratioTfjsOverOnnx.toFixed(2)}`);
  result.training = training;
}

await Promise.all([tfjs.dispose(), onnx.dispose()]);
console.log(notes.join('\n'));
console.log(lines.join('\n'));
console.log(JSON.stringify(result));
