#!/usr/bin/env node
// Issue 3's benchmark: ViT-B/16 at 224, batch 8, random weights, 2 threads on both sides. The job: decode 64 PNG
// files of 256x256, resize to 224, normalise, compute the features, write the .npy. The project's whole
// `transformaly embed` command against bench/embed_torch.py (torchvision, Debian's /usr/bin/python3, with
// OPENBLAS_CORETYPE=SkylakeX for that process only), in the same run, alternating. Also the fp32
// [6304x768]x[768x3072] MatMul rate onnxruntime reaches here, and the share of it the features reach
// (ViT-B/16 at 224 is 35.1 GFLOP per image).
//
//   npx tsc -b && node bench/embed.mjs [--threads 2] [--images 64] [--repeats 2] [--no-torch]
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '..');
const { values: args } = parseArgs({
  options: {
    threads: { type: 'string', default: '2' },
    images: { type: 'string', default: '64' },
    repeats: { type: 'string', default: '2' },
    'no-torch': { type: 'boolean', default: false },
  },
});
const threads = Number(args.threads);
const count = Number(args.images);
const repeats = Number(args.repeats);
const GFLOP_PER_IMAGE = 35.1;

const { default: sharp } = await import('sharp');
const ort = await import('onnxruntime-node');
const core = await import(join(root, 'core', 'dist', 'index.js'));
const vit = await import(join(root, 'plugins', 'backbone-vit', 'dist', 'index.js'));

const work = mkdtempSync(join(tmpdir(), 'transformaly-bench-embed-'));
const images = join(work, 'images');

// Noise images (deterministic), 256x256 PNG.
mkdirSync(images, { recursive: true });
let seed = 12345;
const rand = () => (seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0) / 4294967296;
for (let i = 0; i < count; i++) {
  const raw = Buffer.alloc(256 * 256 * 3);
  for (let j = 0; j < raw.length; j++) raw[j] = Math.floor(rand() * 256);
  await sharp(raw, { raw: { width: 256, height: 256, channels: 3 } }).png().toFile(join(images, `${String(i).padStart(3, '0')}.png`));
}

// A random ViT-B/16 checkpoint in the timm layout (heads given on the command line, as for a bare timm file).
const arch = { imageSize: [224, 224], patchSize: 16, width: 768, depth: 12, heads: 12, mlpDim: 3072, layerNormEps: 1e-6, qkvBias: true };
const weights = vit.randomVitWeights(arch, 1);
const checkpoint = join(work, 'vit-b16.safetensors');
await core.writeSafetensors(checkpoint, Object.fromEntries(weights));

function matmulRate() {
  const M = 6304, K = 768, N = 3072;
  const g = new core.OnnxGraph('matmul');
  g.input('a', 'float32', [M, K]);
  g.input('b', 'float32', [K, N]);
  g.node('MatMul', ['a', 'b'], ['c']);
  g.output('c', 'float32', [M, N]);
  return core.serializeOnnxModel(g).then(async (model) => {
    const session = await ort.InferenceSession.create(model.bytes, { intraOpNumThreads: threads, graphOptimizationLevel: 'all' });
    const a = new ort.Tensor('float32', new Float32Array(M * K).fill(0.5), [M, K]);
    const b = new ort.Tensor('float32', new Float32Array(K * N).fill(0.25), [K, N]);
    const times = [];
    for (let i = 0; i < 12; i++) {
      const t = performance.now();
      await session.run({ a, b });
      times.push((performance.now() - t) / 1000);
    }
    await session.release();
    times.sort((x, y) => x - y);
    return (2 * M * N * K) / times[Math.floor(times.length / 2)] / 1e9;
  });
}

function timed(command, argv, env = process.env) {
  const t = performance.now();
  const result = spawnSync(command, argv, { encoding: 'utf8', env, cwd: root });
  const seconds = (performance.now() - t) / 1000;
  if (result.status !== 0) throw new Error(`${command} ${argv.join(' ')} failed:\n${result.stderr}`);
  return { seconds, stdout: result.stdout };
}

const ours = [];
const torch = [];
const useTorch = !args['no-torch'];
for (let r = 0; r < repeats; r++) {
  ours.push(
    timed(process.execPath, [
      join(root, 'cli', 'bin', 'transformaly.js'), 'embed', images, '--checkpoint', checkpoint, '--heads', '12',
      '--mean', '0.5,0.5,0.5', '--std', '0.5,0.5,0.5', '--batch', '8', '--threads', String(threads), '--out', join(work, 'ours.npy'),
    ]).seconds,
  );
  if (useTorch) {
    const env = { ...process.env, OPENBLAS_CORETYPE: 'SkylakeX', OMP_NUM_THREADS: String(threads), OPENBLAS_NUM_THREADS: String(threads) };
    torch.push(timed(process.env.TORCH_PYTHON ?? '/usr/bin/python3', [join(here, 'embed_torch.py'), images, join(work, 'torch.npy'), String(threads), '8'], env).seconds);
  }
}

// Forward passes alone, in this process: the features' rate against the matmul rate.
const runtime = new (await import(join(root, 'plugins', 'runtime-onnx', 'dist', 'index.js'))).OnnxRuntime({ threads });
const backbone = await vit.loadVitBackbone({ checkpoint, heads: 12, mean: [0.5, 0.5, 0.5], std: [0.5, 0.5, 0.5] }, { runtime, progress: new core.SilentProgress() });
const pixels = { dims: [8, 3, 224, 224], data: new Float32Array(8 * 3 * 224 * 224).fill(0.1) };
await backbone.forward(pixels);
const forwardTimes = [];
for (let i = 0; i < 4; i++) {
  const t = performance.now();
  await backbone.forward(pixels);
  forwardTimes.push((performance.now() - t) / 1000);
}
forwardTimes.sort((x, y) => x - y);
const forwardRate = (8 * GFLOP_PER_IMAGE) / forwardTimes[Math.floor(forwardTimes.length / 2)];
await backbone.dispose();
await runtime.dispose();
const mm = await matmulRate();
rmSync(work, { recursive: true, force: true });

const best = (xs) => Math.min(...xs);
const wholeRate = (count * GFLOP_PER_IMAGE) / best(ours);
console.log(`ViT-B/16 embed, ${count} PNG 256x256 -> 224, batch 8, ${threads} threads (best of ${repeats})`);
console.log(`  transformaly embed (whole command)   ${best(ours).toFixed(2)} s`);
if (useTorch) {
  console.log(`  torch script (whole command)         ${best(torch).toFixed(2)} s`);
  console.log(`  speed-up vs torch                    ${(best(torch) / best(ours)).toFixed(2)}x   (target >= 1.3x)`);
}
console.log(`  onnxruntime fp32 MatMul [6304x768]x[768x3072]  ${mm.toFixed(1)} GFLOP/s`);
console.log(`  ViT-B/16 forward (batch 8)           ${forwardRate.toFixed(1)} GFLOP/s = ${((100 * forwardRate) / mm).toFixed(0)}% of the MatMul rate (target >= 80%)`);
console.log(`  whole embed command                  ${wholeRate.toFixed(1)} GFLOP/s = ${((100 * wholeRate) / mm).toFixed(0)}% of the MatMul rate`);
console.log(JSON.stringify({ ours, torch, matmulGflops: mm, forwardGflops: forwardRate, wholeGflops: wholeRate }));
