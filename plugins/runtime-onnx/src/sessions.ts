// The one place onnxruntime sessions are configured and created: the runtime's inference sessions, the student
// trainers' sessions and any other engine work on this runtime share these settings.
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { writeFileAtomic } from '@transformaly/core';
import type { OnnxModel } from '@transformaly/core';

export type GraphOptimizationLevel = 'disabled' | 'basic' | 'extended' | 'all';
const GRAPH_OPTIMIZATION_LEVELS: readonly GraphOptimizationLevel[] = ['disabled', 'basic', 'extended', 'all'];

/** How onnxruntime runs a session, every field resolved (see `resolveSessionSettings` for the defaults). */
export interface OrtSessionSettings {
  /** Intra-op threads (the ones that parallelise one MatMul). */
  threads: number;
  /** Inter-op threads; more than one runs independent graph branches in parallel (the parallel executor). */
  interOpThreads: number;
  /** onnxruntime execution providers in order of preference, e.g. `['cuda', 'cpu']`. */
  executionProviders: readonly string[];
  graphOptimizationLevel: GraphOptimizationLevel;
  /**
   * onnxruntime's CPU memory arena. Without it every large intermediate is allocated and zero-filled afresh each run,
   * about 15% slower on a training step (bench/training-step.mjs with and without --no-arena); with it a ViT-B block
   * trainer keeps about 1.6 GB resident instead of 0.6 GB, which matters when ten students train at once (the paper
   * preset turns it off).
   */
  memoryArena: boolean;
  /**
   * Whether idle intra-op threads spin waiting for the next parallel region. Spinning lowers the latency of
   * back-to-back runs; off leaves the cores to the JavaScript side between runs (and to other processes on a shared
   * machine).
   */
  spinning: boolean;
}

function positiveInteger(value: unknown, field: string, who: string): number | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 1) {
    throw new Error(`${who}: option ${field} must be a positive integer, got ${String(value)}`);
  }
  return value;
}

function booleanOption(value: unknown, field: string, who: string): boolean | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'boolean') throw new Error(`${who}: option ${field} must be a boolean, got ${JSON.stringify(value)}`);
  return value;
}

/**
 * Checks settings and fills in the defaults: `threads` `os.availableParallelism()`, one inter-op thread, the CPU
 * provider, every graph optimisation, the memory arena on and spinning on (onnxruntime's own defaults). `who` names
 * the caller in errors, e.g. `runtime-onnx`.
 */
export function resolveSessionSettings(options: Partial<OrtSessionSettings> = {}, who = 'runtime-onnx'): OrtSessionSettings {
  const level = options.graphOptimizationLevel ?? 'all';
  if (!GRAPH_OPTIMIZATION_LEVELS.includes(level)) {
    throw new Error(`${who}: option graphOptimizationLevel must be one of ${GRAPH_OPTIMIZATION_LEVELS.join(', ')}; got ${JSON.stringify(level)}`);
  }
  const providers = options.executionProviders ?? ['cpu'];
  if (!Array.isArray(providers) || providers.length === 0 || providers.some((p) => typeof p !== 'string' || p === '')) {
    throw new Error(`${who}: option executionProviders must be a non-empty list of provider names, got ${JSON.stringify(providers)}`);
  }
  return {
    threads: positiveInteger(options.threads, 'threads', who) ?? availableParallelism(),
    interOpThreads: positiveInteger(options.interOpThreads, 'interOpThreads', who) ?? 1,
    executionProviders: [...providers],
    graphOptimizationLevel: level,
    memoryArena: booleanOption(options.memoryArena, 'memoryArena', who) ?? true,
    spinning: booleanOption(options.spinning, 'spinning', who) ?? true,
  };
}

/** The settings as onnxruntime-node's session options. */
export function ortSessionOptions(settings: OrtSessionSettings): ort.InferenceSession.SessionOptions {
  const options: ort.InferenceSession.SessionOptions = {
    intraOpNumThreads: settings.threads,
    interOpNumThreads: settings.interOpThreads,
    // Inter-op threads are only used by the parallel executor.
    executionMode: settings.interOpThreads > 1 ? 'parallel' : 'sequential',
    graphOptimizationLevel: settings.graphOptimizationLevel,
    enableCpuMemArena: settings.memoryArena,
    executionProviders: [...settings.executionProviders],
  };
  if (!settings.spinning) options.extra = { session: { intra_op: { allow_spinning: '0' } } };
  return options;
}

/**
 * Creates an onnxruntime session for a model (serialized bytes, or an `OnnxModel` whose weights may be external
 * data) with the given settings. Errors are onnxruntime's (naming the graph file when one was loaded); callers say
 * what they were loading.
 */
export async function createOrtSession(model: OnnxModel | Uint8Array, settings: OrtSessionSettings): Promise<ort.InferenceSession> {
  const { bytes, externalDataDir } = model instanceof Uint8Array ? { bytes: model, externalDataDir: undefined } : model;
  const options = ortSessionOptions(settings);
  if (externalDataDir === undefined) return ort.InferenceSession.create(bytes, options);
  const file = await graphFileFor(bytes, externalDataDir);
  try {
    return await ort.InferenceSession.create(file, options);
  } catch (error) {
    throw new Error(`${(error as Error).message} (graph file ${file})`, { cause: error });
  }
}

/**
 * onnxruntime resolves external-data `location`s relative to the model file, so the graph must be loaded from a file
 * in that folder. The name is content-addressed: identical graphs reuse one file, different graphs sharing the same
 * weights never overwrite each other while loading.
 */
async function graphFileFor(bytes: Uint8Array, dir: string): Promise<string> {
  const digest = createHash('sha256').update(bytes).digest('hex').slice(0, 16);
  const path = join(dir, `model.${digest}.onnx`);
  let existing: Buffer | undefined;
  try {
    existing = await readFile(path);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
  }
  if (existing === undefined || !Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).equals(existing)) {
    await writeFileAtomic(path, bytes);
  }
  return path;
}
