import { createRequire } from 'node:module';
import { Argument, Command, InvalidArgumentError, Option } from 'commander';
import { ConsoleProgress, DEFAULT_MAX_PIXELS } from '@transformaly/core';
import { createPluginCommand, PLUGIN_KINDS } from './commands/create-plugin.js';
import { embedCommand } from './commands/embed.js';
import { evalCommand } from './commands/eval.js';
import { exportCommand, type ExportCommandOptions } from './commands/export.js';
import { fitCommand } from './commands/fit.js';
import { pluginsCommand } from './commands/plugins.js';
import { runCommand } from './commands/run.js';
import { scoreCommand, type ScoreOptions } from './commands/score.js';
import { workerCommand, type WorkerCommandOptions } from './commands/worker.js';
import type { RunCommandOptions } from './commands/run.js';
import { serveCommand, type ServeCommandOptions } from './commands/serve.js';

const progress = new ConsoleProgress();
const abort = new AbortController();

const positiveInt = (name: string) => (value: string) => {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError(`${name} must be a positive integer, got "${value}"`);
  return n;
};
const nonNegativeInt = (name: string) => (value: string) => {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0) throw new InvalidArgumentError(`${name} must be an integer >= 0, got "${value}"`);
  return n;
};
const positiveSeconds = (name: string) => (value: string) => {
  const n = Number(value);
  if (!Number.isFinite(n) || n <= 0) throw new InvalidArgumentError(`${name} must be a positive number of seconds, got "${value}"`);
  return n;
};
const repeatable = (value: string, list: string[] = []) => [...list, value];
/** The options `run` and `score` share for spreading their work over queue workers (docs/Reference/Distributed.md). */
const queueFlags = (command: Command, what: string) =>
  command
    .option('--queue <url>', `spread the ${what} over workers through the BullMQ queue at this Redis (redis://HOST:PORT[/DB], rediss:// for TLS)`)
    .option('--queue-name <name>', 'the queue in that Redis (default "transformaly"); the workers must take the same')
    .option('--attempts <n>', `with --queue: attempts per job before it is reported as failed (default 3)`, positiveInt('--attempts'))
    .option('--retry-delay <seconds>', 'with --queue: delay before the first retry of a failed job, doubled at each further one (default 30)', positiveSeconds('--retry-delay'));

const triple = (name: string) => (value: string): [number, number, number] => {
  const parts = value.split(',').map(Number);
  if (parts.length !== 3 || parts.some((p) => !Number.isFinite(p))) throw new InvalidArgumentError(`${name} must be three numbers r,g,b, got "${value}"`);
  return parts as [number, number, number];
};

/** `run` and `fit` resume from their checkpoints when run again; `fit --restart` would discard them. */
const resumeAdvice = () => (process.argv.includes('--restart') ? 'rerun the command without --restart to resume' : 'rerun the same command to resume');

/**
 * Runs a command; errors print as one clear message, not a stack trace (set DEBUG=transformaly for the stack).
 * `ownSignals`: the command handles SIGINT itself (serve), so Ctrl-C does not mean "finish the current step".
 */
const action =
  <A extends unknown[]>(fn: (...args: A) => Promise<void>, { ownSignals = false } = {}) =>
  async (...args: A) => {
    if (!ownSignals) process.once('SIGINT', () => {
      progress.warn(`interrupted: finishing the current step; finished cases and checkpoints are kept (${resumeAdvice()})`);
      abort.abort(new Error('interrupted'));
      process.once('SIGINT', () => process.exit(130));
    });
    try {
      await fn(...args);
    } catch (error) {
      if (abort.signal.aborted) {
        process.stderr.write(`stopped; ${resumeAdvice()}\n`);
        process.exit(130);
      }
      const e = error as Error;
      process.stderr.write(`transformaly: ${process.env.DEBUG?.includes('transformaly') ? e.stack : e.message}\n`);
      if (e.cause && process.env.DEBUG?.includes('transformaly')) process.stderr.write(`cause: ${(e.cause as Error).stack ?? e.cause}\n`);
      process.exit(1);
    }
  };

const { version } = createRequire(import.meta.url)('../package.json') as { version: string };

const program = new Command('transformaly')
  .description('Semantic image anomaly detection with pretrained Vision Transformers (Transformaly)')
  .version(version)
  .showHelpAfterError();

queueFlags(
  program
    .command('run')
    .description('fit, score and evaluate every protocol case of the config; writes results/<run-id>/')
    .option('-c, --config <file>', 'config file (default: transformaly.config.* in the current folder)')
    .option('--run-id <id>', 'name of the run folder (default: derived from the resolved config)')
    .option('--force', 'recompute the cases of the run folder that were computed with other settings, instead of refusing'),
  'cases',
).action(action((options: RunCommandOptions) => runCommand(options, progress, abort.signal)));

program
  .command('fit')
  .description("fit one detector on the config's normal images and save it")
  .option('-c, --config <file>', 'config file')
  .option('-o, --out <dir>', 'detector folder to write (new, empty, or an older detector)')
  .option('--restart', 'discard the training checkpoint of an unfinished fit instead of resuming from it')
  // Resuming is the default; the flag of earlier versions is still accepted.
  .addOption(new Option('--resume').hideHelp())
  .action(action((options: { config?: string; out?: string; restart?: boolean }) => fitCommand(options, progress, abort.signal)));

queueFlags(
  program
    .command('score')
    .description('score images with a saved detector (no retraining)')
    .argument('<inputs...>', 'image files or folders')
    .requiredOption('-d, --detector <dir>', 'detector folder written by fit or run')
    .option('-o, --out <file>', 'CSV file to write (default: stdout)')
    .option('--max-pixels <n>', `refuse images with more pixels than this (default ${DEFAULT_MAX_PIXELS})`, positiveInt('--max-pixels'))
    .option('--plugin <name=path>', 'a plugin the detector names, from this file (repeatable; for a plugin that moved or was given in code)', repeatable)
    .option('--shard-size <n>', 'with --queue: images per job, rounded up to whole batches (default 8 batches)', positiveInt('--shard-size')),
  'images',
).action(action((inputs: string[], options: ScoreOptions) => scoreCommand(inputs, options, progress, abort.signal)));

program
  .command('export')
  .description('write a saved detector as one ONNX model that scores anywhere (docs/Reference/Export.md), and/or a web page that scores images in a browser')
  .requiredOption('-d, --detector <dir>', 'detector folder written by fit or run')
  .option('-o, --out <file>', 'the .onnx file to write (input: float32 NCHW pixels, resized and normalised by the caller)')
  .option('--preprocess', 'with --out: take uint8 NHWC pixels at the model size instead, scaled and normalised inside the graph')
  .option('--web <dir>', 'write a static web page folder (index.html, the model, onnxruntime-web) that scores picked or dropped images offline')
  .option('--plugin <name=path>', 'a plugin the detector names, from this file (repeatable; as for score)', repeatable)
  .action(action((options: ExportCommandOptions) => exportCommand(options, progress)));

program
  .command('worker')
  .description('take the jobs of "run --queue" and "score --queue" from a Redis queue and run them, until stopped (docs/Reference/Distributed.md)')
  .requiredOption('--queue <url>', 'the Redis of the queue (redis://HOST:PORT[/DB], rediss:// for TLS); only trusted producers may reach it')
  .option('--queue-name <name>', 'the queue in that Redis (default "transformaly")')
  .option('--concurrency <n>', 'jobs run at once (default 1)', positiveInt('--concurrency'))
  .option('--name <name>', 'what the coordinator and dashboards call this worker (default HOST:PID)')
  .option('--allow-plugins <dir>', 'run plugin files named by jobs only from this folder (repeatable; default: no plugin files, only built-ins and installed packages)', repeatable)
  .option('--lock-duration <seconds>', "how long a job's lock lasts without renewal: a dead worker's job is taken over after about this (default 120)", positiveSeconds('--lock-duration'))
  .option('--stalled-interval <seconds>', 'how often this worker looks for the jobs of dead workers (default 60)', positiveSeconds('--stalled-interval'))
  .action(action((options: WorkerCommandOptions) => workerCommand(options, progress, abort.signal)));

program
  .command('serve')
  .description('serve a saved detector over HTTP: POST /v1/score, GET /v1/detector, /healthz, /readyz, /metrics')
  .requiredOption('-d, --detector <dir>', 'detector folder written by fit or run')
  .option('--host <host>', 'address to listen on', '127.0.0.1')
  .option('--port <n>', 'port to listen on (0: any free port)', nonNegativeInt('--port'), 8080)
  .option('--batch-size <n>', "most images per backbone pass (default: the detector's batchSize)", positiveInt('--batch-size'))
  .option('--batch-wait <ms>', 'how long the first image of a pass waits for others (default 5)', nonNegativeInt('--batch-wait'))
  .option('--max-queue <n>', 'images waiting beyond which requests get 503 (default 4 x batch size)', positiveInt('--max-queue'))
  .option('--timeout <ms>', 'per-request time limit, then 503 (default 30000)', positiveInt('--timeout'))
  .option('--body-limit <bytes>', 'largest image body or multipart file, then 413 (default 20 MiB)', positiveInt('--body-limit'))
  .option('--max-files <n>', 'most files in one multipart request, then 413 (default 32)', positiveInt('--max-files'))
  .option('--max-pixels <n>', `refuse images with more pixels than this (default ${DEFAULT_MAX_PIXELS})`, positiveInt('--max-pixels'))
  .option('--decode-concurrency <n>', 'images decoded at once (default: the number of CPUs)', positiveInt('--decode-concurrency'))
  .addOption(new Option('--log-level <level>', 'log level (JSON lines on stdout)').choices(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'))
  .option('--plugin <name=path>', 'a plugin the detector names, from this file (repeatable)', repeatable)
  .action(action((options: ServeCommandOptions) => serveCommand(options), { ownSignals: true }));

program
  .command('embed')
  .description('write the pre-trained ViT features of images to a .npy file')
  .argument('<inputs...>', 'image files or folders')
  .requiredOption('--checkpoint <ref>', 'safetensors file, checkpoint folder, or Hugging Face hub id')
  .requiredOption('-o, --out <file>', 'features .npy to write (paths go to <name>.paths.txt)')
  .option('--heads <n>', 'attention heads (timm checkpoints without a config)', positiveInt('--heads'))
  .option('--image-size <n>', 'input size in pixels', positiveInt('--image-size'))
  .option('--mean <r,g,b>', 'normalisation mean', triple('--mean'))
  .option('--std <r,g,b>', 'normalisation std', triple('--std'))
  .addOption(new Option('--runtime <name>', 'runtime').choices(['onnx']).default('onnx'))
  .option('--batch <n>', 'images per batch', positiveInt('--batch'), 8)
  .option('--threads <n>', 'intra-op threads', positiveInt('--threads'))
  .option('--cache-dir <dir>', 'hub cache folder (default: the HF_HOME convention)')
  .option('--offline', 'use only the hub cache')
  .option('--max-pixels <n>', `refuse images with more pixels than this (default ${DEFAULT_MAX_PIXELS})`, positiveInt('--max-pixels'))
  .action(action((inputs: string[], options: Parameters<typeof embedCommand>[1]) => embedCommand(inputs, options, progress)));

program
  .command('eval')
  .description('recompute AUROC and average precision from a scores.csv')
  .argument('<scores>', 'scores.csv written by run')
  .option('-o, --out <file>', 'write the metrics as JSON')
  .action(action((file: string, options: { out?: string }) => evalCommand(file, options)));

program
  .command('plugins')
  .description('list built-in stages and installed plugins with their options')
  .option('-c, --config <file>', 'also load the plugins this config names')
  .action(action((options: { config?: string }) => pluginsCommand(options)));

program
  .command('create-plugin')
  .description('write a new plugin package (typed plugin, options schema, state, README, a test running the conformance kit)')
  .addArgument(new Argument('<kind>', 'the stage it provides').choices(PLUGIN_KINDS))
  .argument('<name>', 'npm package name; transformaly-plugin- is put in front when missing (the core finds installed plugins by it), the rest is its alias')
  .option('--dir <folder>', 'the folder to create (default: ./<name>); it must not exist, or be empty')
  .action(action((kind: string, name: string, options: { dir?: string }) => createPluginCommand(kind, name, options)));

await program.parseAsync(process.argv);
