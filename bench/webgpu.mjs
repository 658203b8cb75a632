#!/usr/bin/env node
// The GPU runtime (@transformaly/runtime-tfjs on tfjs-backend-webgpu through Dawn) against onnxruntime on the CPU, in
// one run, with the adapter it ran on:
//  - ViT-B/16 pre-trained features (random weights, the real layout; the cost does not depend on them) at --batch
//    images per run: img/s and GFLOP/s. Issue 12's goal on a real GPU: >= 300 img/s.
//  - one ViT-B block training step (768 wide, 12 heads, MLP 3072; --train-batch x 197 tokens; forward, MSE,
//    backward, Adam): ms/step, img/s and GFLOP/s. Goal on a real GPU: <= 60 ms at batch 32.
// Runs of the two engines alternate, so that both see the same background load.
//
//   npx tsc -b && node bench/webgpu.mjs [--batch N] [--train-batch N] [--runs 3] [--steps 3] [--warmup 1]
//       [--threads 2] [--adapter any|gpu] [--no-onnx] [--no-features] [--no-training]
//
// Defaults: batch 32, training batch 32, 3 runs and 3 steps on a GPU adapter. On a CPU adapter (Mesa's lavapipe: the
// same shaders, run on the CPU at about 1 GFLOP/s) they shrink to batch 1, training batch 1, 1 run and 1 step, so
// that the bench ends in about two minutes; give the flags to override. GFLOP counts only the matrix products (all but about 1% of the work):
// 2 x multiply-adds, the backward pass twice the forward's. Prints a table, then one JSON line with every number.
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const here = dirname(fileURLToPath(import.meta.url));
const { values: args } = parseArgs({
  options: {
    batch: { type: 'string' },
    'train-batch': { type: 'string' },
    runs: { type: 'string' },
    steps: { type: 'string' },
    warmup: { type: 'string', default: '1' },
    threads: { type: 'string', default: '2' },
    adapter: { type: 'string', default: 'any' },
    'no-onnx': { type: 'boolean', default: false },
    'no-features': { type: 'boolean', default: false },
    'no-training': { type: 'boolean', default: false },
  },
});

function integerArg(name, value, min) {
  const n = Number(value);
  if (!Number.isInteger(n) || n < min) {
    console.error(`bench/webgpu: --${name} must be an integer >= ${min}, got ${value}`);
    process.exit(2);
  }
  return n;
}

// Mesa's Vulkan drivers want XDG_RUNTIME_DIR, which containers often lack.
process.env.XDG_RUNTIME_DIR ??= mkdtempSync(join(tmpdir(), 'xdg-runtime-'));

const dist = (...pkg) => join(here, '..', ...pkg, 'dist', 'index.js');
let tfjsPkg, onnxPkg, vitPkg, core;
try {
  [tfjsPkg, onnxPkg, vitPkg, core] = await Promise.all([
    import(dist('plugins', 'runtime-tfjs')),
    import(dist('plugins', 'runtime-onnx')),
    import(dist('plugins', 'backbone-vit')),
    import(dist('core')),
  ]);
} catch (error) {
  console.error(`bench/webgpu: build the packages first (npx tsc -b): ${error.message}`);
  process.exit(1);
}

const notes = [];
const progress = { task: () => ({ tick() {}, done() {} }), info: (m) => notes.push(m), warn: (m) => notes.push(m) };
const gpu = new tfjsPkg.TfjsRuntime({ backend: 'webgpu', adapter: args.adapter, progress });
let backend;
try {
  backend = await gpu.ready();
} catch (error) {
  console.error(`bench/webgpu: ${error.message}`);
  process.exit(1);
}
const adapter = backend.adapter;
const onCpuAdapter = adapter.type === 'cpu';
const batch = integerArg('batch', args.batch ?? (onCpuAdapter ? 1 : 32), 1);
const trainBatch = integerArg('train-batch', args['train-batch'] ?? (onCpuAdapter ? 1 : 32), 1);
const runs = integerArg('runs', args.runs ?? (onCpuAdapter ? 1 : 3), 1);
const steps = integerArg('steps', args.steps ?? (onCpuAdapter ? 1 : 3), 1);
const warmup = integerArg('warmup', args.warmup, 0);
const threads = integerArg('threads', args.threads, 1);
const onnx = args['no-onnx'] ? undefined : new onnxPkg.OnnxRuntime({ threads });

const ARCH = 'ViT-B/16';
const spec = { width: 768, heads: 12, mlpDim: 3072, layerNormEps: 1e-6, qkvBias: true, tokens: 197 };

/** Matrix-product FLOPs of one ViT block's forward pass on one image. */
function blockFlops({ width: d, mlpDim: m, tokens: t }) {
  return 2 * t * d * (3 * d + d + 2 * m) + 2 * 2 * t * t * d;
}
/** ViT-B/16 at 224 x 224: the patch embedding (196 patches of 3 x 16 x 16) and 12 blocks. */
const FEATURE_FLOPS_PER_IMAGE = 2 * 196 * (3 * 16 * 16) * spec.width + 12 * blockFlops(spec);
/** Forward, then backward (two products per forward product: input and weight gradients). */
const STEP_FLOPS_PER_IMAGE = 3 * blockFlops(spec);

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

async function seconds(fn) {
  const start = process.hrtime.bigint();
  const value = await fn();
  return { seconds: Number(process.hrtime.bigint() - start) / 1e9, value };
}

/** max |a - b| / max |b| */
function relativeDifference(a, b) {
  let diff = 0;
  let scale = 0;
  for (let i = 0; i < b.length; i++) {
    diff = Math.max(diff, Math.abs(a[i] - b[i]));
    scale = Math.max(scale, Math.abs(b[i]));
  }
  return diff / scale;
}

function rate(medianSeconds, images, flopsPerImage) {
  return { medianSeconds, imagesPerSecond: images / medianSeconds, gflopPerSecond: (images * flopsPerImage) / medianSeconds / 1e9 };
}

const where = (r) => `${r.imagesPerSecond.toFixed(r.imagesPerSecond < 10 ? 2 : 1)} img/s, ${r.gflopPerSecond.toFixed(1)} GFLOP/s`;
const result = {
  bench: 'webgpu',
  backend: backend.name,
  adapter,
  onnxThreads: onnx ? threads : null,
  featureGflopPerImage: FEATURE_FLOPS_PER_IMAGE / 1e9,
  stepGflopPerImage: STEP_FLOPS_PER_IMAGE / 1e9,
};
const lines = [`adapter: ${adapter.description || adapter.device} [${adapter.vendor}, ${adapter.architecture}], ${onCpuAdapter ? 'a CPU implementation' : 'a GPU'}${adapter.isFallbackAdapter ? ' (fallback adapter)' : ''}`];
if (onCpuAdapter && (args.batch === undefined || args['train-batch'] === undefined)) {
  lines.push('  (a CPU adapter: small default batches; the figures show the code path, not GPU speed)');
}

if (!args['no-features']) {
  const rand = uniform(7);
  const pixels = { dims: [batch, 3, 224, 224], data: Float32Array.from({ length: batch * 3 * 224 * 224 }, rand) };
  const options = { random: { seed: 0, arch: ARCH } };
  const ours = await vitPkg.loadVitBackbone(options, { runtime: gpu });
  const reference = onnx ? await vitPkg.loadVitBackbone(options, { runtime: onnx }) : undefined;
  const samples = { webgpu: [], onnxruntime: [] };
  let agreement;
  for (let i = 0; i < warmup + runs; i++) {
    const a = await seconds(() => ours.forward(pixels));
    const b = reference ? await seconds(() => reference.forward(pixels)) : undefined;
    if (i === 0 && b) agreement = relativeDifference(a.value.features.data, b.value.features.data);
    if (i < warmup) continue;
    samples.webgpu.push(a.seconds);
    if (b) samples.onnxruntime.push(b.seconds);
  }
  await Promise.all([ours.dispose(), reference?.dispose()]);
  const features = { batch, runs, warmup, webgpu: rate(median(samples.webgpu), batch, FEATURE_FLOPS_PER_IMAGE), maxRelativeDifference: agreement ?? null };
  lines.push(`${ARCH} features, batch ${batch} of 224 x 224, median of ${runs} run(s) after ${warmup} warm-up`);
  lines.push(`  webgpu       ${features.webgpu.medianSeconds.toFixed(3)} s  (${where(features.webgpu)}; goal on a GPU >= 300 img/s)`);
  if (reference) {
    features.onnxruntime = rate(median(samples.onnxruntime), batch, FEATURE_FLOPS_PER_IMAGE);
    features.speedupOverOnnx = features.onnxruntime.medianSeconds / features.webgpu.medianSeconds;
    lines.push(`  onnxruntime  ${features.onnxruntime.medianSeconds.toFixed(3)} s  (${where(features.onnxruntime)}, CPU, ${threads} threads)`);
    lines.push(`  webgpu / onnxruntime speed = ${features.speedupOverOnnx.toFixed(2)}; features agree to ${agreement.toExponential(1)} relative`);
  }
  result.features = features;
}

if (!args['no-training']) {
  const rand = uniform(1);
  const dims = [trainBatch, spec.tokens, spec.width];
  const count = trainBatch * spec.tokens * spec.width;
  const input = { dims, data: Float32Array.from({ length: count }, rand) };
  const target = { dims, data: Float32Array.from({ length: count }, rand) };
  const weights = core.initStudentWeights(spec, 1);
  const adam = { lr: 1e-4, beta1: 0.9, beta2: 0.999, eps: 1e-8 };
  const ours = await gpu.createStudentTrainer(spec, weights, adam);
  const reference = onnx ? await onnx.createStudentTrainer(spec, weights, adam) : undefined;
  const samples = { webgpu: [], onnxruntime: [] };
  const losses = { webgpu: [], onnxruntime: [] };
  for (let i = 0; i < warmup + steps; i++) {
    const a = await seconds(() => ours.step(input, target));
    const b = reference ? await seconds(() => reference.step(input, target)) : undefined;
    losses.webgpu.push(a.value);
    if (b) losses.onnxruntime.push(b.value);
    if (i < warmup) continue;
    samples.webgpu.push(a.seconds);
    if (b) samples.onnxruntime.push(b.seconds);
  }
  await Promise.all([ours.dispose(), reference?.dispose()]);
  const training = { batch: trainBatch, steps, warmup, webgpu: { ...rate(median(samples.webgpu), trainBatch, STEP_FLOPS_PER_IMAGE), losses: losses.webgpu } };
  lines.push(`ViT-B block training step, batch ${trainBatch} x ${spec.tokens} tokens, median of ${steps} step(s) after ${warmup} warm-up`);
  lines.push(`  webgpu       ${(1000 * training.webgpu.medianSeconds).toFixed(1)} ms  (${where(training.webgpu)}; goal on a GPU <= 60 ms at batch 32)`);
  if (reference) {
    training.onnxruntime = { ...rate(median(samples.onnxruntime), trainBatch, STEP_FLOPS_PER_IMAGE), losses: losses.onnxruntime };
    training.speedupOverOnnx = training.onnxruntime.medianSeconds / training.webgpu.medianSeconds;
    lines.push(`  onnxruntime  ${(1000 * training.onnxruntime.medianSeconds).toFixed(1)} ms  (${where(training.onnxruntime)}, CPU, ${threads} threads)`);
    lines.push(`  webgpu / onnxruntime speed = ${training.speedupOverOnnx.toFixed(2)}; losses of the first step ${losses.webgpu[0].toPrecision(7)} and ${losses.onnxruntime[0].toPrecision(7)}`);
  }
  result.training = training;
}

await Promise.all([gpu.dispose(), onnx?.dispose()]);
console.log(notes.join('\n'));
console.log(lines.join('\n'));
console.log(JSON.stringify(result));
