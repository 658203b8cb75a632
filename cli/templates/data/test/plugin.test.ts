// The conformance kit checks every rule of the ImageSource contract (classes, listings with distinct ids, listings
// that repeat, images decoded to RGB in [0, 1], ...) on a listing of small PNG files written here; the tests below
// check the listing's meaning and its errors.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { crc32, deflateSync } from 'node:zlib';
import { after, test } from 'node:test';
import { disposeKit, imageSourceChecks, registerChecks } from '@transformaly/testing';
import plugin, { CsvListingSource } from '../src/index.js';

/** An 8-bit RGB PNG of `width` x `height` pixels, each [r, g, b]. */
function png(width: number, height: number, pixel: (x: number, y: number) => [number, number, number]): Buffer {
  const chunk = (type: string, data: Buffer) => {
    const body = Buffer.concat([Buffer.from(type, 'latin1'), data]);
    const out = Buffer.alloc(12 + data.length);
    out.writeUInt32BE(data.length, 0);
    body.copy(out, 4);
    out.writeUInt32BE(crc32(body), 8 + data.length);
    return out;
  };
  const header = Buffer.alloc(13);
  header.writeUInt32BE(width, 0);
  header.writeUInt32BE(height, 4);
  header.set([8, 2, 0, 0, 0], 8); // 8 bits per sample, RGB, deflate, no filter method, no interlace
  const rows = Buffer.alloc(height * (1 + 3 * width)); // each row: filter type 0, then the pixels
  for (let y = 0; y < height; y++) for (let x = 0; x < width; x++) rows.set(pixel(x, y), y * (1 + 3 * width) + 1 + 3 * x);
  return Buffer.concat([Buffer.from([137, 80, 78, 71, 13, 10, 26, 10]), chunk('IHDR', header), chunk('IDAT', deflateSync(rows)), chunk('IEND', Buffer.alloc(0))]);
}

const folder = mkdtempSync(join(tmpdir(), 'csv-listing-test-'));
after(async () => {
  await disposeKit();
  rmSync(folder, { recursive: true, force: true });
});
const listing = join(folder, 'listing.csv');
const lines = ['split,label,path'];
for (const [split, label, shade] of [['train', 'cat', 10], ['train', 'cat', 20], ['train', 'dog', 200], ['test', 'cat', 30], ['test', 'fox', 250]] as const) {
  const file = `${split}-${label}-${shade}.png`;
  writeFileSync(join(folder, file), png(3, 2, (x, y) => [shade, 10 * x, 100 * y]));
  lines.push(`${split},${label},${file}`);
}
writeFileSync(listing, `${lines.join('\n')}\n`);

registerChecks(imageSourceChecks({ plugin, options: { listing } }), test, 'conformance: ');

test('lists the rows of each split in order, with the train labels as classes, and decodes the pixels', async () => {
  const source = new CsvListingSource({ listing });
  assert.deepEqual(await source.classes(), ['cat', 'dog']);
  const train = await source.items('train');
  assert.deepEqual(train.map((item) => item.label), ['cat', 'cat', 'dog']);
  assert.equal(train[0].id, join(folder, 'train-cat-10.png'));
  // A test label the train split lacks (fox) is a novel class: anomalous in every protocol case.
  assert.deepEqual((await source.items('test')).map((item) => item.label), ['cat', 'fox']);
  const image = await train[2].load();
  assert.deepEqual([image.width, image.height], [3, 2]);
  // Pixel (x 1, y 1) was written as [200, 10, 100]: HWC, divided by 255.
  assert.deepEqual([...image.data.subarray(3 * (1 * 3 + 1), 3 * (1 * 3 + 1) + 3)], [200 / 255, 10 / 255, 100 / 255].map(Math.fround));
});

test('names the file and the line of a malformed row', async () => {
  const bad = join(folder, 'bad.csv');
  writeFileSync(bad, 'split,label,path\ntrain,cat,a.png\nvalidation,cat,b.png\n');
  await assert.rejects(new CsvListingSource({ listing: bad }).items('train'), { message: `${bad}:3: split "validation" is neither train nor test` });
});
