#!/usr/bin/env node
// Issue 14's load test: `transformaly serve` with the real ViT-Ti/16 (../shared/models/vit-ti16-augreg, read its
// README) against offline `transformaly score` on the same images, in the same run. The detector is fitted here with
// the CLI (a unimodal Fashion-MNIST case, the paper's students for blocks 2..11, one epoch: fitting is not measured).
// The images: Fashion-MNIST test images as 256x256 JPEG files. Offline: the images per second of
// `transformaly score DIR` net of its start-up (two runs of different sizes, the best of `--repeats`). Service:
// autocannon, 16 connections to 127.0.0.1 for 30 s, each request one image in turn, every answer checked against the
// offline scores of that image; then p50/p99 latency, images/s and the ratio to offline (goal >= 90%).
//
//   npx tsc -b && node bench/serve.mjs [--connections 16] [--seconds 30] [--images 256] [--batch-size N] [--repeats 2]
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer as createNetServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '..');
const bin = join(root, 'cli', 'bin', 'transformaly.js');
const MODEL = process.env.TRANSFORMALY_VIT_TI ?? join(root, '..', 'shared', 'models', 'vit-ti16-augreg', 'model.safetensors');
const { values: args } = parseArgs({
  options: {
    connections: { type: 'string', default: '16' },
    seconds: { type: 'string', default: '30' },
    images: { type: 'string', default: '256' },
    'batch-size': { type: 'string' },
    repeats: { type: 'string', default: '2' },
  },
});
const connections = Number(args.connections);
const seconds = Number(args.seconds);
const count = Number(args.images);
const repeats = Number(args.repeats);
const DETECTOR_BATCH = 16;

if (!existsSync(MODEL)) {
  console.log(`serve: skipped: this benchmark needs the real ViT-Ti/16 at ${MODEL} (set TRANSFORMALY_VIT_TI to its model.safetensors)`);
  process.exit(0);
}

const { default: sharp } = await import('sharp');
const { default: autocannon } = await import('autocannon');
const core = await import(join(root, 'core', 'dist', 'index.js'));

const work = mkdtempSync(join(tmpdir(), 'transformaly-bench-serve-'));
const images = join(work, 'images');
const few = join(work, 'few');
mkdirSync(images);
mkdirSync(few);
try {
  // The images: Fashion-MNIST test images, enlarged to 256x256 JPEG as photos would arrive.
  const source = new core.IdxSource({ dir: join(root, 'demo', 'fashion-mnist'), classNames: 'fashion-mnist' });
  const test = await source.items('test');
  const files = [];
  for (let i = 0; i < count; i++) {
    const image = await test[i % test.length].load();
    const raw = Buffer.from(Array.from(image.data, (v) => Math.round(v * 255)));
    const name = `${String(i).padStart(4, '0')}.jpg`;
    const jpeg = await sharp(raw, { raw: { width: image.width, height: image.height, channels: 3 } }).resize(256, 256).jpeg({ quality: 90 }).toBuffer();
    writeFileSync(join(images, name), jpeg);
    if (i < DETECTOR_BATCH) writeFileSync(join(few, name), jpeg);
    files.push({ name, path: join(images, name), bytes: jpeg });
  }

  // The detector, fitted with the CLI.
  const config = {
    data: { use: 'idx', options: { dir: join(root, 'demo', 'fashion-mnist'), classNames: 'fashion-mnist' } },
    protocol: { mode: 'unimodal', classes: ['Trouser'], limit: { train: 64 } },
    backbone: { use: 'vit', options: { checkpoint: MODEL, heads: 3, mean: [0.5, 0.5, 0.5], std: [0.5, 0.5, 0.5], resample: 'bicubic' } },
    distiller: { use: 'transformaly', options: { epochs: 1 } },
    batchSize: DETECTOR_BATCH,
    outputDir: join(work, 'results'),
  };
  writeFileSync(join(work, 'transformaly.config.ts'), `export default ${JSON.stringify(config, null, 2)};\n`);
  const detector = join(work, 'detector');
  run(['fit', '--out', detector]);

  // Offline: transformaly score on all the images and on one batch of them; the difference is the scoring alone.
  const offlineRates = [];
  let offlineCsv = '';
  for (let r = 0; r < repeats; r++) {
    const all = run(['score', '--detector', detector, images, '--out', join(work, 'scores.csv')]);
    const one = run(['score', '--detector', detector, few, '--out', join(work, 'few.csv')]);
    offlineRates.push((count - DETECTOR_BATCH) / (all.seconds - one.seconds));
    offlineCsv = readFileSync(join(work, 'scores.csv'), 'utf8');
  }
  const offline = new Map();
  for (const line of offlineCsv.trim().split('\n').slice(1)) {
    const [path, pretrained, finetuned, combined, , anomalous] = line.split(',');
    offline.set(path.slice(images.length + 1), { pretrained: Number(pretrained), finetuned: Number(finetuned), combined: Number(combined), anomalous: anomalous === '1' });
  }
  if (offline.size !== count) throw new Error(`offline scores: ${offline.size} rows for ${count} images`);

  // The service, as a user starts it.
  const port = await freePort();
  const serveArgs = ['serve', '--detector', detector, '--port', String(port), '--log-level', 'warn'];
  if (args['batch-size']) serveArgs.push('--batch-size', args['batch-size']);
  const server = spawn(process.execPath, [bin, ...serveArgs], { cwd: work, stdio: ['ignore', 'inherit', 'inherit'] });
  const exited = new Promise((resolve) => server.on('exit', (code, signal) => resolve({ code, signal })));
  const url = `http://127.0.0.1:${port}`;
  await waitReady(url, exited);
  const info = await (await fetch(`${url}/v1/detector`)).json();

  let next = 0;
  const checks = { answered: 0, wrong: [], timing: { decodeMs: 0, queueMs: 0, batchMs: 0, batchImages: 0 } };
  const load = (duration, check) =>
    autocannon({
      url: `${url}/v1/score`,
      connections,
      duration,
      timeout: 60,
      requests: [
        {
          method: 'POST',
          setupRequest: (request, context) => {
            const file = files[next++ % files.length];
            context.file = file;
            return { ...request, body: file.bytes, headers: { 'content-type': 'image/jpeg' } };
          },
          onResponse: (status, body, context) => {
            if (!check) return;
            checks.answered++;
            if (status !== 200) return void checks.wrong.push(`${context.file.name}: status ${status}: ${body}`);
            const [answer] = JSON.parse(body).images;
            for (const key of Object.keys(checks.timing)) checks.timing[key] += answer.timing[key];
            const expected = offline.get(context.file.name);
            const got = { ...answer.scores, anomalous: answer.anomalous };
            if (['pretrained', 'finetuned', 'combined', 'anomalous'].some((k) => got[k] !== expected[k])) {
              checks.wrong.push(`${context.file.name}: ${JSON.stringify(got)} but offline ${JSON.stringify(expected)}`);
            }
          },
        },
      ],
    });
  await load(3, false);
  const result = await load(seconds, true);
  server.kill('SIGTERM');
  const { code } = await exited;

  const served = result['2xx'] / result.duration;
  const offlineRate = Math.max(...offlineRates);
  const ratio = served / offlineRate;
  console.log(`transformaly serve, ViT-Ti/16 at 224 (${info.spaces.join(' + ')}; students for blocks 2..11), ${count} JPEG 256x256 images`);
  console.log(`  detector batch size ${DETECTOR_BATCH}; service: batch size ${info.limits.batchSize}, wait ${info.limits.batchWaitMs} ms, queue ${info.limits.maxQueue}`);
  console.log(`  offline transformaly score       ${offlineRate.toFixed(2)} images/s   (best of ${repeats}: ${offlineRates.map((r) => r.toFixed(2)).join(', ')}; net of start-up)`);
  console.log(`  service, ${connections} clients, ${result.duration.toFixed(0)} s   ${served.toFixed(2)} images/s   latency p50 ${result.latency.p50} ms, p99 ${result.latency.p99} ms`);
  console.log(`  requests ${result['2xx']} answered 200, ${result.non2xx} other status, ${result.errors} errors, ${result.timeouts} timeouts`);
  console.log(`  answers equal to the offline scores of their image: ${checks.answered - checks.wrong.length} of ${checks.answered}`);
  const mean = (key) => checks.timing[key] / Math.max(1, checks.answered);
  console.log(
    `  per answer, means: decode ${mean('decodeMs').toFixed(1)} ms, queued ${mean('queueMs').toFixed(1)} ms, pass ${mean('batchMs').toFixed(1)} ms ` +
      `of ${mean('batchImages').toFixed(1)} images (${(mean('batchMs') / mean('batchImages')).toFixed(1)} ms per image; offline ${(1000 / offlineRate).toFixed(1)})`,
  );
  console.log(`  service / offline images per second: ${(100 * ratio).toFixed(1)}%   (goal >= 90%)`);
  console.log(`  service exit status after SIGTERM: ${code}`);
  for (const w of checks.wrong.slice(0, 5)) console.log(`  WRONG ${w}`);
  console.log(JSON.stringify({ offlineRates, served, ratio, p50: result.latency.p50, p99: result.latency.p99, requests: result['2xx'], non2xx: result.non2xx, errors: result.errors, wrong: checks.wrong.length }));
  if (result.errors || result.timeouts || result.non2xx || checks.wrong.length || code !== 0) process.exitCode = 1;
} finally {
  rmSync(work, { recursive: true, force: true });
}

function run(argv) {
  const t = performance.now();
  const result = spawnSync(process.execPath, [bin, ...argv], { cwd: work, encoding: 'utf8' });
  if (result.status !== 0) throw new Error(`transformaly ${argv.join(' ')} failed:\n${result.stderr}`);
  return { seconds: (performance.now() - t) / 1000 };
}

function freePort() {
  return new Promise((resolve, reject) => {
    const probe = createNetServer().once('error', reject);
    probe.listen(0, '127.0.0.1', () => {
      const { port } = probe.address();
      probe.close(() => resolve(port));
    });
  });
}

async function waitReady(url, exited) {
  let done = false;
  void exited.then(() => (done = true));
  const deadline = Date.now() + 300_000;
  while (Date.now() < deadline) {
    if (done) throw new Error('transformaly serve exited before it was ready');
    try {
      if ((await fetch(`${url}/readyz`)).status === 200) return;
    } catch {
      // not listening yet
    }
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  throw new Error('transformaly serve was not ready within 5 minutes');
}
