// `transformaly export --web`: the static page in Debian's headless Chromium (playwright-core drives /usr/bin/chromium;
// no browser is downloaded), served from 127.0.0.1 as any static server would. The page must load nothing from outside
// its folder, score the picked images with onnxruntime-web, and give the scores onnxruntime-node gives for the same
// model and the project's own preprocessing; its resizing is the project's, to the bit.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { dirname, extname, join, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as ort from 'onnxruntime-node';
import { chromium, type Browser, type Page } from 'playwright-core';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { expectClose } from './fixtures/close.js';
import { fitAndSave } from './fixtures/saved-detector.js';
import {
  createPreprocessor,
  decodeImage,
  openDetector,
  type ImageItem,
  type PreprocessSpec,
  type Tensor,
  type TransformalyConfig,
} from '@transformaly/core';
import { writeWebFolder } from '@transformaly/web';

const CHROMIUM = '/usr/bin/chromium';
const repo = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const bin = join(repo, 'cli', 'bin', 'transformaly.js');
const work = mkdtempSync(join(tmpdir(), 'transformaly-export-web-'));

const tinyVit = { random: { seed: 7, arch: { imageSize: [32, 32], patchSize: 8, width: 32, depth: 3, heads: 2, mlpDim: 64, layerNormEps: 1e-6, qkvBias: true } } };

function config(extra: Partial<TransformalyConfig>): TransformalyConfig {
  return {
    data: { use: 'idx', options: { dir: join(repo, 'demo', 'fashion-mnist'), classNames: 'fashion-mnist' } },
    protocol: { mode: 'unimodal', classes: ['Trouser'], limit: { train: 40, testPerClass: 2 } },
    backbone: { use: 'vit', options: tinyVit },
    runtime: { use: 'onnx', options: { threads: 1 } },
    distiller: { use: 'transformaly', options: { blocks: { last: 2 }, epochs: 2 } },
    batchSize: 10,
    ...extra,
  };
}

/**
 * Test images as files: Fashion-MNIST test images (28x28, so the 32x32 model upsamples them), the same enlarged and
 * shrunk to odd sizes (the antialiased downsampling path), a colour image, and a JPEG.
 */
async function writeImages(items: ImageItem[]): Promise<string[]> {
  const dir = join(work, 'images');
  mkdirSync(dir);
  const files: string[] = [];
  for (const [i, item] of items.entries()) {
    const image = await item.load();
    const raw = Buffer.from(Array.from(image.data, (v) => Math.round(v * 255)));
    const input = sharp(raw, { raw: { width: image.width, height: image.height, channels: 3 } });
    const file = join(dir, `fmnist-${i}.png`);
    await input.clone().png().toFile(file);
    files.push(file);
    if (i < 2) {
      for (const [w, h] of [[45, 37], [20, 17]]) {
        const resized = join(dir, `fmnist-${i}-${w}x${h}.png`);
        await input.clone().resize(w, h, { fit: 'fill' }).png().toFile(resized);
        files.push(resized);
      }
    }
  }
  const colour = Buffer.alloc(64 * 48 * 3);
  for (let y = 0; y < 48; y++) for (let x = 0; x < 64; x++) colour.set([x * 4, y * 5, (x * y) % 256], (y * 64 + x) * 3);
  await sharp(colour, { raw: { width: 64, height: 48, channels: 3 } }).png().toFile(join(dir, 'colour.png'));
  await sharp(colour, { raw: { width: 64, height: 48, channels: 3 } }).jpeg({ quality: 90 }).toFile(join(dir, 'colour.jpg'));
  files.push(join(dir, 'colour.png'), join(dir, 'colour.jpg'));
  return files;
}

const TYPES: Record<string, string> = { '.html': 'text/html', '.js': 'text/javascript', '.mjs': 'text/javascript', '.wasm': 'application/wasm', '.json': 'application/json' };

/** A static file server on 127.0.0.1 for `root`, recording every path asked for. */
async function serve(root: string): Promise<{ server: Server; origin: string; asked: string[] }> {
  const asked: string[] = [];
  const server = createServer((req, res) => {
    const path = decodeURIComponent(new URL(req.url ?? '/', 'http://localhost').pathname);
    asked.push(path);
    const file = resolve(root, `.${path.endsWith('/') ? `${path}index.html` : path}`);
    if (!file.startsWith(root + sep) || !existsSync(file) || !statSync(file).isFile()) {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { 'content-type': TYPES[extname(file)] ?? 'application/octet-stream' }).end(readFileSync(file));
  });
  await new Promise<void>((done) => server.listen(0, '127.0.0.1', done));
  const address = server.address() as { port: number };
  return { server, origin: `http://127.0.0.1:${address.port}`, asked };
}

/** The scores onnxruntime-node gives for `model` on the project's own decoding and preprocessing of `files`. */
async function nodeScores(model: string, files: string[], spec: PreprocessSpec): Promise<{ pixels: Tensor[]; scores: Record<string, number>[] }> {
  const session = await ort.InferenceSession.create(model, { intraOpNumThreads: 1 });
  const preprocessor = createPreprocessor(spec);
  const pixels: Tensor[] = [];
  const scores: Record<string, number>[] = [];
  try {
    for (const file of files) {
      const tensor = await preprocessor.run([await decodeImage(file)]);
      pixels.push(tensor);
      const out = await session.run({ pixels: new ort.Tensor('float32', tensor.data, tensor.dims) });
      scores.push(Object.fromEntries(Object.entries(out).map(([name, t]) => [name, Number(t.data[0])])));
    }
  } finally {
    await session.release();
  }
  return { pixels, scores };
}

interface PageRun {
  page: Page;
  rows: { file: string; scores: Record<string, number>; anomalous: boolean }[];
  requests: string[];
  problems: string[];
}

/** Opens the page, waits for the model, picks `files` and waits until all are scored. */
async function scoreInPage(origin: string, files: string[]): Promise<PageRun> {
  const page = await browser!.newPage();
  const requests: string[] = [];
  const problems: string[] = [];
  page.on('request', (r) => requests.push(r.url()));
  page.on('requestfailed', (r) => problems.push(`request failed: ${r.url()} ${r.failure()?.errorText}`));
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('console', (m) => {
    if (m.type() === 'error' || m.type() === 'warning') problems.push(`console ${m.type()}: ${m.text()}`);
  });
  await page.goto(`${origin}/`, { waitUntil: 'load' });
  // Functions, not strings: the page's Content-Security-Policy forbids evaluating strings. (The test's types have no DOM.)
  await page.waitForFunction(() => /^(ready|could not)/.test((globalThis as any).document.querySelector('#status')?.textContent ?? ''), null, { timeout: 60_000 });
  expect(await page.locator('#status').textContent()).toMatch(/^ready \(onnxruntime-web 1\.30\.\d+/);
  await page.setInputFiles('#files', files);
  await page.waitForFunction((n) => (globalThis as any).document.body.dataset.scored === String(n), files.length, { timeout: 60_000 });
  const rows = await page.locator('#results tbody tr').evaluateAll((trs) =>
    trs.map((tr) => {
      const scores: Record<string, number> = {};
      for (const key of ['pretrained', 'finetuned', 'combined']) {
        const value = tr.getAttribute(`data-${key}`);
        if (value !== null) scores[key] = Number(value);
      }
      return { file: tr.getAttribute('data-file') ?? '', scores, anomalous: tr.getAttribute('data-anomalous') === 'true' };
    }),
  );
  return { page, rows, requests, problems };
}

/** The page's scores of one output against onnxruntime-node's, by the project's tolerance rule (test/fixtures/close.ts). */
function expectSpaceClose(rows: PageRun['rows'], reference: Record<string, number>[], space: string, label: string): void {
  expectClose(
    rows.map((r) => r.scores[space]),
    reference.map((r) => r[space]),
    1e-4,
    `${label} ${space}`,
  );
}

let browser: Browser | undefined;
const servers: Server[] = [];
/** The detector of the paper's stages (whitened Gaussian, students, Gaussian, sum) and the test image files. */
let paper: { dir: string; test: ImageItem[] };
let files: string[];

beforeAll(async () => {
  if (!existsSync(CHROMIUM)) {
    throw new Error(`Chromium is not at ${CHROMIUM}: install Debian's package with "apt-get install chromium" (CI installs it). This test drives that browser through playwright-core and never downloads one.`);
  }
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  paper = await fitAndSave(work, 'paper', config({ scorers: { pretrained: { use: 'gaussian', options: { whiten: { varianceFraction: 0.9 } } } } }));
  files = await writeImages(paper.test.slice(0, 6));
});

afterAll(async () => {
  await browser?.close();
  for (const server of servers) server.close();
  rmSync(work, { recursive: true, force: true });
});

describe('transformaly export --web in headless Chromium', () => {
  let detectorDir: string;
  let webDir: string;
  let spec: PreprocessSpec;
  let threshold: number;

  beforeAll(async () => {
    detectorDir = paper.dir;
    webDir = join(work, 'web');
    const result = spawnSync(process.execPath, [bin, 'export', '--detector', detectorDir, '--web', webDir], { cwd: work, encoding: 'utf8', env: { ...process.env, DEBUG: '' } });
    expect(result.status, result.stderr).toBe(0);
    expect(result.stdout).toContain(`wrote the web page web (10 files`);
    expect(result.stdout).toContain('input          pixels: float32 [N, 3, 32, 32] (NCHW)');
    const info = JSON.parse(readFileSync(join(webDir, 'detector.json'), 'utf8'));
    spec = info.preprocessing;
    threshold = info.threshold;
  });

  it('holds the page, the model, the preprocessing and onnxruntime-web copied from the installed package', () => {
    const ortDist = join(repo, 'node_modules', 'onnxruntime-web', 'dist');
    for (const file of ['ort.wasm.min.mjs', 'ort-wasm-simd-threaded.mjs', 'ort-wasm-simd-threaded.wasm']) {
      expect(readFileSync(join(webDir, 'ort', file)).equals(readFileSync(join(ortDist, file))), file).toBe(true);
    }
    expect(readFileSync(join(webDir, 'lib', 'resize.js'), 'utf8')).toContain('export function axisTaps');
    expect(readFileSync(join(webDir, 'index.html'), 'utf8')).not.toMatch(/https?:\/\/(?!www\.w3\.org)/);
  });

  it('loads nothing beyond its folder, scores the images, and the scores equal onnxruntime-node within 1e-4', async () => {
    const { server, origin, asked } = await serve(webDir);
    servers.push(server);
    const run = await scoreInPage(origin, files);
    try {
      expect(run.problems).toEqual([]);
      for (const url of run.requests) expect(url.startsWith(`${origin}/`), url).toBe(true);
      // Every file the page asked for is one of the folder's.
      for (const path of asked) expect(existsSync(join(webDir, path === '/' ? 'index.html' : path)), path).toBe(true);
      expect(asked).toEqual(expect.arrayContaining(['/detector.onnx', '/ort/ort-wasm-simd-threaded.wasm', '/lib/resize.js']));

      const names = files.map((f) => f.slice(f.lastIndexOf(sep) + 1));
      expect(run.rows.map((r) => r.file)).toEqual(names);
      const reference = await nodeScores(join(webDir, 'detector.onnx'), files, spec);
      for (const space of ['pretrained', 'finetuned', 'combined']) expectSpaceClose(run.rows, reference.scores, space, 'page vs onnxruntime-node');
      run.rows.forEach((row, i) => {
        if (Math.abs(reference.scores[i].combined - threshold) > 1e-4 * Math.abs(threshold)) expect(row.anomalous, row.file).toBe(Boolean(reference.scores[i].anomalous));
      });

      // And the project's own scoring of the same files (transformaly score).
      const opened = await openDetector(detectorDir);
      try {
        const own = await opened.detector.score(files.map((file) => ({ id: file, label: 'test', load: () => decodeImage(file) })));
        for (const space of ['pretrained', 'finetuned', 'combined'] as const) {
          expectSpaceClose(run.rows, own.ids.map((_, i) => ({ [space]: own[space]![i] })), space, 'page vs transformaly score');
        }
      } finally {
        await opened.dispose();
      }

      // The histogram counts every image once, and the threshold splits its bars.
      const bars = await run.page.locator('#histogram rect.bar').evaluateAll((rects) => rects.map((r) => ({ count: Number(r.getAttribute('data-count')), anomalous: r.classList.contains('anomalous'), x: Number(r.getAttribute('x')) })));
      expect(bars.reduce((n, b) => n + b.count, 0)).toBe(files.length);
      const line = run.page.locator('#histogram line.threshold');
      expect(Number(await line.getAttribute('data-threshold'))).toBe(threshold);
      const lineX = Number(await line.getAttribute('x1'));
      for (const bar of bars) expect(bar.anomalous).toBe(bar.x < lineX);
      expect(bars.filter((b) => b.anomalous).reduce((n, b) => n + b.count, 0)).toBe(run.rows.filter((r) => r.anomalous).length);
    } finally {
      await run.page.close();
    }
  });

  it("resizes as the project does: the page's model input equals the preprocessor's, bit for bit", async () => {
    const { server, origin } = await serve(webDir);
    servers.push(server);
    const page = await browser!.newPage();
    try {
      await page.goto(`${origin}/`);
      const reference = await nodeScores(join(webDir, 'detector.onnx'), files, spec);
      for (const [i, file] of files.entries()) {
        const bytes = Array.from(readFileSync(file));
        const type = file.endsWith('.jpg') ? 'image/jpeg' : 'image/png';
        // The page's own module (the import map resolves its imports as for the page); a string, as the test's
        // bundler would rewrite an import() in a function.
        const inPage = (await page.evaluate(
          `(async () => {
            const app = await import('./app.js');
            const tensor = await app.pixelsOf(new Blob([new Uint8Array(${JSON.stringify(bytes)})], { type: '${type}' }));
            return { dims: tensor.dims, data: Array.from(tensor.data) };
          })()`,
        )) as { dims: number[]; data: number[] };
        expect(inPage.dims, file).toEqual(reference.pixels[i].dims);
        // JPEG included: Chromium's decoder and libvips' (both libjpeg-turbo) give the same pixels for this file.
        expect(Float32Array.from(inPage.data), file).toEqual(reference.pixels[i].data);
      }
    } finally {
      await page.close();
    }
  });
});

describe('every built-in scorer and combiner runs in onnxruntime-web', () => {
  it.each([
    ['knn, gmm, zscore, with a distiller', { scorers: { pretrained: { use: 'knn', options: { k: 3 } }, finetuned: { use: 'gmm', options: { components: 2 } } }, combiner: 'zscore' }],
    ['gmm and sum without a distiller', { distiller: false, scorers: { pretrained: { use: 'gmm', options: { components: 3 } } }, combiner: 'sum' }],
    ['an int8 backbone', { backbone: { use: 'vit', options: { ...tinyVit, precision: 'int8' } } }],
  ] as const)('%s: the page scores as onnxruntime-node', async (name, extra) => {
    const fitted = await fitAndSave(work, name.replace(/\W+/g, '-'), config(extra as Partial<TransformalyConfig>));
    const dir = join(work, `web-${name.replace(/\W+/g, '-')}`);
    const opened = await openDetector(fitted.dir);
    try {
      await writeWebFolder(dir, opened);
    } finally {
      await opened.dispose();
    }
    const picked = ['fmnist-0.png', 'fmnist-1-20x17.png', 'colour.png'].map((f) => files.find((file) => file.endsWith(`${sep}${f}`))!);
    const { server, origin } = await serve(dir);
    servers.push(server);
    const run = await scoreInPage(origin, picked);
    try {
      expect(run.problems).toEqual([]);
      const info = JSON.parse(readFileSync(join(dir, 'detector.json'), 'utf8'));
      const reference = await nodeScores(join(dir, 'detector.onnx'), picked, info.preprocessing);
      for (const space of Object.keys(run.rows[0].scores)) expectSpaceClose(run.rows, reference.scores, space, name);
      expect(Object.keys(run.rows[0].scores).sort()).toEqual('distiller' in extra ? ['combined', 'pretrained'] : ['combined', 'finetuned', 'pretrained']);
    } finally {
      await run.page.close();
    }
  });
});
