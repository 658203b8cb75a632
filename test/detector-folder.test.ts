// A detector folder is data: `openDetector` rebuilds a detector from it without a config file and without importing
// any file it names; plugins come from the core, from installed packages, or from the caller, by recorded name.
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ContainerModule } from 'inversify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  createPipeline,
  DetectorLoadError,
  loadPlugin,
  openDetector,
  TOKENS,
  type DensityScorer,
  type ImageItem,
  type Pipeline,
  type ProgressReporter,
  type TransformalyConfig,
  type TransformalyPlugin,
} from '@transformaly/core';
import { MARKER_PLUGIN_NAME, MARKER_PLUGIN_VERSION, writeMarkerPlugin } from './fixtures/marker-plugin.js';
import { fitAndSave, NegativeNormScorer, type SavedDetector } from './fixtures/saved-detector.js';

const repo = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const work = mkdtempSync(join(tmpdir(), 'transformaly-detector-folder-'));
const tinyVit = { random: { seed: 3, arch: { imageSize: [28, 28], patchSize: 7, width: 32, depth: 2, heads: 2, mlpDim: 64, layerNormEps: 1e-6, qkvBias: true } } };
const version = (pkg: string) => JSON.parse(readFileSync(join(repo, pkg, 'package.json'), 'utf8')).version as string;

function config(extra: Partial<TransformalyConfig> = {}): TransformalyConfig {
  return {
    data: { use: 'idx', options: { dir: join(repo, 'demo', 'fashion-mnist'), classNames: 'fashion-mnist' } },
    protocol: { mode: 'unimodal', classes: ['Trouser'], limit: { train: 20, testPerClass: 2 } },
    backbone: { use: 'vit', options: tinyVit },
    runtime: { use: 'onnx', options: { threads: 1 } },
    distiller: { use: 'transformaly', options: { blocks: { last: 1 }, epochs: 1 } },
    batchSize: 10,
    ...extra,
  };
}

class Warnings implements ProgressReporter {
  readonly warnings: string[] = [];
  task() {
    return { tick() {}, done() {} };
  }
  info() {}
  warn(message: string) {
    this.warnings.push(message);
  }
}

function rewriteManifest(dir: string, edit: (m: Record<string, any>) => void): void {
  const m = JSON.parse(readFileSync(join(dir, 'manifest.json'), 'utf8'));
  edit(m);
  const text = JSON.stringify(m, null, 2);
  writeFileSync(join(dir, 'manifest.json'), text);
  writeFileSync(join(dir, 'manifest.sha256'), `${createHash('sha256').update(text).digest('hex')}  manifest.json\n`);
}

let builtins: SavedDetector;
beforeAll(async () => {
  builtins = await fitAndSave(work, 'builtins', config({ scorers: { pretrained: 'knn' } }));
});
afterAll(() => rmSync(work, { recursive: true, force: true }));

describe('openDetector', () => {
  it('records each plugin by name, version and origin', () => {
    const m = JSON.parse(readFileSync(join(builtins.dir, 'manifest.json'), 'utf8'));
    expect(m.formatVersion).toBe(2);
    expect(m.plugins['scorers.pretrained']).toEqual({ name: '@transformaly/scorer-knn', version: version('plugins/scorer-knn'), source: 'package', package: '@transformaly/scorer-knn' });
    expect(m.plugins['scorers.finetuned']).toEqual({ name: '@transformaly/scorer-gaussian', version: version('plugins/scorer-gaussian'), source: 'package', package: '@transformaly/scorer-gaussian' });
    expect(m.plugins.backbone).toEqual({ name: '@transformaly/backbone-vit', version: version('plugins/backbone-vit'), source: 'package', package: '@transformaly/backbone-vit' });
    expect(m.plugins.combiner).toEqual({ name: 'sum', version: version('core'), source: 'builtin' });
    expect(m.plugins.distiller).toEqual({ name: 'transformaly', version: version('core'), source: 'builtin' });
    expect(m.plugins.data).toEqual({ name: 'idx', version: version('core'), source: 'builtin' });
  });

  it('rebuilds the detector from the folder alone: the same scores and threshold, no data set', async () => {
    const progress = new Warnings();
    const opened = await openDetector(builtins.dir, { baseDir: tmpdir(), progress });
    try {
      expect(progress.warnings).toEqual([]);
      // The rebuilt pipeline's plugins are the same packages and built-ins, so a detector saved from it records the same.
      expect(opened.pipeline.plugins['scorers.pretrained']).toEqual(JSON.parse(readFileSync(join(builtins.dir, 'manifest.json'), 'utf8')).plugins['scorers.pretrained']);
      expect(opened.pipeline.plugins.combiner).toEqual({ name: 'sum', version: version('core'), source: 'builtin' });
      expect(opened.detector.threshold).toBe(builtins.threshold);
      expect(Array.from((await opened.detector.score(builtins.test)).combined)).toEqual(builtins.combined);
      await expect(opened.pipeline.cases()).rejects.toThrow(/opened from the detector folder .* it has no data set/);
    } finally {
      await opened.dispose();
    }
  });

  it('refuses a manifest whose threshold was edited, whichever way it is loaded', async () => {
    const dir = join(work, 'edited');
    await fitAndSave(work, 'edited', config({ distiller: false }));
    const path = join(dir, 'manifest.json');
    const text = readFileSync(path, 'utf8');
    const m = JSON.parse(text);
    m.stages.detector.meta.threshold = -1e9;
    writeFileSync(path, JSON.stringify(m, null, 2) + '\n');
    const error = await openDetector(dir).catch((e) => e);
    expect(error).toBeInstanceOf(DetectorLoadError);
    expect(error.reason).toBe('corrupted');
    expect(error.message).toMatch(/manifest\.json: checksum mismatch .*the manifest was edited or damaged/);
    const pipeline = await createPipeline(config({ distiller: false }), { baseDir: work });
    try {
      await expect(pipeline.loadDetector(dir)).rejects.toThrow(/manifest\.json: checksum mismatch/);
    } finally {
      await pipeline.dispose();
    }
  });

  it('never imports a plugin file the folder names; reports it by name and version; takes it from the caller', async () => {
    const pluginDir = join(work, 'plugin-src');
    const marker = join(work, 'imported.txt');
    const file = writeMarkerPlugin(pluginDir, marker);
    const fitted = await fitAndSave(work, 'file-plugin', config({ distiller: false, scorers: { pretrained: file } }));
    expect(readFileSync(marker, 'utf8')).toBe('imported\n');
    const record = JSON.parse(readFileSync(join(fitted.dir, 'manifest.json'), 'utf8')).plugins['scorers.pretrained'];
    expect(record).toEqual({ name: MARKER_PLUGIN_NAME, version: MARKER_PLUGIN_VERSION, source: 'file', path: file });

    rmSync(marker);
    const message = String(await openDetector(fitted.dir).catch((e) => e));
    expect(message).toContain(`scorers.pretrained plugin "${MARKER_PLUGIN_NAME}" version ${MARKER_PLUGIN_VERSION} was loaded from the file ${file}`);
    expect(message).toContain(`a detector folder never makes Transformaly import code; give it with --plugin ${MARKER_PLUGIN_NAME}=PATH`);
    expect(message).not.toMatch(/npm install/);
    expect(existsSync(marker)).toBe(false);

    // The caller names the plugin: a moved copy works as well as the original.
    const plugin = await loadPlugin(file, { baseDir: work });
    const opened = await openDetector(fitted.dir, { plugins: { [MARKER_PLUGIN_NAME]: plugin } });
    try {
      expect(Array.from((await opened.detector.score(fitted.test)).combined)).toEqual(fitted.combined);
    } finally {
      await opened.dispose();
    }
    const other = { ...plugin, name: 'another-scorer' };
    await expect(openDetector(fitted.dir, { plugins: { [MARKER_PLUGIN_NAME]: other } })).rejects.toThrow(
      `the plugin given for "${MARKER_PLUGIN_NAME}" is named "another-scorer"`,
    );
  });

  it('a plugin given in code is named in code again; a missing package is named with its version', async () => {
    const inCode: TransformalyPlugin = {
      name: 'in-code-scorer',
      version: '1.0.0',
      register: () => new ContainerModule(({ bind }) => void bind<DensityScorer>(TOKENS.DensityScorer).toDynamicValue(() => new NegativeNormScorer())),
    };
    const fitted = await fitAndSave(work, 'in-code', config({ distiller: false, scorers: { pretrained: 'in-code-scorer' } }), { 'in-code-scorer': inCode });
    await expect(openDetector(fitted.dir)).rejects.toThrow(
      'scorers.pretrained plugin "in-code-scorer" version 1.0.0 was given in code when the detector was fitted, and a detector folder never makes Transformaly ' +
        'import code; give it with --plugin in-code-scorer=PATH (in code: openDetector(dir, { plugins: { "in-code-scorer": plugin } }))',
    );
    const opened = await openDetector(fitted.dir, { plugins: { 'in-code-scorer': inCode } });
    await opened.dispose();

    rewriteManifest(fitted.dir, (m) => {
      m.plugins['scorers.pretrained'] = { name: '@acme/scorer', version: '2.0.0', source: 'package', package: '@acme/scorer' };
    });
    const message = String(await openDetector(fitted.dir, { baseDir: work }).catch((e) => e));
    expect(message).toContain(
      `scorers.pretrained plugin "@acme/scorer" version 2.0.0 comes from the package @acme/scorer, which is not installed here (looked from ${work}); ` +
        'install @acme/scorer@2.0.0, or give it with --plugin @acme/scorer=PATH',
    );
  });

  it('warns when an installed package has another version than the one that fitted the detector', async () => {
    const dir = join(work, 'older-knn');
    await fitAndSave(work, 'older-knn', config({ distiller: false, scorers: { pretrained: 'knn' } }));
    rewriteManifest(dir, (m) => (m.plugins['scorers.pretrained'].version = '0.0.1'));
    const progress = new Warnings();
    const opened = await openDetector(dir, { progress });
    await opened.dispose();
    expect(progress.warnings).toEqual([
      `${dir}: its scorers.pretrained was fitted by "@transformaly/scorer-knn" version 0.0.1; this pipeline has version ${version('plugins/scorer-knn')}`,
    ]);
  });
});

describe('Pipeline.loadDetector', () => {
  it('refuses a detector whose stage was fitted by another plugin than the pipeline has', async () => {
    const pipeline: Pipeline = await createPipeline(config({ scorers: { pretrained: 'gaussian' } }), { baseDir: work });
    try {
      await expect(pipeline.loadDetector(builtins.dir)).rejects.toThrow(
        `${builtins.dir}: its scorers.pretrained was fitted by plugin "@transformaly/scorer-knn", but this pipeline's scorers.pretrained is "@transformaly/scorer-gaussian"`,
      );
    } finally {
      await pipeline.dispose();
    }
  });

  it('restores a detector of the same config: the same scores', async () => {
    const pipeline = await createPipeline(config({ scorers: { pretrained: 'knn' } }), { baseDir: work });
    try {
      const detector = await pipeline.loadDetector(builtins.dir);
      expect(Array.from((await detector.score(builtins.test as ImageItem[])).combined)).toEqual(builtins.combined);
      await detector.dispose();
    } finally {
      await pipeline.dispose();
    }
  });
});
