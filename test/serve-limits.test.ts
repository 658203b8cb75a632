// `transformaly serve` under pressure: past the queue bound a request gets 503 with Retry-After, a request past its
// timeout gets 503 and leaves the queue, a client that leaves frees its place, requests before the detector is ready
// get 503, and the accepted requests are still answered right. A gate holds the detector's passes (the real scoring
// runs once it opens), so that the queue is in a known state.
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { openDetector, type OpenedDetector } from '@transformaly/core';
import { createServer, type ServeOptions, type TransformalyServer } from '@transformaly/serve';
import { fitTinyDetector, offlineScores, writeTestImages, type OfflineScores, type TestImage } from './fixtures/serve.js';

let detectorDir = '';
let images: TestImage[] = [];
let offline: Map<string, OfflineScores>;
const cleanup: (() => Promise<void>)[] = [];

beforeAll(async () => {
  detectorDir = await fitTinyDetector();
  images = await writeTestImages(4);
  ({ scores: offline } = await offlineScores(detectorDir, images));
});

afterEach(async () => {
  for (const step of cleanup.splice(0).reverse()) await step();
});

/** Holds each pass of the detector at its start while closed; counts the passes that began. */
interface Gate {
  close(): void;
  open(): void;
  entered(): number;
}

function gate(opened: OpenedDetector): Gate {
  const { detector } = opened;
  const score = detector.scorePixels.bind(detector);
  let closed = false;
  let entered = 0;
  let waiting: (() => void)[] = [];
  detector.scorePixels = async (pixels, ids) => {
    entered++;
    while (closed) await new Promise<void>((resolve) => waiting.push(resolve));
    return score(pixels, ids);
  };
  return {
    close: () => void (closed = true),
    open: () => {
      closed = false;
      for (const resume of waiting.splice(0)) resume();
      waiting = [];
    },
    entered: () => entered,
  };
}

async function start(options: Omit<ServeOptions, 'detector'>): Promise<{ url: string; gate: Gate; app: TransformalyServer }> {
  const opened = await openDetector(detectorDir);
  const g = gate(opened);
  const app = createServer({ detector: opened, ...options });
  await app.listen({ host: '127.0.0.1', port: 0 });
  await app.detectorReady;
  cleanup.push(() => opened.dispose(), async () => g.open(), () => app.close());
  return { url: `http://127.0.0.1:${(app.server.address() as { port: number }).port}`, gate: g, app };
}

function score(url: string, image: TestImage, signal?: AbortSignal): Promise<Response> {
  return fetch(`${url}/v1/score`, { method: 'POST', body: image.bytes, headers: { 'content-type': image.type }, signal });
}

async function metric(url: string, name: string): Promise<number> {
  const text = await (await fetch(`${url}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`${name} `));
  return line === undefined ? 0 : Number(line.slice(name.length + 1));
}

async function until(what: string, check: () => boolean | Promise<boolean>): Promise<void> {
  const deadline = Date.now() + 20_000;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

async function expectOffline(response: Response, image: TestImage): Promise<void> {
  expect(response.status).toBe(200);
  const [answer] = ((await response.json()) as { images: { scores: { combined: number; finetuned: number } }[] }).images;
  expect(answer.scores.combined).toBe(offline.get(image.name)!.combined);
  expect(answer.scores.finetuned).toBe(offline.get(image.name)!.finetuned);
}

describe('the bounded queue', () => {
  it('answers 503 with Retry-After past maxQueue, and still answers every accepted request right', async () => {
    const { url, gate } = await start({ batchSize: 1, maxQueue: 2, batchWaitMs: 0 });
    gate.close();
    const passesBefore = gate.entered();
    const first = score(url, images[0]);
    await until('the first image is in a pass', () => gate.entered() === passesBefore + 1);
    const queued = [score(url, images[1]), score(url, images[2])];
    await until('two images wait', async () => (await metric(url, 'transformaly_queue_images')) === 2);

    const refused = await score(url, images[3]);
    expect(refused.status).toBe(503);
    expect(Number(refused.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
    expect(await refused.json()).toEqual({
      statusCode: 503,
      error: 'Service Unavailable',
      message: 'the service is busy: 2 images are waiting, the most it queues; retry later',
    });
    expect(await metric(url, 'transformaly_rejected_images_total{reason="queue_full"}')).toBe(1);

    gate.open();
    await expectOffline(await first, images[0]);
    await expectOffline(await queued[0], images[1]);
    await expectOffline(await queued[1], images[2]);
    // Room again.
    await expectOffline(await score(url, images[3]), images[3]);
  });

  it('refuses a multipart request whose files do not all fit, scoring none of them', async () => {
    const { url, gate } = await start({ batchSize: 1, maxQueue: 3, maxFiles: 3, batchWaitMs: 0 });
    gate.close();
    const passesBefore = gate.entered();
    const first = score(url, images[0]);
    await until('the first image is in a pass', () => gate.entered() === passesBefore + 1);
    const queued = score(url, images[1]);
    await until('one image waits', async () => (await metric(url, 'transformaly_queue_images')) === 1);
    const form = new FormData();
    for (const image of images.slice(0, 3)) form.append('image', new Blob([image.bytes], { type: image.type }), image.name);
    const refused = await fetch(`${url}/v1/score`, { method: 'POST', body: form });
    expect(refused.status).toBe(503);
    expect(await metric(url, 'transformaly_queue_images')).toBe(1);
    gate.open();
    await expectOffline(await first, images[0]);
    await expectOffline(await queued, images[1]);
    expect(await metric(url, 'transformaly_images_scored_total')).toBe(2);
  });
});

describe('the per-request timeout', () => {
  it('answers 503 when a request waits past timeoutMs, withdraws its image from the queue, and keeps serving', async () => {
    const { url, gate } = await start({ batchSize: 1, batchWaitMs: 0, timeoutMs: 400 });
    gate.close();
    const passesBefore = gate.entered();
    const first = score(url, images[0]);
    await until('the first image is in a pass', () => gate.entered() === passesBefore + 1);
    const waiting = await score(url, images[1]);
    expect(waiting.status).toBe(503);
    expect(waiting.headers.get('retry-after')).not.toBeNull();
    expect(((await waiting.json()) as { message: string }).message).toBe('no answer within the timeout of 400 ms (the service is busy)');
    // The image in the held pass timed out too; the waiting one left the queue and never reached a pass.
    expect((await first).status).toBe(503);
    expect(await metric(url, 'transformaly_queue_images')).toBe(0);
    expect(await metric(url, 'transformaly_rejected_images_total{reason="timeout"}')).toBe(2);
    gate.open();
    await expectOffline(await score(url, images[2]), images[2]);
    expect(gate.entered()).toBe(passesBefore + 2);
  });
});

describe('a client that leaves', () => {
  it('frees its place in the queue', async () => {
    const { url, gate } = await start({ batchSize: 1, batchWaitMs: 0 });
    gate.close();
    const passesBefore = gate.entered();
    const first = score(url, images[0]);
    await until('the first image is in a pass', () => gate.entered() === passesBefore + 1);
    const leaving = new AbortController();
    const left = score(url, images[1], leaving.signal).catch((error: Error) => error);
    await until('one image waits', async () => (await metric(url, 'transformaly_queue_images')) === 1);
    leaving.abort();
    expect(await left).toBeInstanceOf(Error);
    await until('the queue is empty', async () => (await metric(url, 'transformaly_queue_images')) === 0);
    expect(await metric(url, 'transformaly_rejected_images_total{reason="client_gone"}')).toBe(1);
    gate.open();
    await expectOffline(await first, images[0]);
    expect(gate.entered()).toBe(passesBefore + 1);
  });
});

describe('before the detector is ready', () => {
  it('answers /healthz, and 503 on /readyz and /v1/score until it is loaded and warmed', async () => {
    const app = createServer({ detector: detectorDir });
    cleanup.push(() => app.close());
    expect((await app.inject({ url: '/healthz' })).statusCode).toBe(200);
    const readyz = await app.inject({ url: '/readyz' });
    expect(readyz.statusCode).toBe(503);
    expect(readyz.json()).toEqual({ status: 'loading' });
    const early = await app.inject({ method: 'POST', url: '/v1/score', payload: images[0].bytes, headers: { 'content-type': images[0].type } });
    expect(early.statusCode).toBe(503);
    expect(early.headers['retry-after']).toBe('1');
    expect(early.json().message).toBe('the detector is still loading');
    await app.detectorReady;
    expect((await app.inject({ url: '/readyz' })).json()).toEqual({ status: 'ready' });
    const later = await app.inject({ method: 'POST', url: '/v1/score', payload: images[0].bytes, headers: { 'content-type': images[0].type } });
    expect(later.json().images[0].scores.combined).toBe(offline.get(images[0].name)!.combined);
  });

  it('a detector that cannot be opened: /readyz and /v1/score say why, /healthz still answers', async () => {
    const app = createServer({ detector: `${detectorDir}-missing` });
    cleanup.push(() => app.close());
    await expect(app.detectorReady).rejects.toThrow(/-missing/);
    const readyz = await app.inject({ url: '/readyz' });
    expect(readyz.statusCode).toBe(503);
    expect(readyz.json().status).toBe('unavailable');
    expect(readyz.json().message).toContain(`${detectorDir}-missing`);
    const scored = await app.inject({ method: 'POST', url: '/v1/score', payload: images[0].bytes, headers: { 'content-type': images[0].type } });
    expect(scored.statusCode).toBe(503);
    expect(scored.json().message).toMatch(/^the detector is not available: /);
    expect((await app.inject({ url: '/healthz' })).statusCode).toBe(200);
  });

  it('settings that contradict each other are refused with the reason', async () => {
    const app = createServer({ detector: detectorDir, maxQueue: 4, maxFiles: 5 });
    cleanup.push(() => app.close());
    await expect(app.detectorReady).rejects.toThrow('maxFiles (5) must be at most maxQueue (4): a request must fit in the queue');
    expect(() => createServer({ detector: detectorDir, timeoutMs: 0 })).toThrow('createServer: timeoutMs must be a positive integer, got 0');
  });
});

describe('closing', () => {
  // The time limit is a hang check: keep-alive connections left open after their answers held close() for the
  // server's keepAliveTimeout (72 s).
  it('answers the accepted requests at once, without waiting out batchWaitMs, then stops', { timeout: 30_000 }, async () => {
    const { url, app } = await start({ batchSize: 8, batchWaitMs: 600_000 });
    const pending = images.map((image) => score(url, image));
    await until('every image waits', async () => (await metric(url, 'transformaly_queue_images')) === images.length);
    await app.close();
    for (const [i, response] of (await Promise.all(pending)).entries()) await expectOffline(response, images[i]);
    await expect(score(url, images[0])).rejects.toThrow();
  });
});
