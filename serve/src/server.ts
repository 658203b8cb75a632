import { availableParallelism } from 'node:os';
import multipart from '@fastify/multipart';
import Fastify, { type FastifyBaseLogger, type FastifyError, type FastifyInstance, type FastifyRequest, type FastifyServerOptions } from 'fastify';
import {
  DEFAULT_MAX_PIXELS,
  openDetector,
  packageVersions,
  type Detector,
  type OpenedDetector,
  type ProgressReporter,
  type TransformalyPlugin,
} from '@transformaly/core';
import { MicroBatcher, type ImageResult } from './batcher.js';
import { ServeError } from './errors.js';
import { IMAGE_MEDIA_TYPES, ImageDecoder, RAW_MEDIA_TYPES, type DecodedImage } from './images.js';
import { ServiceMetrics } from './metrics.js';
import { detectorSchema, errorSchema, scoreSchema, statusSchema } from './schemas.js';

export interface ServeOptions {
  /** The detector folder to open (as `transformaly score` does), or a detector already opened, which its opener disposes. */
  detector: string | OpenedDetector;
  /** For a folder: plugins it names that are not installed packages (`score --plugin`), and where packages are found. */
  plugins?: Record<string, TransformalyPlugin>;
  baseDir?: string;
  /** Most images per backbone pass; default the detector's `batchSize`. */
  batchSize?: number;
  /** How long the oldest waiting image waits for more before a smaller pass starts, in ms; default 5. */
  batchWaitMs?: number;
  /** Most images accepted and not yet in a pass; past it requests get 503 with Retry-After. Default 4 x batchSize. */
  maxQueue?: number;
  /** Time from a request's arrival to its answer, in ms, past which it gets 503; default 30 000. */
  timeoutMs?: number;
  /** Largest raw image body, and largest file of a multipart body, in bytes; default 20 MiB. Larger: 413. */
  bodyLimit?: number;
  /** Most files in one multipart request; default 32 (and at most maxQueue). More: 413. */
  maxFiles?: number;
  /** Images declaring more pixels than this in their header are refused (400) before decoding; default 50 000 000. */
  maxPixels?: number;
  /** Images decoded at once; default the number of CPUs. Decoding takes up to 15 bytes x maxPixels each. */
  decodeConcurrency?: number;
  /** Fastify's logger option (pino): `true`, `{ level: 'warn' }`, a logger instance...; default off. */
  logger?: FastifyServerOptions['logger'];
}

/** The settings in force, after defaults (GET /v1/detector shows them). */
export interface ServeLimits {
  batchSize: number;
  batchWaitMs: number;
  maxQueue: number;
  timeoutMs: number;
  bodyLimit: number;
  maxFiles: number;
  maxPixels: number;
  decodeConcurrency: number;
}

/** A Fastify instance serving one detector. `detectorReady` settles when it is loaded and warmed (or could not be). */
export type TransformalyServer = FastifyInstance & { readonly detectorReady: Promise<void> };

const MIB = 1024 * 1024;

type LoadState = { state: 'loading' } | { state: 'ready' } | { state: 'failed'; message: string };

interface Loaded {
  opened: OpenedDetector;
  batcher: MicroBatcher;
  decoder: ImageDecoder;
  limits: ServeLimits;
  info: Record<string, unknown>;
}

/**
 * An HTTP service that scores images with a saved detector (docs/Reference/Serve.md). The detector loads in the
 * background: /healthz answers at once, /readyz and /v1/score once it is loaded and one pass has warmed it. `close()`
 * stops accepting requests, answers those already accepted, then releases the detector.
 */
export function createServer(options: ServeOptions): TransformalyServer {
  const timeoutMs = positive('timeoutMs', options.timeoutMs ?? 30_000);
  const bodyLimit = positive('bodyLimit', options.bodyLimit ?? 20 * MIB);
  const app = Fastify({
    logger: options.logger ?? false,
    bodyLimit,
    // Also bounds how long a client may take to send its request (slow uploads).
    requestTimeout: timeoutMs,
    return503OnClosing: true,
  });

  let status: LoadState = { state: 'loading' };
  let loaded: Loaded | undefined;
  const metrics = new ServiceMetrics(() => loaded?.batcher.pending ?? 0);
  /** Per POST /v1/score request admitted: what serves it, and a signal aborted when it times out or its client leaves. */
  const scoring = new WeakMap<FastifyRequest, { service: Loaded; signal: AbortSignal; timer: NodeJS.Timeout }>();

  const ready = (): Loaded => {
    if (status.state === 'loading') throw new ServeError(503, 'the detector is still loading', { 'Retry-After': '1' });
    if (status.state === 'failed' || !loaded) throw new ServeError(503, `the detector is not available: ${status.state === 'failed' ? status.message : 'not loaded'}`);
    return loaded;
  };

  const detectorReady = load(options, app.log, timeoutMs, bodyLimit, metrics).then(
    (result) => {
      loaded = result;
      status = { state: 'ready' };
      app.log.info({ limits: result.limits }, `detector ready: ${result.info.caseId ?? ''} on ${(result.info.backbone as { id: string }).id}`);
    },
    (error: Error) => {
      status = { state: 'failed', message: error.message };
      app.log.error(`the detector could not be loaded: ${error.message}`);
      throw error;
    },
  );
  // Whoever embeds the server may not wait on it; the failure is also in /readyz and the log.
  detectorReady.catch(() => undefined);

  app.decorate('detectorReady', detectorReady);
  app.removeAllContentTypeParsers();
  app.addContentTypeParser(RAW_MEDIA_TYPES, { parseAs: 'buffer', bodyLimit }, (_request, body, done) => done(null, body));
  app.register(multipart, {
    limits: {
      fileSize: bodyLimit,
      // A backstop: the limit in force (at most maxQueue) is checked as files arrive.
      files: positive('maxFiles', options.maxFiles ?? 32) + 1,
      fieldSize: 1024,
      headerPairs: 100,
    },
  });

  app.addHook('onResponse', async (request, reply) => {
    clearTimeout(scoring.get(request)?.timer);
    const labels = { route: request.routeOptions.url ?? 'unmatched', method: request.method, status: String(reply.statusCode) };
    metrics.requests.inc(labels);
    metrics.latency.observe(labels, reply.elapsedTime / 1000);
  });

  // Closing: Fastify answers new requests with 503 (return503OnClosing) and the server takes no new connection;
  // the requests already accepted are answered.
  let closing = false;
  // A keep-alive connection that stays open after its last answer would hold the shutdown until it times out.
  app.addHook('onSend', async (_request, reply) => {
    if (closing) reply.header('connection', 'close');
  });
  app.addHook('preClose', async () => {
    closing = true;
    // Accepted images no longer wait for company: every pass starts at once until the queue is empty.
    void loaded?.batcher.flush();
  });
  app.addHook('onClose', async () => {
    // Runs once the HTTP server has answered every request it accepted. A pass may still run for requests that
    // timed out or whose clients left; it ends before the detector is released.
    await detectorReady.catch(() => undefined);
    if (!loaded) return;
    await loaded.batcher.flush();
    if (typeof options.detector === 'string') await loaded.opened.dispose();
  });

  app.setErrorHandler((error: FastifyError, request, reply) => {
    const answer = describeError(error, request, { bodyLimit, maxFiles: loaded?.limits.maxFiles ?? options.maxFiles ?? 32 });
    if (answer.statusCode >= 500 && !(error instanceof ServeError)) request.log.error({ err: error }, 'request failed');
    else request.log.info(`${answer.statusCode}: ${answer.message}`);
    if (error instanceof ServeError) reply.headers(error.headers);
    return reply.status(answer.statusCode).send(answer);
  });

  app.get('/healthz', { schema: { response: { 200: statusSchema } } }, async () => ({ status: 'ok' }));

  app.get('/readyz', { schema: { response: { 200: statusSchema, 503: statusSchema } } }, async (_request, reply) => {
    if (status.state === 'ready') return { status: 'ready' };
    return reply.status(503).send(status.state === 'failed' ? { status: 'unavailable', message: status.message } : { status: 'loading' });
  });

  app.get('/metrics', async (_request, reply) => {
    reply.type(metrics.registry.contentType);
    return metrics.registry.metrics();
  });

  app.get('/v1/detector', { schema: { response: { 200: detectorSchema, 503: errorSchema } } }, async () => ready().info);

  app.post(
    '/v1/score',
    {
      schema: { response: { 200: scoreSchema, '4xx': errorSchema, '5xx': errorSchema } },
      // Before the body is read: a service that cannot take the request says so without receiving it.
      onRequest: async (request, reply) => {
        const { batcher } = ready();
        if (batcher.full) {
          metrics.rejected.inc({ reason: 'queue_full' });
          throw queueFull(batcher);
        }
        const controller = new AbortController();
        const timer = setTimeout(() => controller.abort(new ServeError(503, `no answer within the timeout of ${timeoutMs} ms (the service is busy)`, { 'Retry-After': String(batcher.retryAfterSeconds()) })), timeoutMs);
        reply.raw.once('close', () => {
          if (!reply.raw.writableFinished) controller.abort(new ServeError(499, 'the client closed the connection'));
        });
        scoring.set(request, { service: loaded!, signal: controller.signal, timer });
      },
    },
    async (request, reply) => {
      const started = performance.now();
      const { service, signal } = scoring.get(request)!;
      const { batcher, decoder, opened, limits } = service;
      const uploads = await readUploads(request, limits.maxFiles);
      if (!batcher.reserve(uploads.length)) {
        metrics.rejected.inc({ reason: 'queue_full' }, uploads.length);
        throw queueFull(batcher);
      }
      let reserved = uploads.length;
      let decoded: DecodedImage[];
      let results: ImageResult[];
      try {
        decoded = await untilAborted(Promise.all(uploads.map((u) => decoder.decode(u.bytes, u.name ?? 'the request body'))), signal);
        reserved = 0;
        results = await untilAborted(Promise.all(decoded.map((d, i) => batcher.submit(`${request.id}#${i}`, d.pixels, signal))), signal);
      } catch (error) {
        batcher.release(reserved);
        const reason = error instanceof ServeError ? { 400: 'bad_image', 499: 'client_gone', 503: 'timeout' }[error.statusCode] : undefined;
        metrics.rejected.inc({ reason: reason ?? 'error' }, uploads.length);
        throw error;
      }
      metrics.imagesScored.inc(results.length);
      const threshold = opened.detector.threshold!;
      return reply.send({
        images: results.map((r, i) => ({
          name: uploads[i].name,
          format: decoded[i].format,
          width: decoded[i].width,
          height: decoded[i].height,
          scores: { pretrained: r.pretrained, finetuned: r.finetuned, combined: r.combined },
          threshold,
          anomalous: r.anomalous,
          timing: { decodeMs: decoded[i].decodeMs, queueMs: r.queueMs, batchMs: r.batchMs, batchImages: r.batchImages },
        })),
        timing: { totalMs: performance.now() - started },
      });
    },
  );

  return app as unknown as TransformalyServer;
}

/** Opens the detector, warms it with one full pass, and builds what serving needs. */
async function load(options: ServeOptions, log: FastifyBaseLogger, timeoutMs: number, bodyLimit: number, metrics: ServiceMetrics): Promise<Loaded> {
  const progress: ProgressReporter = {
    task: () => ({ tick() {}, done() {} }),
    info: (message) => log.info(message),
    warn: (message) => log.warn(message),
  };
  const opened =
    typeof options.detector === 'string' ? await openDetector(options.detector, { plugins: options.plugins, baseDir: options.baseDir, progress }) : options.detector;
  try {
    const { detector, manifest } = opened;
    const info = detector.parts.backbone.info;
    if (info.untrained) log.warn(`the detector was fitted on ${info.id}, an UNTRAINED backbone (random weights): its scores are for tests and smoke runs only`);
    const batchSize = positive('batchSize', options.batchSize ?? detector.settings.batchSize);
    const limits: ServeLimits = {
      batchSize,
      batchWaitMs: nonNegative('batchWaitMs', options.batchWaitMs ?? 5),
      maxQueue: positive('maxQueue', options.maxQueue ?? 4 * batchSize),
      timeoutMs,
      bodyLimit,
      maxFiles: 0,
      maxPixels: positive('maxPixels', options.maxPixels ?? DEFAULT_MAX_PIXELS),
      decodeConcurrency: positive('decodeConcurrency', options.decodeConcurrency ?? availableParallelism()),
    };
    limits.maxFiles = options.maxFiles ?? Math.min(32, limits.maxQueue);
    if (limits.maxFiles > limits.maxQueue) throw new Error(`maxFiles (${limits.maxFiles}) must be at most maxQueue (${limits.maxQueue}): a request must fit in the queue`);
    await warm(detector, batchSize);
    const batcher = new MicroBatcher({
      batchSize,
      waitMs: limits.batchWaitMs,
      maxQueue: limits.maxQueue,
      score: (pixels, ids) => detector.scorePixels(pixels, ids),
      onBatch: ({ images, ms, error }) => {
        metrics.batchImages.observe(images);
        metrics.batchSeconds.observe(ms / 1000);
        if (error) log.error({ err: error }, `a backbone pass of ${images} images failed`);
      },
    });
    return {
      opened,
      batcher,
      decoder: new ImageDecoder(detector.preprocessor, limits.maxPixels, limits.decodeConcurrency),
      limits,
      info: {
        caseId: manifest.extra?.caseId ?? null,
        createdAt: manifest.createdAt,
        backbone: { id: info.id, sha256: info.sha256, untrained: info.untrained, imageSize: info.imageSize },
        spaces: detector.spaces,
        threshold: detector.threshold!,
        plugins: manifest.plugins,
        packages: { fitted: manifest.packages, serving: await packageVersions() },
        limits,
      },
    };
  } catch (error) {
    if (typeof options.detector === 'string') await opened.dispose();
    throw error;
  }
}

/** One full pass before the first request, so that it does not pay for the engine's first allocations. */
async function warm(detector: Detector, batchSize: number): Promise<void> {
  const [height, width] = detector.preprocessor.spec.size;
  const pixels = { dims: [batchSize, 3, height, width], data: new Float32Array(batchSize * 3 * height * width) };
  await detector.scorePixels(pixels, Array.from({ length: batchSize }, (_, i) => `warm-up#${i}`));
}

interface Upload {
  /** The file name of a multipart part; absent for a raw body. */
  name?: string;
  bytes: Uint8Array;
}

/** The images of a request: its raw body, or every file of a multipart body (other fields are refused). */
async function readUploads(request: FastifyRequest, maxFiles: number): Promise<Upload[]> {
  if (!request.isMultipart()) {
    if (!(request.body instanceof Uint8Array)) throw new ServeError(400, `no image: send one as the body (Content-Type ${IMAGE_MEDIA_TYPES.join(', ')}) or several as multipart/form-data files`);
    return [{ bytes: request.body }];
  }
  const uploads: Upload[] = [];
  try {
    for await (const part of request.parts()) {
      if (uploads.length === maxFiles) throw new ServeError(413, `more than ${maxFiles} files in one request`);
      if (part.type !== 'file') throw new ServeError(400, `the multipart field "${part.fieldname}" is not a file; send each image as a file part`);
      const name = part.filename || `file ${uploads.length + 1}`;
      const type = part.mimetype.split(';')[0].trim().toLowerCase();
      if (!RAW_MEDIA_TYPES.includes(type)) throw new ServeError(415, `${name}: unsupported Content-Type "${part.mimetype}"; files must be ${RAW_MEDIA_TYPES.join(', ')}`);
      uploads.push({ name, bytes: await part.toBuffer() });
    }
  } catch (error) {
    if (error instanceof ServeError || typeof (error as FastifyError).statusCode === 'number') throw error;
    throw new ServeError(400, `malformed multipart body: ${(error as Error).message}`, {}, { cause: error });
  }
  if (uploads.length === 0) throw new ServeError(400, 'the multipart body has no file; send each image as a file part');
  return uploads;
}

/** `work`, or the abort reason as soon as `signal` aborts (the work's own outcome is then dropped). */
function untilAborted<T>(work: Promise<T>, signal: AbortSignal): Promise<T> {
  work.catch(() => undefined);
  if (signal.aborted) return Promise.reject(signal.reason);
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    work.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
  });
}

function queueFull(batcher: MicroBatcher): ServeError {
  return new ServeError(503, `the service is busy: ${batcher.pending} images are waiting, the most it queues; retry later`, {
    'Retry-After': String(batcher.retryAfterSeconds()),
  });
}

interface ErrorAnswer {
  statusCode: number;
  error: string;
  message: string;
}

const STATUS_TEXT: Record<number, string> = {
  400: 'Bad Request',
  404: 'Not Found',
  406: 'Not Acceptable',
  413: 'Payload Too Large',
  415: 'Unsupported Media Type',
  499: 'Client Closed Request',
  500: 'Internal Server Error',
  503: 'Service Unavailable',
};

/** The answer to an error: its status, and a message that says what was wrong and what is accepted. */
function describeError(error: FastifyError, request: FastifyRequest, limits: { bodyLimit: number; maxFiles: number }): ErrorAnswer {
  const statusCode = error.statusCode ?? 500;
  const answer = (message: string) => ({ statusCode, error: STATUS_TEXT[statusCode] ?? 'Error', message });
  switch (error.code) {
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return answer(`the body is larger than the limit of ${limits.bodyLimit} bytes`);
    case 'FST_REQ_FILE_TOO_LARGE':
      return answer(`a file is larger than the limit of ${limits.bodyLimit} bytes`);
    case 'FST_FILES_LIMIT':
    case 'FST_PARTS_LIMIT':
      return answer(`more than ${limits.maxFiles} files in one request`);
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return answer(
        `unsupported Content-Type "${request.headers['content-type'] ?? '(none)'}": send one image as ${RAW_MEDIA_TYPES.join(', ')}, or several as multipart/form-data files`,
      );
  }
  if (error instanceof ServeError || statusCode < 500) return answer(error.message);
  return answer(`internal error while answering request ${request.id}; the service log has the details`);
}

function positive(name: string, value: number): number {
  if (!Number.isInteger(value) || value < 1) throw new Error(`createServer: ${name} must be a positive integer, got ${value}`);
  return value;
}

function nonNegative(name: string, value: number): number {
  if (!Number.isFinite(value) || value < 0) throw new Error(`createServer: ${name} must be a number >= 0, got ${value}`);
  return value;
}
