// Benchmark of the density scorers against scikit-learn, measured in the same run on the same data.
//
//   npx tsc -b && node bench/scorers.mjs [--repeats 3] [--threads 2] [--tasks gaussian,gmm,knn]
//
// Our side runs on 2 engine threads; scikit-learn (bench/scorers_sklearn.py, Debian's /usr/bin/python3) on 2
// OpenBLAS/OpenMP threads with OPENBLAS_CORETYPE=SkylakeX. Each timing is the best of `repeats` runs after a warm-up;
// the tasks alternate between the two sides. Not a test: nothing is asserted; the table reports
// ratio = sklearn / ours (>= 1: we are no slower), for wall time and for CPU time (steadier on a busy machine).
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createNumericEngine, createRng } from '@transformaly/core';
import { OnnxRuntime } from '@transformaly/runtime-onnx';
import { GaussianScorer } from '@transformaly/scorer-gaussian';
import { GmmScorer } from '@transformaly/scorer-gmm';
import { KnnScorer } from '@transformaly/scorer-knn';

const args = process.argv.slice(2);
const option = (name, fallback) => (args.includes(name) ? args[args.indexOf(name) + 1] : fallback);
const repeats = Number(option('--repeats', 3));
const THREADS = Number(option('--threads', 2));
const tasks = new Set(option('--tasks', 'gaussian,gmm,knn').split(','));
// The scorers' engine on onnxruntime with THREADS intra-op threads, as a pipeline with runtime { threads } makes it.
const runtime = new OnnxRuntime({ threads: THREADS });
const engine = createNumericEngine(runtime);

const rng = createRng(2024);

function normal(rows, cols, scale = 1, shift = 0) {
  const data = new Float64Array(rows * cols);
  for (let i = 0; i < data.length; i++) data[i] = shift + scale * rng.normal();
  return { rows, cols, data };
}

/** Rows with a full, anisotropic covariance (a random mixing matrix), like ViT features. */
async function correlated(rows, cols) {
  const mixed = await engine.matmul(normal(rows, cols), normal(cols, cols, 1 / Math.sqrt(cols)));
  for (let i = 0; i < mixed.data.length; i++) mixed.data[i] += (i % cols) * 0.01;
  return mixed;
}

function clusters(rows, cols, components, spread) {
  const centres = normal(components, cols, spread);
  const X = normal(rows, cols);
  for (let i = 0; i < rows; i++) {
    const c = i % components;
    for (let j = 0; j < cols; j++) X.data[i * cols + j] += centres.data[c * cols + j];
  }
  return X;
}

/** Wall and CPU seconds (all threads) of each repeat, after a warm-up run. */
async function timed(fn) {
  await fn(); // warm-up: session compilation, JIT
  const wall = [];
  const cpu = [];
  let out;
  for (let r = 0; r < repeats; r++) {
    const c = process.cpuUsage();
    const t = performance.now();
    out = await fn();
    wall.push((performance.now() - t) / 1000);
    const used = process.cpuUsage(c);
    cpu.push((used.user + used.system) / 1e6);
  }
  return { wall, cpu, out };
}

const gaussianX = await correlated(5000, 768);
const gmmSpec = { components: 5, max_iter: 100, tol: 0 };
const gmmX = clusters(5000, 64, gmmSpec.components, 1.5);
const knnTrain = normal(5000, 768);
const knnQueries = normal(10000, 768);
const knnK = 2;

const dir = mkdtempSync(join(tmpdir(), 'transformaly-bench-'));
try {
  const file = (name, m) => {
    const path = join(dir, `${name}.f64`);
    writeFileSync(path, new Uint8Array(m.data.buffer, m.data.byteOffset, m.data.byteLength));
    return { path, shape: [m.rows, m.cols] };
  };
  const spec = {
    repeats,
    gaussian: file('gaussian', gaussianX),
    gmm: { ...file('gmm', gmmX), ...gmmSpec },
    knn_train: file('knn_train', knnTrain),
    knn_queries: file('knn_queries', knnQueries),
    knn_k: knnK,
  };
  writeFileSync(join(dir, 'spec.json'), JSON.stringify(spec));

  const script = join(fileURLToPath(new URL('.', import.meta.url)), 'scorers_sklearn.py');
  const sklearn = (task) => {
    const py = spawnSync('/usr/bin/python3', [script, join(dir, 'spec.json'), task], {
      env: { ...process.env, OPENBLAS_CORETYPE: 'SkylakeX', OMP_NUM_THREADS: String(THREADS), OPENBLAS_NUM_THREADS: String(THREADS), MKL_NUM_THREADS: String(THREADS) },
      encoding: 'utf8',
      maxBuffer: 1 << 26,
    });
    if (py.status !== 0) throw new Error(`scorers_sklearn.py ${task} failed (${py.status}):\n${py.stderr}`);
    return JSON.parse(py.stdout);
  };

  // Each task runs on our side and then on sklearn's, back to back, so both see similar machine conditions.
  const label = {
    gaussian: 'Gaussian fit, 5000 x 768',
    gmm: `GMM fit, ${gmmSpec.components} components, 5000 x 64, ${gmmSpec.max_iter} EM iterations`,
    knn: `kNN (k=${knnK}) scoring, 10000 queries vs 5000 x 768`,
  };
  const ours = {};
  const sk = {};
  const checks = [];
  const relDiff = (a, b) => Math.max(...a.map((v, i) => Math.abs(v - b[i]))) / Math.max(...b.map(Math.abs));
  if (tasks.has('gaussian')) {
    let gaussian;
    ours.gaussian = await timed(async () => {
      gaussian = new GaussianScorer(engine);
      await gaussian.fit(gaussianX);
    });
    sk.gaussian = sklearn('gaussian');
    const head = await gaussian.scoreSamples({ rows: 20, cols: 768, data: gaussianX.data.subarray(0, 20 * 768) });
    checks.push(`Gaussian scores (20 rows), max relative difference: ${relDiff(Array.from(head), sk.gaussian.scores_head).toExponential(2)}`);
  }
  if (tasks.has('gmm')) {
    let gmm;
    ours.gmm = await timed(async () => {
      gmm = new GmmScorer(engine, { components: gmmSpec.components, maxIter: gmmSpec.max_iter, tol: gmmSpec.tol, seed: 0 });
      await gmm.fit(gmmX);
    });
    sk.gmm = sklearn('gmm');
    const ll = (await gmm.scoreSamples(gmmX)).reduce((a, b) => a + b, 0) / gmmX.rows;
    checks.push(
      `GMM mean train log-likelihood: ours ${ll.toFixed(4)} (${gmm.fitInfo.nIter} iterations), sklearn ${sk.gmm.mean_log_likelihood.toFixed(4)} (${sk.gmm.n_iter} iterations); different k-means++ draws`,
    );
  }
  if (tasks.has('knn')) {
    ours.knn = await timed(async () => {
      const knn = new KnnScorer(engine, { k: knnK });
      knn.fit(knnTrain);
      return knn.scoreSamples(knnQueries);
    });
    sk.knn = sklearn('knn');
    checks.push(`kNN scores (20 rows), max relative difference: ${relDiff(Array.from(ours.knn.out.subarray(0, 20)), sk.knn.scores_head).toExponential(2)}`);
  }

  const min = (a) => Math.min(...a);
  const done = Object.keys(ours);
  const width = Math.max(4, ...done.map((t) => label[t].length));
  const first = sk[done[0]];
  console.log(
    `scikit-learn ${first.sklearn}, numpy ${first.numpy}; ${THREADS} thread${THREADS === 1 ? '' : 's'} each; best of ${repeats} after a warm-up; ` +
      `load average ${loadavg()[0].toFixed(2)} on ${availableParallelism()} cores`,
  );
  console.log('ratio = sklearn / ours (>= 1: we are no slower); cpu = process CPU seconds over all threads\n');
  const header = ['ours (s)', 'sklearn (s)', 'ratio', 'cpu ours', 'cpu sklearn', 'cpu ratio'];
  console.log(`${'task'.padEnd(width)}  ${header.map((h) => h.padStart(11)).join('  ')}`);
  for (const task of done) {
    const [o, s, oc, sc] = [min(ours[task].wall), min(sk[task].wall), min(ours[task].cpu), min(sk[task].cpu)];
    const cells = [o.toFixed(3), s.toFixed(3), (s / o).toFixed(2), oc.toFixed(3), sc.toFixed(3), (sc / oc).toFixed(2)];
    console.log(`${label[task].padEnd(width)}  ${cells.map((c) => c.padStart(11)).join('  ')}`);
  }
  console.log('\nagreement with scikit-learn:');
  for (const line of checks) console.log(`  ${line}`);
} finally {
  rmSync(dir, { recursive: true, force: true });
  await engine.dispose();
  await runtime.dispose();
}
