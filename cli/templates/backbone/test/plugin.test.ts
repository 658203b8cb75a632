// The conformance kit checks every rule of the Backbone contract (features and taps of the right shapes, each block's
// output the next one's input, batch independence, timm-named block weights, ...) on a small ViT with random weights,
// written the way a training wrapper saves them (under `model.`); the test below checks the features themselves.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { createRng, SilentProgress, writeSafetensors } from '@transformaly/core';
import { randomVitWeights, ViTBackbone, type VitArch } from '@transformaly/backbone-vit';
import { backboneChecks, disposeKit, kitRuntime, registerChecks } from '@transformaly/testing';
import plugin, { loadBackbone } from '../src/index.js';

const arch: VitArch = { imageSize: [32, 32], patchSize: 8, width: 24, depth: 2, heads: 2, mlpDim: 48, layerNormEps: 1e-6, qkvBias: true };
const weights = randomVitWeights(arch, 7);
const folder = mkdtempSync(join(tmpdir(), 'backbone-test-'));
const file = join(folder, 'vit.safetensors');

before(() => writeSafetensors(file, Object.fromEntries([...weights].map(([name, t]) => [`model.${name}`, t]))));
after(async () => {
  await disposeKit();
  rmSync(folder, { recursive: true, force: true });
});

registerChecks(backboneChecks({ plugin, options: { weights: file, heads: 2, prefix: 'model.' } }), test, 'conformance: ');

test('reads the architecture from the file and computes what a ViT built from the same weights computes', async () => {
  const ctx = { slot: 'backbone', progress: new SilentProgress(), runtime: kitRuntime() };
  const loaded = await loadBackbone({ weights: file, heads: 2, prefix: 'model.' }, ctx);
  const preprocess = { size: arch.imageSize, resample: 'bicubic' as const, mean: [0.5, 0.5, 0.5] as [number, number, number], std: [0.5, 0.5, 0.5] as [number, number, number] };
  const reference = await ViTBackbone.create(arch, weights, { id: 'reference', sha256: '', untrained: true, preprocess }, { runtime: kitRuntime() });
  try {
    const { id, sha256, ...info } = loaded.info;
    assert.deepEqual(info, { ...arch, tokens: 17, untrained: false, preprocess });
    assert.equal(id, file);
    assert.match(sha256, /^[0-9a-f]{64}$/);
    const rng = createRng(1);
    const pixels = { dims: [2, 3, 32, 32], data: Float32Array.from({ length: 2 * 3 * 32 * 32 }, () => rng.normal()) };
    assert.deepEqual((await loaded.forward(pixels)).features, (await reference.forward(pixels)).features);
  } finally {
    await loaded.dispose();
    await reference.dispose();
  }
});
