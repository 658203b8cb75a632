import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { BUILTIN_PLUGINS, ConfigError, createPipeline, distillerOptionsSchema, loadPlugin, PluginError, type TransformalyConfig } from '@transformaly/core';

// Plugin files live inside the repo so that their imports (inversify, @transformaly/core) resolve as they would in a
// user's project; they are written by the test so that each case is readable here.
const dir = join(dirname(fileURLToPath(import.meta.url)), 'fixtures', 'plugins');
mkdirSync(dir, { recursive: true });
const write = (name: string, text: string) => {
  writeFileSync(join(dir, name), text);
  return `./${name}`;
};

// A third-party scorer written in TypeScript, loaded by file path: distance to the training mean, negated.
const meanScorer = write(
  'mean-scorer.ts',
  `import { ContainerModule } from 'inversify';
import { TOKENS, type DensityScorer, type Matrix, type StageState } from '@transformaly/core';

class MeanDistanceScorer implements DensityScorer {
  readonly name = 'mean-distance';
  private mean: Float64Array = new Float64Array(0);
  constructor(private readonly scale: number) {}
  fit(X: Matrix): void {
    this.mean = new Float64Array(X.cols);
    for (let i = 0; i < X.rows; i++) for (let j = 0; j < X.cols; j++) this.mean[j] += X.data[i * X.cols + j] / X.rows;
  }
  scoreSamples(Y: Matrix): Float64Array {
    const out = new Float64Array(Y.rows);
    for (let i = 0; i < Y.rows; i++) {
      let s = 0;
      for (let j = 0; j < Y.cols; j++) s += (Y.data[i * Y.cols + j] - this.mean[j]) ** 2;
      out[i] = -this.scale * Math.sqrt(s);
    }
    return out;
  }
  exportState(): StageState { return { meta: { scale: this.scale }, arrays: { mean: { dims: [this.mean.length], data: this.mean } } }; }
  importState(state: StageState): void { this.mean = state.arrays.mean.data as Float64Array; }
}

export default {
  name: 'mean-distance-scorer',
  optionsSchema: { type: 'object', properties: { scale: { type: 'number', exclusiveMinimum: 0 } } },
  register: (options: { scale?: number }) =>
    new ContainerModule(({ bind }) => {
      bind(TOKENS.DensityScorer).toDynamicValue(() => new MeanDistanceScorer(options.scale ?? 1));
    }),
};
`,
);

const base: TransformalyConfig = {
  data: { use: 'folder', options: { root: './images' } },
  backbone: { use: 'vit', options: { checkpoint: './model' } },
  distiller: false,
};

describe('plugin loading', () => {
  it('loads a TypeScript plugin by file path and validates its options with its own schema', async () => {
    const plugin = await loadPlugin(meanScorer, { baseDir: dir });
    expect(plugin.name).toBe('mean-distance-scorer');
    const pipeline = await createPipeline({ ...base, scorers: { pretrained: { use: meanScorer, options: { scale: 2 } } } }, { baseDir: dir });
    expect(pipeline.config.scorers.pretrained.options).toEqual({ scale: 2 });
    // Made absolute, so that a detector saved with this config can be scored from any folder.
    expect(pipeline.config.scorers.pretrained.use).toBe(join(dir, 'mean-scorer.ts'));
    const error = await createPipeline({ ...base, scorers: { pretrained: { use: meanScorer, options: { scale: -1, sharpness: 1 } } } }, { baseDir: dir }).catch((e) => e);
    expect(error).toBeInstanceOf(ConfigError);
    expect(error.message).toMatch(/2 problems/);
    expect(error.message).toMatch(/scorers\.pretrained\.options\.scale: found -1, expected a value that must be > 0/);
    expect(error.message).toMatch(/scorers\.pretrained\.options\.sharpness: found 1, expected no such key \(unknown key; allowed: scale\)/);
  });

  it('loads first-party plugins by alias and by package name', async () => {
    expect((await loadPlugin('gaussian', { baseDir: dir })).name).toBe('@transformaly/scorer-gaussian');
    expect((await loadPlugin('@transformaly/scorer-knn', { baseDir: dir })).name).toBe('@transformaly/scorer-knn');
    expect(BUILTIN_PLUGINS.get('folder')?.name).toBe('folder');
    expect((await loadPlugin('tfjs', { baseDir: dir })).name).toBe('@transformaly/runtime-tfjs');
    // A package subpath: the distiller whose students train on tfjs.
    const students = await loadPlugin('transformaly-tfjs', { baseDir: dir });
    expect(students.name).toBe('transformaly-tfjs');
    // The built-in distiller's options, plus those of the tfjs runtime that trains the students.
    expect(Object.keys(students.optionsSchema!.properties as object).sort()).toEqual(
      [...Object.keys(distillerOptionsSchema.properties as object), 'tfjs'].sort(),
    );
  });

  it('names a missing file', async () => {
    await expect(loadPlugin('./nope.ts', { baseDir: dir })).rejects.toThrow(/plugin "\.\/nope\.ts": file .*nope\.ts does not exist/);
  });

  it('names a plugin that throws while loading, and the cause', async () => {
    const ref = write('throws.ts', `throw new Error('licence key missing');\nexport default {};\n`);
    const error = await loadPlugin(ref, { baseDir: dir }).catch((e) => e);
    expect(error).toBeInstanceOf(PluginError);
    expect(error.message).toMatch(/plugin "\.\/throws\.ts": .*throws\.ts threw while loading: licence key missing/);
  });

  it('names a module that exports no plugin', async () => {
    const ref = write('not-a-plugin.mjs', `export const answer = 42;\n`);
    await expect(loadPlugin(ref, { baseDir: dir })).rejects.toThrow(/exports no plugin: expected a default \(or "plugin"\) export/);
  });

  it('refuses a plugin that binds nothing', async () => {
    const ref = write('empty.ts', `import { ContainerModule } from 'inversify';\nexport default { name: 'empty', register: () => new ContainerModule(() => {}) };\n`);
    const error = await createPipeline({ ...base, scorers: { pretrained: ref } }, { baseDir: dir }).catch((e) => e);
    expect(error).toBeInstanceOf(ConfigError);
    expect(error.message).toMatch(/scorers\.pretrained\.use: found "\.\/empty\.ts", expected a plugin that provides a density scorer, but "empty" binds nothing/);
    const extra = await createPipeline({ ...base, plugins: [ref] }, { baseDir: dir }).catch((e) => e);
    expect(extra.message).toMatch(/plugins\[0\]: .*binds nothing/);
  });

  it('names a plugin whose options schema is not a valid schema', async () => {
    const ref = write(
      'typo-schema.ts',
      `import { ContainerModule } from 'inversify';\nimport { TOKENS } from '@transformaly/core';\nexport default { name: 'typo', optionsSchema: { type: 'object', properties: { k: { type: 'integer', minimun: 1 } } }, register: () => new ContainerModule(({ bind }) => { bind(TOKENS.FeatureCombiner).toConstantValue({}); }) };\n`,
    );
    await expect(createPipeline({ ...base, combiner: ref }, { baseDir: dir })).rejects.toThrow(
      /combiner\.use: .*a plugin whose optionsSchema is a valid JSON schema \("typo": .*minimun/,
    );
  });

  it('names a plugin whose register() throws', async () => {
    const ref = write('bad-register.ts', `export default { name: 'bad', register: () => { throw new Error('no GPU'); } };\n`);
    await expect(createPipeline({ ...base, combiner: ref }, { baseDir: dir })).rejects.toThrow(/combiner\.use: .*register\(\) threw: no GPU/);
  });
});

describe('pipeline disposal', () => {
  it('loads nothing it was not asked for: a pipeline whose backbone was never used disposes without loading it', async () => {
    // The checkpoint does not exist: loading it would throw, so a dispose that loaded it would fail.
    const pipeline = await createPipeline({ ...base, backbone: { use: 'vit', options: { checkpoint: './no-such-checkpoint' } } }, { baseDir: dir });
    await expect(pipeline.dispose()).resolves.toBeUndefined();
  });
});
