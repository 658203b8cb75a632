import { createHash } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm, unlink, writeFile, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  DetectorLoadError,
  readDetectorFolder as loadDetector,
  writeDetectorFolder as saveDetector,
  sha256File,
  type ArrayEntry,
  type DetectorToSave,
  type JsonObject,
  type StageState,
} from '@transformaly/core';

let root: string;
beforeEach(async () => {
  root = await mkdtemp(join(tmpdir(), 'transformaly-persistence-'));
});
afterEach(async () => {
  await rm(root, { recursive: true, force: true });
});

function bytes(data: ArrayEntry['data']): Uint8Array {
  return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
}

function awkwardFloat32(): Float32Array {
  const a = new Float32Array([0, -0, 1.5, -3.25e-42 /* denormal */, Infinity, -Infinity, NaN, 3.4028234663852886e38]);
  // A NaN with a non-default payload must survive bit for bit.
  new Uint32Array(a.buffer)[6] = 0x7fc12345;
  return a;
}

function awkwardFloat64(): Float64Array {
  const a = new Float64Array([Math.PI, -0, 5e-324, -Infinity, NaN, -1e308, 0.1, 2 ** 53 + 2]);
  new BigUint64Array(a.buffer)[4] = 0x7ff8dead_beef0001n;
  return a;
}

function detector(): DetectorToSave {
  const backing = new Float64Array([99, 1, 2, 3, 4, 5, 6, 99]);
  return {
    // An optional config field left undefined is simply absent after loading.
    config: { backbone: { use: 'vit', options: { id: 'random:1' } }, seed: 7, distiller: false, classes: ['T-shirt', 'Bag'], threshold: undefined } as unknown as JsonObject,
    packages: { '@transformaly/core': '0.1.0', '@transformaly/scorer-gaussian': '0.1.0' },
    plugins: {
      'scorers.pretrained': { name: '@transformaly/scorer-gaussian', version: '0.1.0', source: 'package', package: '@transformaly/scorer-gaussian' },
      combiner: { name: 'sum', version: '0.1.0', source: 'builtin' },
      distiller: { name: 'my-distiller', version: null, source: 'file', path: '/somewhere/distiller.ts' },
    },
    stages: {
      'scorer.pretrained': {
        meta: { kind: 'gaussian', dim: 4, eps: 1e-6, names: ['a', 'b'], nested: { ok: true, none: null } },
        arrays: {
          mean: { dims: [4], data: new Float64Array([1, -2, 3.5, 1e-300]) },
          precision: { dims: [2, 4], data: awkwardFloat64() },
          // A view into a larger buffer: only its own bytes may be written.
          view: { dims: [2, 3], data: backing.subarray(1, 7) },
        },
      },
      distiller: {
        meta: { blocks: [1, 5, 9] },
        arrays: {
          weights: { dims: [2, 2, 2], data: awkwardFloat32() },
          steps: { dims: [3], data: new Int32Array([-2147483648, 0, 2147483647]) },
          mask: { dims: [256], data: Uint8Array.from({ length: 256 }, (_, i) => i) },
          empty: { dims: [0, 3], data: new Float32Array(0) },
          scalar: { dims: [], data: new Float32Array([42]) },
        },
      },
      combiner: { meta: { combiner: 'sum', spaces: ['finetuned', 'pretrained'] }, arrays: {} },
    },
    extra: { note: 'fitted on Fashion-MNIST' },
  };
}

async function expectLoadError(dir: string, reason: string, message: RegExp): Promise<DetectorLoadError> {
  const error = await loadDetector(dir).then(
    () => null,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(DetectorLoadError);
  const e = error as DetectorLoadError;
  expect(e.reason).toBe(reason);
  expect(e.message).toContain(dir);
  expect(e.message).toMatch(message);
  return e;
}

describe('writeDetectorFolder / readDetectorFolder round trip', () => {
  it('preserves every array bit for bit, with its typed-array kind and dims, and the metadata', async () => {
    const dir = join(root, 'det');
    const original = detector();
    await saveDetector(dir, original);
    expect((await readdir(dir)).sort()).toEqual(['combiner.safetensors', 'distiller.safetensors', 'manifest.json', 'manifest.sha256', 'scorer.pretrained.safetensors']);

    const loaded = await loadDetector(dir);
    expect(Object.keys(loaded.stages).sort()).toEqual(Object.keys(original.stages).sort());
    for (const [name, stage] of Object.entries(original.stages)) {
      const got: StageState = loaded.stages[name];
      expect(got.meta).toEqual(stage.meta);
      expect(Object.keys(got.arrays).sort()).toEqual(Object.keys(stage.arrays).sort());
      for (const [arrayName, entry] of Object.entries(stage.arrays)) {
        const back = got.arrays[arrayName];
        expect(back.dims, `${name}/${arrayName} dims`).toEqual(entry.dims);
        expect(back.data.constructor, `${name}/${arrayName} kind`).toBe(entry.data.constructor);
        expect(Buffer.from(bytes(back.data)).equals(Buffer.from(bytes(entry.data))), `${name}/${arrayName} bytes`).toBe(true);
      }
    }
    const m = loaded.manifest;
    expect(m.format).toBe('transformaly-detector');
    expect(m.formatVersion).toBe(2);
    expect(new Date(m.createdAt).toString()).not.toBe('Invalid Date');
    expect(m.config).toEqual(original.config);
    expect('threshold' in m.config).toBe(false);
    expect(m.packages).toEqual(original.packages);
    expect(m.plugins).toEqual(original.plugins);
    // The manifest's own checksum, in sha256sum's format.
    expect(await readFile(join(dir, 'manifest.sha256'), 'utf8')).toBe(`${await sha256File(join(dir, 'manifest.json'))}  manifest.json\n`);
    expect(m.extra).toEqual(original.extra);
    expect(m.stages.distiller).toEqual({ file: 'distiller.safetensors', meta: { blocks: [1, 5, 9] } });
    for (const [file, digest] of Object.entries(m.checksums)) {
      expect(await sha256File(join(dir, file))).toBe(digest);
    }
  });

  it('sha256File streams the same digest as hashing in memory', async () => {
    const path = join(root, 'blob.bin');
    const data = Buffer.alloc(3 * 65536 + 17);
    for (let i = 0; i < data.length; i++) data[i] = (i * 31 + 7) & 0xff;
    await writeFile(path, data);
    expect(await sha256File(path)).toBe(createHash('sha256').update(data).digest('hex'));
  });
});

describe('atomic saving', () => {
  const leftovers = async () => (await readdir(root)).filter((n) => n.startsWith('.'));

  it('a save that fails while writing leaves no folder and no temporary folder', async () => {
    const dir = join(root, 'det');
    const broken = detector();
    // 5 elements declared, 4 given: the safetensors encoder fails inside the folder being filled.
    broken.stages.distiller.arrays.bad = { dims: [5], data: new Float32Array(4) };
    await expect(saveDetector(dir, broken)).rejects.toThrow(/dims \[5\] hold 5 elements but data has 4/);
    expect(await readdir(root)).toEqual([]);
  });

  it('saving over an existing detector replaces it whole; a failed save keeps the old one', async () => {
    const dir = join(root, 'det');
    await saveDetector(dir, detector());
    const second: DetectorToSave = {
      config: { seed: 8 },
      packages: { '@transformaly/core': '0.2.0' },
      plugins: {},
      stages: { only: { meta: { v: 2 }, arrays: { x: { dims: [2], data: new Float64Array([8, 9]) } } } },
    };
    await saveDetector(dir, second);
    expect((await readdir(dir)).sort()).toEqual(['manifest.json', 'manifest.sha256', 'only.safetensors']);
    const loaded = await loadDetector(dir);
    expect(loaded.manifest.config).toEqual({ seed: 8 });
    expect(Array.from(loaded.stages.only.arrays.x.data)).toEqual([8, 9]);
    expect(await leftovers()).toEqual([]);

    const broken = structuredClone(second);
    broken.stages.only.arrays.x = { dims: [3], data: new Float64Array([1]) };
    await expect(saveDetector(dir, broken)).rejects.toThrow(/hold 3 elements/);
    expect((await loadDetector(dir)).manifest.config).toEqual({ seed: 8 });
    expect(await leftovers()).toEqual([]);
  });

  it('never replaces a folder that holds anything but a detector, nor a file', async () => {
    const project = join(root, 'project');
    await mkdir(join(project, 'data'), { recursive: true });
    await writeFile(join(project, 'transformaly.config.ts'), 'export default {};\n');
    await writeFile(join(project, 'data', 'notes.txt'), 'keep me');
    await expect(saveDetector(project, detector())).rejects.toThrow(
      /project is not empty \(2 entries: data, transformaly\.config\.ts\) and is not a Transformaly detector; refusing to replace it/,
    );
    expect((await readdir(project)).sort()).toEqual(['data', 'transformaly.config.ts']);
    expect(await readFile(join(project, 'data', 'notes.txt'), 'utf8')).toBe('keep me');
    // A folder with a manifest of another tool is not a detector either.
    await writeFile(join(project, 'manifest.json'), JSON.stringify({ format: 'other' }));
    await expect(saveDetector(project, detector())).rejects.toThrow(/is not a Transformaly detector/);
    const file = join(root, 'a-file');
    await writeFile(file, 'x');
    await expect(saveDetector(file, detector())).rejects.toThrow(/a-file exists and is not a folder/);
    expect(await readFile(file, 'utf8')).toBe('x');
    // An empty folder is fine.
    await mkdir(join(root, 'empty'));
    await saveDetector(join(root, 'empty'), detector());
    expect((await loadDetector(join(root, 'empty'))).manifest.format).toBe('transformaly-detector');
  });

  it('rejects what JSON or a file name cannot hold before writing anything', async () => {
    const dir = join(root, 'det');
    const nan = detector();
    nan.stages.combiner.meta.scale = NaN;
    await expect(saveDetector(dir, nan)).rejects.toThrow(/stages\.combiner\.meta\.scale is NaN/);
    const typed = detector();
    (typed.config as Record<string, unknown>).weights = new Float32Array(2);
    await expect(saveDetector(dir, typed)).rejects.toThrow(/config\.weights is a Float32Array/);
    const holey = detector();
    (holey.config as Record<string, unknown>).list = [1, undefined];
    await expect(saveDetector(dir, holey)).rejects.toThrow(/config\.list\[1\] is undefined/);
    const badName = detector();
    badName.stages['../escape'] = { meta: {}, arrays: {} };
    await expect(saveDetector(dir, badName)).rejects.toThrow(/stage name "\.\.\/escape"/);
    const badKind = detector();
    badKind.stages.combiner.arrays.x = { dims: [2], data: new Int16Array(2) as unknown as Int32Array };
    await expect(saveDetector(dir, badKind)).rejects.toThrow(/stage "combiner" array "x" must be a Float32Array/);
    expect(await readdir(root)).toEqual([]);
  });
});

describe('readDetectorFolder refuses', () => {
  let dir: string;
  beforeEach(async () => {
    dir = join(root, 'det');
    await saveDetector(dir, detector());
  });
  const manifestPath = () => join(dir, 'manifest.json');
  /** Edits the manifest and, like a careful forger, its checksum too: what is left to catch is the content. */
  const editManifest = async (edit: (m: Record<string, any>) => void) => {
    const m = JSON.parse(await readFile(manifestPath(), 'utf8'));
    edit(m);
    const text = JSON.stringify(m);
    await writeFile(manifestPath(), text);
    await writeFile(join(dir, 'manifest.sha256'), `${createHash('sha256').update(text).digest('hex')}  manifest.json\n`);
  };

  it('an edited manifest (a threshold changed by hand), or one whose checksum file is missing', async () => {
    const text = await readFile(manifestPath(), 'utf8');
    const edited = text.replace('"eps": 0.000001', '"eps": 0.5');
    expect(edited).not.toBe(text);
    await writeFile(manifestPath(), edited);
    await expectLoadError(dir, 'corrupted', /manifest\.json: checksum mismatch .*the manifest was edited or damaged/);
    await writeFile(manifestPath(), text);
    expect((await loadDetector(dir)).manifest.stages['scorer.pretrained'].meta.eps).toBe(1e-6);
    await unlink(join(dir, 'manifest.sha256'));
    await expectLoadError(dir, 'corrupted', /manifest\.sha256: missing, so the manifest cannot be verified/);
    await writeFile(join(dir, 'manifest.sha256'), 'not a checksum\n');
    await expectLoadError(dir, 'corrupted', /manifest\.sha256: expected "<sha256>  manifest\.json"/);
  });

  it('a format 1 folder (no manifest checksum, plugins by path), saying to fit again', async () => {
    await editManifest((m) => {
      m.formatVersion = 1;
      delete m.plugins;
    });
    await expectLoadError(dir, 'older-format', /format version 1, which is no longer read: its manifest has no checksum.*Fit the detector again/);
  });

  it('a folder without manifest, or no folder at all', async () => {
    const empty = join(root, 'empty');
    await mkdir(empty);
    await expectLoadError(empty, 'not-a-detector', /manifest\.json: missing: this folder is not a Transformaly detector/);
    await expectLoadError(join(root, 'nowhere'), 'not-a-detector', /does not exist/);
  });

  it('a foreign manifest', async () => {
    await writeFile(manifestPath(), JSON.stringify({ format: 'some-other-tool', version: 3 }));
    await expectLoadError(dir, 'not-a-detector', /manifest\.json: format is "some-other-tool", not "transformaly-detector"/);
    await writeFile(manifestPath(), '[1, 2]');
    await expectLoadError(dir, 'not-a-detector', /not a JSON object/);
    await writeFile(manifestPath(), '{"format": "transformaly-detector",');
    await expectLoadError(dir, 'corrupted', /manifest\.json: not valid JSON/);
  });

  it('a corrupted safetensors byte, naming the file', async () => {
    const file = join(dir, 'distiller.safetensors');
    const data = await readFile(file);
    data[data.length - 3] ^= 0x01;
    await writeFile(file, data);
    const e = await expectLoadError(dir, 'corrupted', /distiller\.safetensors: checksum mismatch/);
    expect(e.file).toBe('distiller.safetensors');
  });

  it('a missing stage file', async () => {
    await unlink(join(dir, 'scorer.pretrained.safetensors'));
    await expectLoadError(dir, 'corrupted', /scorer\.pretrained\.safetensors: file is missing/);
  });

  it('a newer format version, saying which and to upgrade', async () => {
    await editManifest((m) => {
      m.formatVersion = 3;
      m.newField = { something: 'new' };
    });
    await expectLoadError(dir, 'newer-format', /format version 3.*reads format version 2; upgrade/);
  });

  it('a manifest that violates the schema, naming the field', async () => {
    await editManifest((m) => delete m.createdAt);
    await expectLoadError(dir, 'invalid-manifest', /manifest\.json: field "createdAt" is missing/);
    await saveDetector(dir, detector());
    await editManifest((m) => (m.stages.distiller.file = '../../etc/passwd'));
    await expectLoadError(dir, 'invalid-manifest', /field "stages\.distiller\.file" must match pattern/);
    await saveDetector(dir, detector());
    await editManifest((m) => (m.checksums['combiner.safetensors'] = 'abc'));
    await expectLoadError(dir, 'invalid-manifest', /field "checksums\.combiner\.safetensors" must match pattern/);
    await saveDetector(dir, detector());
    await editManifest((m) => (m.formatVersion = '2'));
    await expectLoadError(dir, 'invalid-manifest', /field "formatVersion" must be integer/);
    await saveDetector(dir, detector());
    await editManifest((m) => (m.unexpected = 1));
    await expectLoadError(dir, 'invalid-manifest', /field "unexpected" is not allowed/);
    await saveDetector(dir, detector());
    await editManifest((m) => (m.stages['../up'] = m.stages.combiner));
    await expectLoadError(dir, 'invalid-manifest', /field "stages\.\.\.\/up" is not a valid name/);
    await saveDetector(dir, detector());
    await editManifest((m) => delete m.checksums['combiner.safetensors']);
    await expectLoadError(dir, 'invalid-manifest', /stage "combiner" file "combiner\.safetensors" has no checksum/);
    await saveDetector(dir, detector());
    await editManifest((m) => (m.plugins.combiner.package = '../../evil.js'));
    await expectLoadError(dir, 'invalid-manifest', /field "plugins\.combiner\.package" must match pattern/);
    await saveDetector(dir, detector());
    await editManifest((m) => (m.plugins.combiner.source = 'url'));
    await expectLoadError(dir, 'invalid-manifest', /field "plugins\.combiner\.source" must be equal to one of the allowed values/);
  });
});
