#!/usr/bin/env node
// `npm run bench`: builds the workspace, then runs each benchmark; every one prints its own ratios against a
// reference (scikit-learn or torch) measured in the same run. Pass names to run a subset: npm run bench -- scorers
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const all = ['scorers', 'embed', 'training-step', 'tfjs', 'webgpu', 'serve', 'fit', 'precision'];
const wanted = process.argv.slice(2).length ? process.argv.slice(2) : all;

const build = spawnSync('npx', ['tsc', '-b'], { cwd: join(here, '..'), stdio: 'inherit' });
if (build.status !== 0) process.exit(build.status ?? 1);

let failed = 0;
for (const name of wanted) {
  const script = join(here, `${name}.mjs`);
  if (!existsSync(script)) {
    console.error(`bench: no benchmark "${name}" (have: ${all.filter((n) => existsSync(join(here, `${n}.mjs`))).join(', ')})`);
    failed++;
    continue;
  }
  console.log(`\n=== ${name} ===`);
  const result = spawnSync(process.execPath, [script], { stdio: 'inherit' });
  if (result.status !== 0) failed++;
}
process.exit(failed ? 1 : 0);
