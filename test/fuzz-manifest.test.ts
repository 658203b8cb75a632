// Fuzzing the detector manifest reader through the public loader: seeded byte and JSON-field mutations of a saved
// detector's manifest.json, with manifest.sha256 rewritten to match (as a forger would), so that what is left to
// refuse them is the reader itself. Each load must either refuse with a DetectorLoadError that names the folder and the
// file at fault, or return a detector that is exactly what the (mutated) manifest and the untouched stage files
// say: never a crash of another kind, a hang, or a value that neither the manifest nor a file holds.
import { createHash } from 'node:crypto';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DetectorLoadError, readDetectorFolder, readSafetensors, writeDetectorFolder, type ArrayEntry } from '@transformaly/core';
import { mutateBytes, mutateJson, random } from './fixtures/fuzz.js';

const work = mkdtempSync(join(tmpdir(), 'transformaly-fuzz-manifest-'));
const original = join(work, 'original');
afterAll(() => rmSync(work, { recursive: true, force: true }));

beforeAll(async () => {
  await writeDetectorFolder(original, {
    config: { seed: 3, scorers: { pretrained: { use: 'gaussian', options: { whiten: { varianceFraction: 0.9 } } } }, classes: ['Bag'] },
    packages: { '@transformaly/core': '0.1.0', '@transformaly/scorer-gaussian': '0.1.0' },
    plugins: {
      'scorers.pretrained': { name: '@transformaly/scorer-gaussian', version: '0.1.0', source: 'package', package: '@transformaly/scorer-gaussian' },
      combiner: { name: 'sum', version: '0.1.0', source: 'builtin' },
    },
    stages: {
      'scorer.pretrained': { meta: { dim: 2, threshold: -12.5 }, arrays: { mean: { dims: [2], data: Float64Array.from([1, -2]) } } },
      combiner: { meta: { kind: 'sum' }, arrays: {} },
      distiller: { meta: { blocks: [1, 2] }, arrays: { w: { dims: [2, 2], data: Float32Array.from([1, 2, 3, 4]) } } },
    },
  });
});

const REASONS = ['not-a-detector', 'corrupted', 'newer-format', 'older-format', 'invalid-manifest'];
// A copy of the detector whose manifest.json each case replaces (loading never changes the stage files).
const dir = join(work, 'mutated');
beforeAll(() => cpSync(original, dir, { recursive: true }));

/** Gives the detector `manifest` as its manifest.json, loads it, and judges the outcome. */
async function check(manifest: Uint8Array, what: string, failures: string[]): Promise<'loaded' | 'refused'> {
  writeFileSync(join(dir, 'manifest.json'), manifest);
  writeFileSync(join(dir, 'manifest.sha256'), `${createHash('sha256').update(manifest).digest('hex')}  manifest.json\n`);
  const fail = (why: string) => failures.push(`${what}: ${why}`);
  let loaded: Awaited<ReturnType<typeof readDetectorFolder>>;
  try {
    loaded = await readDetectorFolder(dir);
  } catch (error) {
    if (!(error instanceof DetectorLoadError)) fail(`threw ${String(error)}, not a DetectorLoadError`);
    else if (!REASONS.includes(error.reason) || error.dir !== dir || !error.file || !error.message.startsWith(`cannot load detector ${dir}: ${error.file}: `)) {
      fail(`an error that does not name the folder and file: ${error.message}`);
    }
    return 'refused';
  }
  // Loaded: it must be what the manifest says, with each stage's arrays read from the file the manifest names.
  const said = JSON.parse(new TextDecoder().decode(manifest));
  if (JSON.stringify(loaded.manifest) !== JSON.stringify(said)) fail('the loaded manifest differs from the file');
  if (JSON.stringify(Object.keys(loaded.stages)) !== JSON.stringify(Object.keys(said.stages))) fail('stages differ from the manifest');
  for (const [name, stage] of Object.entries(loaded.stages)) {
    if (JSON.stringify(stage.meta) !== JSON.stringify(said.stages[name].meta)) fail(`stage ${name}: meta differs from the manifest`);
    const file = (await readSafetensors(join(original, said.stages[name].file))).arrays;
    const same = (a: ArrayEntry, b: ArrayEntry) =>
      JSON.stringify(a.dims) === JSON.stringify(b.dims) && a.data.constructor === b.data.constructor && Array.from(a.data).every((v, i) => Object.is(v, b.data[i]));
    if (Object.keys(file).length !== Object.keys(stage.arrays).length || !Object.entries(file).every(([k, v]) => stage.arrays[k] && same(stage.arrays[k], v))) {
      fail(`stage ${name}: arrays differ from ${said.stages[name].file}`);
    }
  }
  return 'loaded';
}

describe('fuzzing the detector manifest reader', () => {
  it('the unmutated detector loads', async () => {
    const failures: string[] = [];
    expect(await check(readFileSync(join(original, 'manifest.json')), 'unmutated', failures)).toBe('loaded');
    expect(failures).toEqual([]);
  });

  it('byte mutations: a named refusal, or exactly what the files say (seeded, 200 cases)', async () => {
    const bytes = readFileSync(join(original, 'manifest.json'));
    const rng = random(20_240_611);
    const failures: string[] = [];
    const outcomes = { loaded: 0, refused: 0 };
    for (let i = 0; i < 200; i++) {
      const mutated = mutateBytes(bytes, rng);
      outcomes[await check(mutated.bytes, `case ${i} (${mutated.what})`, failures)]++;
    }
    expect(failures).toEqual([]);
    expect(outcomes.refused).toBeGreaterThan(100);
  });

  it('field mutations: a named refusal, or exactly what the files say (seeded, 300 cases)', async () => {
    const manifest = JSON.parse(readFileSync(join(original, 'manifest.json'), 'utf8'));
    const rng = random(7_331);
    const failures: string[] = [];
    const outcomes = { loaded: 0, refused: 0 };
    for (let i = 0; i < 300; i++) {
      const mutated = mutateJson(manifest, rng);
      outcomes[await check(new TextEncoder().encode(JSON.stringify(mutated.document)), `case ${i} (${mutated.what})`, failures)]++;
    }
    expect(failures).toEqual([]);
    expect(outcomes.refused).toBeGreaterThan(100);
  });
});
