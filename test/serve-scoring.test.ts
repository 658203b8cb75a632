// `transformaly serve`: the answers of POST /v1/score are the offline scores of the very image sent (Detector.score on
// the file, as `transformaly score` computes them), alone, concurrently, several per request, and in passes that mix
// requests; GET /v1/detector, /healthz, /readyz and /metrics say what they should.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createServer, type TransformalyServer } from '@transformaly/serve';
import { BATCH_SIZE, fitTinyDetector, offlineScores, writeTestImages, type OfflineScores, type TestImage } from './fixtures/serve.js';

let detectorDir = '';
let images: TestImage[] = [];
let offline: Map<string, OfflineScores>;
let threshold = 0;
let app: TransformalyServer;
let url = '';

beforeAll(async () => {
  detectorDir = await fitTinyDetector();
  images = await writeTestImages(24);
  ({ scores: offline, threshold } = await offlineScores(detectorDir, images));
  // A wait long enough that concurrent requests share passes even on a busy machine; room for every request at once.
  app = createServer({ detector: detectorDir, batchWaitMs: 30, maxQueue: 256 });
  await app.listen({ host: '127.0.0.1', port: 0 });
  await app.detectorReady;
  url = `http://127.0.0.1:${(app.server.address() as { port: number }).port}`;
});

afterAll(async () => {
  await app?.close();
});

interface ImageAnswer {
  name?: string;
  format: string;
  width: number;
  height: number;
  scores: { pretrained: number; finetuned?: number; combined: number };
  threshold: number;
  anomalous: boolean;
  timing: { decodeMs: number; queueMs: number; batchMs: number; batchImages: number };
}

async function postRaw(image: TestImage): Promise<ImageAnswer[]> {
  const response = await fetch(`${url}/v1/score`, { method: 'POST', body: image.bytes, headers: { 'content-type': image.type } });
  expect(response.status, await response.clone().text()).toBe(200);
  return ((await response.json()) as { images: ImageAnswer[] }).images;
}

async function postFiles(files: TestImage[]): Promise<ImageAnswer[]> {
  const form = new FormData();
  for (const file of files) form.append('image', new Blob([file.bytes], { type: file.type }), file.name);
  const response = await fetch(`${url}/v1/score`, { method: 'POST', body: form });
  expect(response.status, await response.clone().text()).toBe(200);
  return ((await response.json()) as { images: ImageAnswer[] }).images;
}

/** The answer is the offline result of `image`, to the bit. */
function expectOffline(answer: ImageAnswer, image: TestImage): void {
  const expected = offline.get(image.name)!;
  expect(answer.scores, image.name).toEqual({ pretrained: expected.pretrained, finetuned: expected.finetuned, combined: expected.combined });
  expect(answer.anomalous, image.name).toBe(expected.anomalous);
  expect(answer.threshold).toBe(threshold);
}

describe('POST /v1/score', () => {
  it('answers one raw image with its offline scores, threshold and decision', async () => {
    const [answer] = await postRaw(images[0]);
    expectOffline(answer, images[0]);
    expect(answer.name).toBeUndefined();
    expect(answer.format).toBe('png');
    expect([answer.width, answer.height]).toEqual([28, 28]);
    expect(answer.timing.batchImages).toBeGreaterThanOrEqual(1);
  });

  it('the test images include normal and anomalous ones (else the decision would not be checked)', () => {
    const decisions = new Set([...offline.values()].map((s) => s.anomalous));
    expect(decisions).toEqual(new Set([true, false]));
  });

  it('answers concurrent requests each with its own image, through passes that mix requests', async () => {
    const answers = await Promise.all(images.map((image) => postRaw(image)));
    answers.forEach(([answer], i) => {
      expectOffline(answer, images[i]);
      expect(answer.format).toBe({ png: 'png', webp: 'webp', tiff: 'tiff', jpg: 'jpeg' }[images[i].name.split('.')[1]]);
    });
    // Each request has one image, so a pass of several images mixed requests; none exceeds the batch size.
    const sizes = answers.map(([answer]) => answer.timing.batchImages);
    expect(Math.max(...sizes)).toBeGreaterThan(1);
    expect(Math.max(...sizes)).toBeLessThanOrEqual(BATCH_SIZE);
  });

  it('answers a multipart request of several files in order, by file name', async () => {
    const files = images.slice(3, 10);
    const answers = await postFiles(files);
    expect(answers.map((a) => a.name)).toEqual(files.map((f) => f.name));
    answers.forEach((answer, i) => expectOffline(answer, files[i]));
  });

  it('keeps answers apart when multipart and raw requests arrive together', async () => {
    // Overlapping groups of files in a rotated order, and the same images raw: every image appears several times.
    const groups = [0, 5, 10, 15].map((start) => [...images.slice(start, start + 6)].reverse());
    const [multipart, raw] = await Promise.all([Promise.all(groups.map(postFiles)), Promise.all(images.map(postRaw))]);
    multipart.forEach((answers, g) => answers.forEach((answer, i) => expectOffline(answer, groups[g][i])));
    raw.forEach(([answer], i) => expectOffline(answer, images[i]));
  });
});

describe('GET /v1/detector', () => {
  it('says what the detector is, and the limits in force', async () => {
    const info = (await (await fetch(`${url}/v1/detector`)).json()) as any; // a JSON document, checked field by field
    expect(info.caseId).toBe('unimodal/Trouser');
    expect(info.backbone).toMatchObject({ id: 'random:5', untrained: true, imageSize: [28, 28] });
    expect(info.backbone.sha256).toMatch(/^[0-9a-f]{64}$/);
    expect(info.spaces).toEqual(['pretrained', 'finetuned']);
    expect(info.threshold).toBe(threshold);
    expect(info.plugins.backbone.name).toBe('@transformaly/backbone-vit');
    expect(info.packages.fitted['@transformaly/core']).toBe(info.packages.serving['@transformaly/core']);
    expect(info.packages.serving.node).toBe(process.versions.node);
    expect(info.limits).toEqual({
      batchSize: BATCH_SIZE,
      batchWaitMs: 30,
      maxQueue: 256,
      timeoutMs: 30_000,
      bodyLimit: 20 * 1024 * 1024,
      maxFiles: 32,
      maxPixels: 50_000_000,
      decodeConcurrency: expect.any(Number),
    });
  });
});

describe('health, readiness and metrics', () => {
  it('/healthz and /readyz answer 200 once the detector is ready', async () => {
    expect(await (await fetch(`${url}/healthz`)).json()).toEqual({ status: 'ok' });
    const ready = await fetch(`${url}/readyz`);
    expect(ready.status).toBe(200);
    expect(await ready.json()).toEqual({ status: 'ready' });
  });

  it('/metrics counts requests by route and status, images scored, pass sizes and the queue', async () => {
    const before = metricValues(await (await fetch(`${url}/metrics`)).text());
    await Promise.all(images.slice(0, 5).map(postRaw));
    await postFiles(images.slice(5, 8));
    const response = await fetch(`${url}/metrics`);
    expect(response.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
    const after = metricValues(await response.text());
    const delta = (key: string) => (after.get(key) ?? 0) - (before.get(key) ?? 0);
    expect(delta('transformaly_http_requests_total{route="/v1/score",method="POST",status="200"}')).toBe(6);
    expect(delta('transformaly_http_request_duration_seconds_count{route="/v1/score",method="POST",status="200"}')).toBe(6);
    expect(delta('transformaly_images_scored_total')).toBe(8);
    expect(delta('transformaly_batch_images_sum')).toBe(8);
    expect(delta('transformaly_batch_images_count')).toBeGreaterThanOrEqual(2);
    expect(after.get('transformaly_queue_images')).toBe(0);
    expect(after.has('transformaly_process_resident_memory_bytes')).toBe(true);
  });
});

/** Prometheus text format: `name{labels} value` lines, by `name{labels}`. */
function metricValues(text: string): Map<string, number> {
  const values = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (line.startsWith('#') || line.trim() === '') continue;
    const at = line.lastIndexOf(' ');
    values.set(line.slice(0, at), Number(line.slice(at + 1)));
  }
  return values;
}
