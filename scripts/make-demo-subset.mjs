#!/usr/bin/env node
// Writes demo/fashion-mnist/: a small, fixed subset of Fashion-MNIST (the first N images of each class, in the
// original order) as gzipped IDX files, so that the default config runs without downloading a data set.
// Source: Debian's dataset-fashion-mnist. Rerun: node scripts/make-demo-subset.mjs [trainPerClass] [testPerClass]
import { readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import { gunzipSync, gzipSync } from 'node:zlib';
import { join } from 'node:path';

const src = '/usr/share/datasets/fashion-mnist';
const out = new URL('../demo/fashion-mnist/', import.meta.url).pathname;
const trainPerClass = Number(process.argv[2] ?? 100);
const testPerClass = Number(process.argv[3] ?? 20);

function subset(prefix, perClass) {
  const images = gunzipSync(readFileSync(join(src, `${prefix}-images-idx3-ubyte.gz`)));
  const labels = gunzipSync(readFileSync(join(src, `${prefix}-labels-idx1-ubyte.gz`)));
  const count = labels.readUInt32BE(4);
  const taken = new Array(10).fill(0);
  const chosen = [];
  for (let i = 0; i < count; i++) {
    const label = labels[8 + i];
    if (taken[label] < perClass) {
      taken[label]++;
      chosen.push(i);
    }
  }
  const imageOut = Buffer.alloc(16 + chosen.length * 784);
  imageOut.writeUInt32BE(0x00000803, 0);
  imageOut.writeUInt32BE(chosen.length, 4);
  imageOut.writeUInt32BE(28, 8);
  imageOut.writeUInt32BE(28, 12);
  const labelOut = Buffer.alloc(8 + chosen.length);
  labelOut.writeUInt32BE(0x00000801, 0);
  labelOut.writeUInt32BE(chosen.length, 4);
  chosen.forEach((i, k) => {
    images.copy(imageOut, 16 + k * 784, 16 + i * 784, 16 + (i + 1) * 784);
    labelOut[8 + k] = labels[8 + i];
  });
  // mtime 0 in the gzip header keeps the files byte-identical across reruns.
  writeFileSync(join(out, `${prefix}-images-idx3-ubyte.gz`), gzipSync(imageOut, { level: 9 }));
  writeFileSync(join(out, `${prefix}-labels-idx1-ubyte.gz`), gzipSync(labelOut, { level: 9 }));
  return chosen.length;
}

mkdirSync(out, { recursive: true });
console.log(`train: ${subset('train', trainPerClass)} images, test: ${subset('t10k', testPerClass)} images -> ${out}`);
