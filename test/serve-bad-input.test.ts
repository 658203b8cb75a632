// `transformaly serve`: every kind of bad input gets its status and a message saying what was wrong, nothing of a bad
// request is scored, and the service keeps answering good requests with the right scores.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createServer, type TransformalyServer } from '@transformaly/serve';
import { blackPng, tempDir } from './fixtures/data/images.js';
import { fitTinyDetector, offlineScores, writeTestImages, type OfflineScores, type TestImage } from './fixtures/serve.js';

const BODY_LIMIT = 64 * 1024;
const MAX_FILES = 3;
const tmp = tempDir('serve-bad');

let images: TestImage[] = [];
let offline: Map<string, OfflineScores>;
let app: TransformalyServer;
let url = '';
let bomb: Buffer;
let truncated: Buffer;
let large: Buffer;

beforeAll(async () => {
  const detectorDir = await fitTinyDetector();
  images = await writeTestImages(4);
  ({ scores: offline } = await offlineScores(detectorDir, images));
  blackPng(join(tmp.path, 'bomb.png'), 16000, 16000);
  bomb = readFileSync(join(tmp.path, 'bomb.png'));
  const png = await sharp({ create: { width: 64, height: 64, channels: 3, background: '#ff8800' } }).png().toBuffer();
  truncated = png.subarray(0, png.length - 40);
  // Noise does not compress: a PNG well over the body limit.
  const noise = Buffer.alloc(256 * 256 * 3);
  let state = 7;
  for (let i = 0; i < noise.length; i++) noise[i] = (state = (Math.imul(state, 1103515245) + 12345) >>> 0) >>> 24;
  large = await sharp(noise, { raw: { width: 256, height: 256, channels: 3 } }).png().toBuffer();
  expect(large.length).toBeGreaterThan(BODY_LIMIT);
  app = createServer({ detector: detectorDir, bodyLimit: BODY_LIMIT, maxFiles: MAX_FILES, maxPixels: 1_000_000 });
  await app.listen({ host: '127.0.0.1', port: 0 });
  await app.detectorReady;
  url = `http://127.0.0.1:${(app.server.address() as { port: number }).port}`;
});

afterAll(async () => {
  await app?.close();
  tmp.remove();
});

interface ErrorBody {
  statusCode: number;
  error: string;
  message: string;
}

async function post(body: RequestInit['body'], headers: Record<string, string> = {}): Promise<{ status: number; body: ErrorBody }> {
  const response = await fetch(`${url}/v1/score`, { method: 'POST', body, headers });
  return { status: response.status, body: (await response.json()) as ErrorBody };
}

/** The first image's answer of a 200 response. */
async function firstAnswer(response: Response): Promise<{ format: string; scores: { combined: number } }> {
  expect(response.status).toBe(200);
  return ((await response.json()) as { images: { format: string; scores: { combined: number } }[] }).images[0];
}

function form(files: { bytes: Uint8Array; type: string; name: string }[], fields: Record<string, string> = {}): FormData {
  const data = new FormData();
  for (const [key, value] of Object.entries(fields)) data.append(key, value);
  for (const file of files) data.append('image', new Blob([file.bytes], { type: file.type }), file.name);
  return data;
}

async function scoredSoFar(): Promise<number> {
  const text = await (await fetch(`${url}/metrics`)).text();
  return Number(/^transformaly_images_scored_total (\d+)$/m.exec(text)?.[1] ?? 0);
}

/** The service still answers a good image with its offline scores. */
async function stillServes(): Promise<void> {
  const image = images[1];
  const answer = await firstAnswer(await fetch(`${url}/v1/score`, { method: 'POST', body: image.bytes, headers: { 'content-type': image.type } }));
  expect(answer.scores.combined).toBe(offline.get(image.name)!.combined);
}

describe('400 for what is not a whole image within the limits', () => {
  it('a body that is not an image, with an image Content-Type', async () => {
    const { status, body } = await post('this is not an image', { 'content-type': 'image/png' });
    expect(status).toBe(400);
    expect(body).toEqual({
      statusCode: 400,
      error: 'Bad Request',
      message: 'the request body: not a PNG, JPEG, WebP or TIFF image (its first bytes are 74 68 69 73 20 69 73 20)',
    });
  });

  it('a truncated PNG', async () => {
    const { status, body } = await post(truncated, { 'content-type': 'image/png' });
    expect(status).toBe(400);
    // libvips' reason.
    expect(body.message).toMatch(/^the request body: cannot decode this PNG image: pngload_buffer: .+/);
  });

  it('a decompression bomb: a 31 KB PNG declaring 16000 x 16000 pixels, refused from its header', async () => {
    expect(bomb.length).toBeLessThan(BODY_LIMIT);
    const { status, body } = await post(bomb, { 'content-type': 'application/octet-stream' });
    expect(status).toBe(400);
    expect(body.message).toBe(
      'the request body: cannot decode this PNG image: 16000 x 16000 = 256 megapixels, more than the maxPixels limit of 1 megapixels per image, ' +
        'which bounds the memory decoding takes (raise it if this image is meant to be read)',
    );
  });

  it('an empty body', async () => {
    const { status, body } = await post(new Uint8Array(0), { 'content-type': 'image/jpeg' });
    expect(status).toBe(400);
    expect(body.message).toBe('the request body: empty; expected a PNG, JPEG, WebP or TIFF image');
  });

  it('no body at all', async () => {
    const { status, body } = await post(undefined);
    expect(status).toBe(400);
    expect(body.message).toMatch(/^no image: send one as the body \(Content-Type image\/png, image\/jpeg, image\/webp, image\/tiff\) or several as multipart\/form-data files$/);
  });

  it('a multipart request with one bad file among good ones: nothing of it is scored, and the message names the file', async () => {
    const before = await scoredSoFar();
    const { status, body } = await post(form([images[0], { bytes: truncated, type: 'image/png', name: 'cut.png' }, images[2]]));
    expect(status).toBe(400);
    expect(body.message).toMatch(/^cut\.png: cannot decode this PNG image: /);
    expect(await scoredSoFar()).toBe(before);
  });

  it('a multipart field that is not a file', async () => {
    const { status, body } = await post(form([images[0]], { note: 'hello' }));
    expect(status).toBe(400);
    expect(body.message).toBe('the multipart field "note" is not a file; send each image as a file part');
  });

  it('a multipart body without files', async () => {
    const { status, body } = await post(new FormData());
    expect(status).toBe(400);
    expect(body.message).toBe('the multipart body has no file; send each image as a file part');
  });

  it('a malformed multipart body', async () => {
    const { status, body } = await post('--xyz\r\nContent-Disposition: form-data; name="image"; filename="a.png"\r\nContent-Type: image/png\r\n\r\nabc', {
      'content-type': 'multipart/form-data; boundary=xyz',
    });
    expect(status).toBe(400);
    expect(body.message).toBe('malformed multipart body: Part terminated early due to unexpected end of multipart data');
  });
});

describe('413 past the size limits', () => {
  it('a raw body larger than bodyLimit', async () => {
    const { status, body } = await post(large, { 'content-type': 'image/png' });
    expect(status).toBe(413);
    expect(body).toEqual({ statusCode: 413, error: 'Payload Too Large', message: `the body is larger than the limit of ${BODY_LIMIT} bytes` });
  });

  it('a multipart file larger than bodyLimit', async () => {
    const { status, body } = await post(form([images[0], { bytes: large, type: 'image/png', name: 'large.png' }]));
    expect(status).toBe(413);
    expect(body.message).toBe(`a file is larger than the limit of ${BODY_LIMIT} bytes`);
  });

  it('more files than maxFiles', async () => {
    const { status, body } = await post(form([...images, images[0]].slice(0, MAX_FILES + 1)));
    expect(status).toBe(413);
    expect(body.message).toBe(`more than ${MAX_FILES} files in one request`);
  });
});

describe('415 for types the service does not decode', () => {
  it.each([
    ['text/plain', 'hello'],
    ['application/json', '{"image": "a.png"}'],
    ['image/gif', 'GIF89a'],
  ])('a %s body', async (type, content) => {
    const { status, body } = await post(content, { 'content-type': type });
    expect(status).toBe(415);
    expect(body.message).toBe(
      `unsupported Content-Type "${type}": send one image as image/png, image/jpeg, image/webp, image/tiff, application/octet-stream, or several as multipart/form-data files`,
    );
  });

  it('a multipart file of an unsupported type', async () => {
    const { status, body } = await post(form([images[0], { bytes: Buffer.from('GIF89a'), type: 'image/gif', name: 'anim.gif' }]));
    expect(status).toBe(415);
    expect(body.message).toBe('anim.gif: unsupported Content-Type "image/gif"; files must be image/png, image/jpeg, image/webp, image/tiff, application/octet-stream');
  });
});

describe('after all of that', () => {
  it('the service is up and scores good images right; only the good requests were scored', async () => {
    const before = await scoredSoFar();
    await stillServes();
    expect(await scoredSoFar()).toBe(before + 1);
    expect((await fetch(`${url}/readyz`)).status).toBe(200);
  });

  it('an image under another declared image type is scored as what it is', async () => {
    const png = images[0];
    const answer = await firstAnswer(await fetch(`${url}/v1/score`, { method: 'POST', body: png.bytes, headers: { 'content-type': 'image/jpeg' } }));
    expect(answer.format).toBe('png');
    expect(answer.scores.combined).toBe(offline.get(png.name)!.combined);
  });
});
