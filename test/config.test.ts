import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { BUILTIN_PLUGINS, ConfigError, ConfigFileError, createRng, loadConfigFile, resolveConfig, type TransformalyConfig } from '@transformaly/core';

const dir = mkdtempSync(join(tmpdir(), 'transformaly-config-'));
const resolveIn = (raw: unknown) => resolveConfig(raw, { file: join(dir, 'transformaly.config.ts'), baseDir: dir, builtins: BUILTIN_PLUGINS });

const minimal: TransformalyConfig = {
  data: { use: 'idx', options: { dir: '/usr/share/datasets/fashion-mnist', classNames: 'fashion-mnist' } },
  backbone: { use: 'vit', options: { checkpoint: 'google/vit-base-patch16-224' } },
  distiller: false,
};

async function issuesOf(raw: unknown) {
  try {
    await resolveIn(raw);
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return (error as ConfigError).issues;
  }
  throw new Error('expected a ConfigError');
}

describe('config validation', () => {
  it('fills defaults, normalises stage refs and resolves paths against the config folder', async () => {
    const { config, stages } = await resolveIn({ ...minimal, scorers: { finetuned: 'knn' }, outputDir: 'out' });
    expect(config.protocol).toEqual({ mode: 'unimodal', classes: 'all' });
    expect(config.scorers.pretrained).toEqual({ use: 'gaussian', options: { whiten: { varianceFraction: 0.9 } } });
    expect(config.scorers.finetuned).toEqual({ use: 'knn', options: {} });
    expect(config.outputDir).toBe(join(dir, 'out'));
    expect(config.batchSize).toBe(32);
    expect(stages.map((s) => s.path)).toEqual(['data', 'runtime', 'backbone', 'scorers.pretrained', 'scorers.finetuned', 'combiner']);
  });

  it('resolves relative data paths against the config folder', async () => {
    const { config } = await resolveIn({ ...minimal, data: { use: 'folder', options: { root: './images' } } });
    expect((config.data.options as { root: string }).root).toBe(join(dir, 'images'));
  });

  it('reports every violation at once with its path, the value found and what was expected', async () => {
    const issues = await issuesOf({
      ...minimal,
      batchSize: 0,
      seed: 'one',
      protocol: { mode: 'bimodal' },
      colour: 'blue',
      threshold: { quantile: 2 },
    });
    const byPath = Object.fromEntries(issues.map((i) => [i.path, i]));
    expect(Object.keys(byPath).sort()).toEqual(['batchSize', 'colour', 'protocol.mode', 'seed', 'threshold.quantile'].sort());
    expect(byPath['threshold.quantile'].expected).toMatch(/<= 1/);
    expect(byPath.batchSize.found).toBe(0);
    expect(byPath.batchSize.expected).toMatch(/>= 1/);
    expect(byPath.seed.expected).toMatch(/integer/);
    expect(byPath['protocol.mode'].expected).toMatch(/"unimodal", "multimodal"/);
    expect(byPath.colour.expected).toMatch(/unknown key/);
    expect(byPath.colour.found).toBe('blue');
  });

  it('reports missing required stages', async () => {
    const issues = await issuesOf({ data: minimal.data, distiller: false });
    expect(issues.map((i) => i.path)).toEqual(['backbone']);
    expect(issues[0].expected).toMatch(/required/);
  });

  it("checks each stage's options against its plugin's schema, unknown keys included", async () => {
    const issues = await issuesOf({
      ...minimal,
      scorers: { pretrained: { use: 'knn', options: { k: 0, metric: 'cosine' } } },
      combiner: { use: 'sum', options: { weight: 2 } },
    });
    const paths = issues.map((i) => i.path).sort();
    expect(paths).toEqual(['combiner.options.weight', 'scorers.pretrained.options.k', 'scorers.pretrained.options.metric']);
    const message = new ConfigError('transformaly.config.ts', issues).message;
    expect(message).toContain('transformaly.config.ts: 3 problems');
    expect(message).toContain('scorers.pretrained.options.k: found 0, expected');
  });

  it('reports a stage given in a wrong form once, naming the forms allowed', async () => {
    const issues = await issuesOf({ ...minimal, combiner: 42 });
    expect(issues).toHaveLength(1);
    expect(issues[0]).toMatchObject({ path: 'combiner', found: 42 });
    expect(issues[0].expected).toMatch(/string.*object with "use"/);
  });

  it('names a plugin that cannot be found', async () => {
    const issues = await issuesOf({ ...minimal, scorers: { pretrained: '@nobody/no-such-scorer' } });
    expect(issues).toHaveLength(1);
    expect(issues[0].path).toBe('scorers.pretrained.use');
    expect(issues[0].expected).toMatch(/no built-in, alias or installed package is named "@nobody\/no-such-scorer"/);
    expect(issues[0].expected).not.toMatch(/npm install/);
  });

  it('suggests the closest names for a misspelt stage', async () => {
    const issues = await issuesOf({ ...minimal, scorers: { pretrained: 'gausian' }, combiner: 'zscroe' });
    expect(issues.map((i) => [i.path, i.expected.match(/did you mean "([^"]+)"/)?.[1]])).toEqual([
      ['scorers.pretrained.use', 'gaussian'],
      ['combiner.use', 'zscore'],
    ]);
  });

  it('refuses a plugin in a slot it does not provide', async () => {
    const issues = await issuesOf({ ...minimal, combiner: 'gaussian' });
    expect(issues[0].path).toBe('combiner.use');
    expect(issues[0].expected).toMatch(/a plugin that provides a feature combiner, but "@transformaly\/scorer-gaussian" provides a density scorer/);
  });

  it('refuses a config that is not an object', async () => {
    const issues = await issuesOf([1, 2]);
    expect(issues[0].expected).toMatch(/an object/);
  });

  it('collects a value of the wrong type in any field with the other issues instead of crashing on it', async () => {
    const issues = await issuesOf({
      ...minimal,
      outputDir: 7,
      plugins: 'x',
      protocol: 'unimodal',
      scorers: ['knn'],
      threshold: 0.05,
      combiner: { use: 'sum', options: 'none' },
      backbone: { use: 7 },
    });
    expect(issues.map((i) => i.path).sort()).toEqual(['backbone.use', 'combiner.options', 'outputDir', 'plugins', 'protocol', 'scorers', 'threshold']);
    expect(issues.find((i) => i.path === 'outputDir')).toMatchObject({ found: 7, expected: 'a value of type string' });
    expect(issues.find((i) => i.path === 'plugins')).toMatchObject({ found: 'x', expected: 'a value of type array' });
  });

  it('survives random mutations of a valid config: each one resolves or is reported as a ConfigError', async () => {
    // Seeded, bounded: 300 configs, each a valid one with 1 to 3 fields replaced, removed or added at random depths.
    const rng = createRng(20240611);
    const pick = <T>(list: readonly T[]): T => list[rng.int(list.length)];
    const values = (): unknown[] => [
      7, -1, 0, 0.5, Number.NaN, 1e300, '', 'x', '../..', 'gaussian', './nope.ts', true, false, null, [], [1, 'a'], {}, { use: 'knn' }, { use: 'sum', options: { weight: 1 } }, { use: '' }, { quantile: 2 }, { contamination: 0.1 },
    ];
    const valid = {
      ...minimal,
      protocol: { mode: 'unimodal', classes: ['Bag'], limit: { train: 10, testPerClass: 5 } },
      scorers: { pretrained: { use: 'gaussian', options: { whiten: { varianceFraction: 0.9 } } }, finetuned: 'knn' },
      combiner: 'zscore',
      threshold: { quantile: 0.1 },
      outputDir: 'out',
      plugins: [],
    };
    const paths = (value: unknown, prefix: string[] = []): string[][] =>
      value && typeof value === 'object' && !Array.isArray(value)
        ? [prefix, ...Object.entries(value).flatMap(([k, v]) => paths(v, [...prefix, k]))]
        : [prefix];
    let resolved = 0;
    for (let round = 0; round < 300; round++) {
      const config = structuredClone(valid) as Record<string, any>;
      for (let m = 0, count = 1 + rng.int(3); m < count; m++) {
        const target = pick(paths(config).filter((p) => p.length > 0));
        const parent = target.slice(0, -1).reduce((o, k) => o[k], config);
        if (!parent || typeof parent !== 'object') continue;
        const key = target[target.length - 1];
        const action = rng.int(3);
        if (action === 0) delete parent[key];
        else if (action === 1) parent[key] = structuredClone(pick(values()));
        else parent[`${key}x`] = structuredClone(pick(values()));
      }
      try {
        await resolveIn(config);
        resolved++;
      } catch (error) {
        if (!(error instanceof ConfigError)) throw new Error(`round ${round}: ${JSON.stringify(config)} threw ${(error as Error).stack}`);
        expect(error.issues.length, JSON.stringify(config)).toBeGreaterThan(0);
      }
    }
    // Some mutations keep a valid config (a field removed that has a default); most are reported.
    expect(resolved).toBeGreaterThan(0);
    expect(resolved).toBeLessThan(300);
  });
});

describe('threshold', () => {
  it('is the held-out quantile; the old name contamination still works, with a warning naming the config path', async () => {
    const warnings: string[] = [];
    const progress = { task: () => ({ tick() {}, done() {} }), info() {}, warn: (m: string) => void warnings.push(m) };
    const file = join(dir, 'transformaly.config.ts');
    const { config } = await resolveConfig({ ...minimal, threshold: { contamination: 0.02 } }, { file, baseDir: dir, builtins: BUILTIN_PLUGINS, progress });
    expect(config.threshold).toEqual({ quantile: 0.02 });
    expect(warnings).toEqual([
      `${file}: threshold.contamination is deprecated; it means the held-out quantile (the share of normal images flagged), not PyOD's share of outliers in the training data. Write threshold: { quantile: 0.02 }.`,
    ]);
    const plain = await resolveConfig({ ...minimal, threshold: { quantile: 0.02 } }, { file, baseDir: dir, builtins: BUILTIN_PLUGINS, progress });
    expect(plain.config.threshold).toEqual({ quantile: 0.02 });
    expect(warnings).toHaveLength(1);
    expect((await issuesOf({ ...minimal, threshold: { contamination: 0.1, quantile: 0.1 } }))[0].path).toBe('threshold');
  });
});

const cleanup: string[] = [];
afterAll(() => cleanup.forEach((folder) => rmSync(folder, { recursive: true, force: true })));

describe('config files', () => {
  it('finds transformaly.config.ts in a folder and loads it with defineConfig through jiti', async () => {
    // Inside the repo, so that the config's import of @transformaly/core resolves as in a user's project.
    const fixtures = join(dirname(fileURLToPath(import.meta.url)), 'fixtures');
    mkdirSync(fixtures, { recursive: true });
    const folder = mkdtempSync(join(fixtures, 'config-ts-'));
    cleanup.push(folder);
    writeFileSync(
      join(folder, 'transformaly.config.ts'),
      `import { defineConfig } from '@transformaly/core';\nconst size: number = 8;\nexport default defineConfig({ data: { use: 'folder', options: { root: './imgs' } }, backbone: 'vit', batchSize: size });\n`,
    );
    const { config, file } = await loadConfigFile({ cwd: folder });
    expect(file).toBe(join(folder, 'transformaly.config.ts'));
    expect(config).toMatchObject({ batchSize: 8, backbone: 'vit' });
  });

  it.each([
    ['transformaly.config.json', JSON.stringify({ batchSize: 4 })],
    ['transformaly.config.yaml', 'batchSize: 4\n'],
    ['transformaly.config.mjs', 'export default { batchSize: 4 };\n'],
  ])('loads %s', async (name, text) => {
    const folder = mkdtempSync(join(tmpdir(), 'transformaly-cfg-'));
    writeFileSync(join(folder, name), text);
    expect((await loadConfigFile({ cwd: folder })).config).toEqual({ batchSize: 4 });
  });

  it('loads an explicit --config path and says when it does not exist', async () => {
    const folder = mkdtempSync(join(tmpdir(), 'transformaly-cfg-'));
    writeFileSync(join(folder, 'other.yaml'), 'seed: 3\n');
    expect((await loadConfigFile({ cwd: folder, configPath: 'other.yaml' })).config).toEqual({ seed: 3 });
    await expect(loadConfigFile({ cwd: folder, configPath: 'missing.ts' })).rejects.toThrow(/missing\.ts does not exist/);
  });

  it('says where it looked when there is no config', async () => {
    const folder = mkdtempSync(join(tmpdir(), 'transformaly-cfg-none-'));
    await expect(loadConfigFile({ cwd: folder })).rejects.toThrow(ConfigFileError);
    await expect(loadConfigFile({ cwd: folder })).rejects.toThrow(/no config found in .*transformaly\.config\.ts.*--config/);
  });

  it('names the file when a TS config does not compile', async () => {
    const folder = mkdtempSync(join(tmpdir(), 'transformaly-cfg-bad-'));
    writeFileSync(join(folder, 'transformaly.config.ts'), 'export default { batchSize: ;\n');
    await expect(loadConfigFile({ cwd: folder })).rejects.toThrow(/transformaly\.config\.ts: cannot be read/);
  });
});
