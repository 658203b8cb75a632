#!/usr/bin/env node
// How far an exported detector's scores are from the detector's own, on real images: scores the files with the
// saved detector (as `transformaly score` does) and with the exported model in onnxruntime-node (float32 NCHW input,
// the project's decoding and preprocessing), and prints the largest differences per output.
//
//   node scripts/export-parity.mjs --detector DIR --model detector.onnx IMAGE_OR_FOLDER...
//
// Run after `npm run build`. The parity tests (test/export-onnx.test.ts) check the same on a tiny random backbone.
import { readdir, stat } from 'node:fs/promises';
import { extname, join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import * as ort from 'onnxruntime-node';
import { createPreprocessor, decodeImage, openDetector } from '@transformaly/core';

const { values, positionals } = parseArgs({ options: { detector: { type: 'string' }, model: { type: 'string' } }, allowPositionals: true });
if (!values.detector || !values.model || positionals.length === 0) {
  console.error('usage: node scripts/export-parity.mjs --detector DIR --model FILE.onnx IMAGE_OR_FOLDER...');
  process.exit(2);
}

const IMAGES = new Set(['.png', '.jpg', '.jpeg', '.webp', '.tif', '.tiff']);
async function files(path) {
  if (!(await stat(path)).isDirectory()) return [resolve(path)];
  const out = [];
  for (const entry of (await readdir(path)).sort()) {
    const full = join(path, entry);
    if ((await stat(full)).isDirectory()) out.push(...(await files(full)));
    else if (IMAGES.has(extname(entry).toLowerCase())) out.push(resolve(full));
  }
  return out;
}
const paths = (await Promise.all(positionals.map(files))).flat();

const opened = await openDetector(values.detector);
const session = await ort.InferenceSession.create(values.model);
try {
  const { detector } = opened;
  const saved = await detector.score(paths.map((id) => ({ id, label: '', load: () => decodeImage(id) })));
  const preprocessor = createPreprocessor(detector.parts.backbone.info.preprocess);
  const exported = { pretrained: [], finetuned: [], combined: [], anomalous: [] };
  for (let i = 0; i < paths.length; i += 16) {
    const pixels = await preprocessor.run(await Promise.all(paths.slice(i, i + 16).map((p) => decodeImage(p))));
    const out = await session.run({ pixels: new ort.Tensor('float32', pixels.data, pixels.dims) });
    for (const [name, t] of Object.entries(out)) exported[name].push(...Array.from(t.data, Number));
  }
  console.log(`${paths.length} images, detector ${values.detector}, model ${values.model} (onnxruntime-node ${ort.env.versions.common})`);
  for (const space of ['pretrained', 'finetuned', 'combined']) {
    const reference = saved[space];
    if (!reference) continue;
    let perImage = 0;
    let absolute = 0;
    let scale = 0;
    reference.forEach((r, i) => {
      const d = Math.abs(exported[space][i] - r);
      absolute = Math.max(absolute, d);
      scale = Math.max(scale, Math.abs(r));
      perImage = Math.max(perImage, d / Math.abs(r));
    });
    console.log(`  ${space.padEnd(10)} max |difference| ${absolute.toExponential(2)}, relative to the largest score ${(absolute / scale).toExponential(2)}, largest per image ${perImage.toExponential(2)}`);
  }
  const disagree = saved.anomalous.filter((a, i) => a !== Boolean(exported.anomalous[i])).length;
  console.log(`  decisions  ${paths.length - disagree} of ${paths.length} equal`);
} finally {
  await session.release();
  await opened.dispose();
}
