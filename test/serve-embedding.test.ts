// Serve.md's "In code" examples as a program runs them: createServer with its own port, and inside an existing Node
// HTTP server through Fastify's `routing`.
import http from 'node:http';
import { expect, it } from 'vitest';
import { createServer } from '@transformaly/serve';
import { fitTinyDetector, offlineScores, writeTestImages } from './fixtures/serve.js';

it('createServer listens on its own, and serves a path of an existing HTTP server', async () => {
  const detectorDir = await fitTinyDetector();
  const images = await writeTestImages(2);
  const { scores } = await offlineScores(detectorDir, images);
  const combined = async (response: Response) => {
    expect(response.status).toBe(200);
    return ((await response.json()) as { images: { scores: { combined: number } }[] }).images[0].scores.combined;
  };

  const app = createServer({ detector: detectorDir, batchWaitMs: 5, logger: { level: 'silent' } });
  await app.listen({ host: '127.0.0.1', port: 0 });
  await app.detectorReady;
  const own = `http://127.0.0.1:${(app.server.address() as { port: number }).port}`;
  const post = (base: string) => fetch(`${base}/v1/score`, { method: 'POST', body: images[0].bytes, headers: { 'content-type': images[0].type } });
  expect(await combined(await post(own))).toBe(scores.get(images[0].name)!.combined);
  await app.close();

  const scoring = createServer({ detector: detectorDir });
  await scoring.ready();
  await scoring.detectorReady;
  const existing = http.createServer((req, res) =>
    req.url?.startsWith('/v1/') || req.url === '/metrics' ? scoring.routing(req, res) : res.end('the existing app'),
  );
  await new Promise<void>((resolve) => existing.listen(0, '127.0.0.1', resolve));
  const base = `http://127.0.0.1:${(existing.address() as { port: number }).port}`;
  try {
    expect(await (await fetch(`${base}/elsewhere`)).text()).toBe('the existing app');
    expect(await combined(await post(base))).toBe(scores.get(images[0].name)!.combined);
    expect(await (await fetch(`${base}/metrics`)).text()).toMatch(/^transformaly_images_scored_total 1$/m);
  } finally {
    await new Promise((resolve) => existing.close(resolve));
    await scoring.close();
  }
});
