import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

/** Seconds: from a millisecond answer to a slow pass under load. */
const LATENCY_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

/** The service's Prometheus metrics, in a registry of its own (several services may share a process). */
export class ServiceMetrics {
  readonly registry = new Registry();
  readonly requests = new Counter({
    name: 'transformaly_http_requests_total',
    help: 'HTTP requests answered, by route, method and status',
    labelNames: ['route', 'method', 'status'] as const,
    registers: [this.registry],
  });
  readonly latency = new Histogram({
    name: 'transformaly_http_request_duration_seconds',
    help: 'Time from receiving a request to answering it, by route, method and status',
    labelNames: ['route', 'method', 'status'] as const,
    buckets: LATENCY_BUCKETS,
    registers: [this.registry],
  });
  readonly batchImages = new Histogram({
    name: 'transformaly_batch_images',
    help: 'Images per backbone pass',
    buckets: [1, 2, 4, 8, 16, 32, 64, 128, 256],
    registers: [this.registry],
  });
  readonly batchSeconds = new Histogram({
    name: 'transformaly_batch_duration_seconds',
    help: 'Time of one backbone pass and the scoring of its images',
    buckets: LATENCY_BUCKETS,
    registers: [this.registry],
  });
  readonly imagesScored = new Counter({
    name: 'transformaly_images_scored_total',
    help: 'Images scored and answered',
    registers: [this.registry],
  });
  readonly rejected = new Counter({
    name: 'transformaly_rejected_images_total',
    help: 'Images not scored, by reason: queue_full, timeout, bad_image, client_gone, error',
    labelNames: ['reason'] as const,
    registers: [this.registry],
  });

  constructor(queueLength: () => number) {
    new Gauge({
      name: 'transformaly_queue_images',
      help: 'Images accepted and waiting for a backbone pass (being decoded or queued)',
      registers: [this.registry],
      collect() {
        this.set(queueLength());
      },
    });
    collectDefaultMetrics({ register: this.registry, prefix: 'transformaly_' });
  }
}
