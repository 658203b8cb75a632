// The short load test of `transformaly serve` (the 30 s one with the real ViT-Ti is in `npm run bench -- serve`):
// autocannon keeps 8 connections busy for a few seconds against 127.0.0.1, each request an image in turn; every
// answer must be 200 and carry the offline scores of the image that request sent.
import autocannon from 'autocannon';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createServer, type TransformalyServer } from '@transformaly/serve';
import { fitTinyDetector, offlineScores, writeTestImages, type OfflineScores, type TestImage } from './fixtures/serve.js';

let images: TestImage[] = [];
let offline: Map<string, OfflineScores>;
let app: TransformalyServer;
let url = '';

beforeAll(async () => {
  const detectorDir = await fitTinyDetector();
  images = await writeTestImages(12);
  ({ scores: offline } = await offlineScores(detectorDir, images));
  app = createServer({ detector: detectorDir });
  await app.listen({ host: '127.0.0.1', port: 0 });
  await app.detectorReady;
  url = `http://127.0.0.1:${(app.server.address() as { port: number }).port}`;
});

afterAll(async () => {
  await app?.close();
});

describe('under load', () => {
  it('8 concurrent clients for 3 s: no error, and every answer is the offline result of its own image', async () => {
    let next = 0;
    let checked = 0;
    const wrong: string[] = [];
    const result = await autocannon({
      url: `${url}/v1/score`,
      connections: 8,
      duration: 3,
      requests: [
        {
          method: 'POST',
          setupRequest: (request, context) => {
            const image = images[next++ % images.length];
            (context as { image?: TestImage }).image = image;
            return { ...request, body: image.bytes, headers: { 'content-type': image.type } };
          },
          onResponse: (status, body, context) => {
            const image = (context as { image: TestImage }).image;
            checked++;
            if (status !== 200) return void wrong.push(`${image.name}: status ${status} ${body}`);
            const [answer] = JSON.parse(body).images;
            const expected = offline.get(image.name)!;
            if (answer.scores.combined !== expected.combined || answer.scores.finetuned !== expected.finetuned || answer.anomalous !== expected.anomalous) {
              wrong.push(`${image.name}: got ${JSON.stringify(answer.scores)}, offline ${JSON.stringify(expected)}`);
            }
          },
        },
      ],
    });
    expect(wrong).toEqual([]);
    expect(result.errors).toBe(0);
    expect(result.timeouts).toBe(0);
    expect(result.non2xx).toBe(0);
    expect(result['2xx']).toBeGreaterThan(0);
    expect(checked).toBe(result['2xx']);
    // Passes mixed requests: more images than passes.
    const metrics = await (await fetch(`${url}/metrics`)).text();
    const value = (name: string) => Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(metrics)![1]);
    expect(value('transformaly_batch_images_sum')).toBeGreaterThan(value('transformaly_batch_images_count'));
  });
});
