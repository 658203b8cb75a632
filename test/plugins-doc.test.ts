// docs/Reference/Plugins.md's code is tested: every block says how (a marker on the line above it); the examples are
// written into a project outside the repository (the workspace packages linked in), compiled with strict TypeScript
// and run; the interfaces it shows are checked against core/src/types.ts; the quick start runs in
// test/packages.test.ts.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { densityScorerChecks } from '@transformaly/testing';
import { docBlocks } from './fixtures/doc-blocks.js';
import { linkWorkspace, repo } from './fixtures/packages.js';

const DOC = join(repo, 'docs', 'Reference', 'Plugins.md');
const blocks = docBlocks(DOC);
const examples = blocks.filter((b) => b.marker === 'example');

describe('docs/Reference/Plugins.md', () => {
  it('says how each of its code blocks is tested', () => {
    const unmarked = blocks.filter((b) => b.lang !== '' && b.marker === undefined).map((b) => `line ${b.line}: a ${b.lang} block`);
    // A block is an example (a complete file), an excerpt of a source file, a quick-start step or a fragment.
    expect(unmarked, 'put <!-- example: FILE -->, <!-- excerpt: PATH -->, <!-- quick-start: STEP --> or <!-- fragment --> on the line above').toEqual([]);
    expect(blocks.filter((b) => b.marker === 'quick-start').map((b) => b.value)).toEqual(['install', 'scaffold', 'config', 'run', 'moved', 'publish']);
    expect(new Set(examples.map((b) => b.value)).size).toBe(examples.length);
  });

  it('shows the interfaces as core/src/types.ts declares them, doc comments included', () => {
    const normalise = (text: string) => text.replace(/\s+/g, ' ').trim();
    for (const block of blocks.filter((b) => b.marker === 'excerpt')) {
      const source = normalise(readFileSync(join(repo, block.value), 'utf8'));
      // Each declaration with the doc comment above it.
      const declarations = block.code.split(/\n(?=\/\*\*|export )/).reduce<string[]>((out, part) => {
        if (out.length > 0 && out[out.length - 1].trimStart().startsWith('/**') && !out[out.length - 1].includes('export ')) out[out.length - 1] += `\n${part}`;
        else out.push(part);
        return out;
      }, []);
      const differ = declarations.filter((d) => !source.includes(normalise(d))).map((d) => d.trim().split('\n').find((l) => l.startsWith('export')));
      expect(differ, `line ${block.line}: declarations that read otherwise in ${block.value}`).toEqual([]);
    }
  });
});

describe('the examples of docs/Reference/Plugins.md', () => {
  const project = mkdtempSync(join(tmpdir(), 'transformaly-plugins-doc-'));
  afterAll(() => rmSync(project, { recursive: true, force: true }));
  const run = (command: string, args: string[]) => spawnSync(command, args, { cwd: project, encoding: 'utf8', env: { ...process.env, DEBUG: '' } });

  beforeAll(() => {
    for (const block of examples) writeFileSync(join(project, block.value), block.code);
    // The page's package.json example is this project's: from-package.ts reads its name, version and aliases.
    const pkg = JSON.parse(readFileSync(join(project, 'package.json'), 'utf8'));
    writeFileSync(join(project, 'package.json'), `${JSON.stringify({ ...pkg, type: 'module', private: true }, null, 2)}\n`);
    writeFileSync(join(project, 'tsconfig.json'), readFileSync(join(repo, 'cli', 'templates', 'shared', 'tsconfig.json'), 'utf8').replace('"include": ["src", "test"]', '"include": ["*.ts"]'));
    linkWorkspace(project, ['@transformaly/core', '@transformaly/testing', '@transformaly/runtime-onnx', 'onnxruntime-node', 'inversify', 'typescript', '@types/node']);
  });

  it('compile under strict TypeScript, as a plugin package compiles them', () => {
    const tsc = run(process.execPath, [join(project, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', '.']);
    expect(tsc.status, tsc.stdout + tsc.stderr).toBe(0);
  });

  it('run: their node:test suites pass, the conformance kit passes their plugins, typed and advanced', () => {
    const tests = run(process.execPath, ['--test', 'dist/numerics.test.js', 'dist/mean-distance.test.js']);
    expect(tests.status, tests.stdout + tests.stderr).toBe(0);
    const rules = densityScorerChecks({ name: 'any', version: '0' }).length;
    // The numerics test, and one test per rule of the kit for the scorer.
    expect(tests.stdout).toMatch(new RegExp(`^# pass ${1 + rules}$`, 'm'));
    const check = run(process.execPath, ['dist/check.js']);
    expect(check.status, check.stderr).toBe(0);
    expect(check.stdout).toContain("'fit-and-score'");
    writeFileSync(
      join(project, 'more.mjs'),
      `import { checkDensityScorer, disposeKit } from '@transformaly/testing';
import { compileSchema } from '@transformaly/core';
import advanced from './dist/advanced.js';
import { plugin } from './dist/from-package.js';
import { optionsSchema } from './dist/options-schema.js';
const validate = compileSchema(optionsSchema);
console.log(JSON.stringify({
  advanced: (await checkDensityScorer({ plugin: advanced, options: { power: 2 } })).length,
  fromPackage: { name: plugin.name, version: plugin.version, aliases: plugin.aliases, rules: (await checkDensityScorer(plugin)).length },
  schema: [validate({ model: 'org/name', blocks: { last: 2 } }), validate({ blocks: 'all' })],
}));
await disposeKit();
`,
    );
    const more = run(process.execPath, ['more.mjs']);
    expect(more.status, more.stderr).toBe(0);
    const pkg = JSON.parse(readFileSync(join(project, 'package.json'), 'utf8'));
    expect(JSON.parse(more.stdout)).toEqual({
      advanced: rules,
      fromPackage: { name: pkg.name, version: pkg.version, aliases: pkg.transformaly.aliases, rules },
      schema: [true, false],
    });
  });
});
