// A runtime for Transformaly: ONNX graphs on onnxruntime-node with the execution providers you name, in order of
// preference (`cpu`, `cuda`, `tensorrt`, `dml` on Windows, `coreml` on macOS; those your onnxruntime build has).
// For another engine, replace the onnxruntime calls in `createSession` and `ProviderSession`: the contract is to run
// the graph's float32 inputs to the outputs asked for, refuse what does not fit, and release what it made.
import { randomUUID } from 'node:crypto';
import { rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import {
  checkSessionFeeds,
  checkSessionOutputs,
  definePlugin,
  pluginPackage,
  type Device,
  type InferenceSession,
  type JsonObject,
  type JsonSchema,
  type OnnxModel,
  type Runtime,
  type SessionOptions,
  type Tensor,
} from '@transformaly/core';

export interface ProvidersRuntimeOptions {
  /** Execution providers in order of preference; default ['cpu']. */
  executionProviders?: string[];
  /** Threads of one operator (intra-op); default 1. */
  threads?: number;
}

export const optionsSchema: JsonSchema = {
  type: 'object',
  additionalProperties: false,
  properties: {
    executionProviders: { type: 'array', items: { type: 'string', minLength: 1 }, minItems: 1, default: ['cpu'], description: 'onnxruntime execution providers, in order of preference' },
    threads: { type: 'integer', minimum: 1, default: 1, description: 'threads of one operator (intra-op)' },
  },
};

const WHO = 'providers-runtime';

/** The device of the first provider: what the runtime computes on when every provider is available. */
function deviceOf(provider: string): Device {
  if (provider === 'cpu') return 'cpu';
  return provider === 'cuda' || provider === 'tensorrt' ? 'cuda' : 'gpu';
}

export class ProvidersRuntime implements Runtime {
  readonly name = WHO;
  readonly device: Device;
  readonly threads: number;
  readonly canTrain = false;
  private readonly providers: string[];
  private readonly sessions = new Set<ProviderSession>();

  constructor(options: ProvidersRuntimeOptions = {}) {
    this.providers = [...(options.executionProviders ?? ['cpu'])];
    this.threads = options.threads ?? 1;
    // The config's options are checked against optionsSchema; a caller that builds the class in code is checked here.
    if (this.providers.length === 0 || this.providers.some((p) => typeof p !== 'string' || p === '')) throw new Error(`${WHO}: executionProviders must name one or more providers`);
    if (!Number.isInteger(this.threads) || this.threads < 1) throw new Error(`${WHO}: threads must be a positive integer, got ${this.threads}`);
    this.device = deviceOf(this.providers[0]);
  }

  async describe(): Promise<JsonObject> {
    return { engine: 'onnxruntime-node', executionProviders: this.providers, threads: this.threads };
  }

  async createSession(model: OnnxModel, options: SessionOptions = {}): Promise<InferenceSession> {
    const settings: ort.InferenceSession.SessionOptions = { executionProviders: this.providers, intraOpNumThreads: this.threads, interOpNumThreads: 1 };
    let session: ort.InferenceSession;
    try {
      session = await openSession(model, settings);
    } catch (error) {
      throw new Error(`${WHO}: could not load the ONNX model: ${(error as Error).message}`, { cause: error });
    }
    const wrapped = new ProviderSession(session, options.outputs, () => this.sessions.delete(wrapped));
    this.sessions.add(wrapped);
    return wrapped;
  }

  async dispose(): Promise<void> {
    await Promise.all([...this.sessions].map((session) => session.dispose()));
  }
}

/**
 * A large model keeps its weights in files beside the graph (`externalDataDir`), which onnxruntime finds relative to
 * the graph's own file: the graph is written into that folder for the time it is loaded.
 */
async function openSession(model: OnnxModel, settings: ort.InferenceSession.SessionOptions): Promise<ort.InferenceSession> {
  if (model.externalDataDir === undefined) return ort.InferenceSession.create(model.bytes, settings);
  const file = join(model.externalDataDir, `graph-${randomUUID()}.onnx`);
  await writeFile(file, model.bytes);
  try {
    return await ort.InferenceSession.create(file, settings);
  } finally {
    await rm(file, { force: true });
  }
}

class ProviderSession implements InferenceSession {
  readonly inputNames: readonly string[];
  readonly outputNames: readonly string[];
  private session: ort.InferenceSession | undefined;

  constructor(
    session: ort.InferenceSession,
    private readonly defaultOutputs: string[] | undefined,
    private readonly onDispose: () => void,
  ) {
    this.session = session;
    this.inputNames = [...session.inputNames];
    this.outputNames = [...session.outputNames];
    if (defaultOutputs) checkSessionOutputs(WHO, this.outputNames, defaultOutputs);
  }

  async run(feeds: Record<string, Tensor>, outputs?: string[]): Promise<Record<string, Tensor>> {
    const session = this.session;
    if (!session) throw new Error(`${WHO}: run() on a disposed session`);
    const wanted = outputs ?? this.defaultOutputs ?? this.outputNames;
    // The core's checks, with the messages every runtime gives: missing or extra feeds, data that does not fit the dims.
    checkSessionOutputs(WHO, this.outputNames, wanted);
    checkSessionFeeds(WHO, this.inputNames, feeds);
    const ortFeeds: Record<string, ort.Tensor> = {};
    for (const name of this.inputNames) ortFeeds[name] = new ort.Tensor('float32', feeds[name].data, feeds[name].dims);
    const results = await session.run(ortFeeds, [...wanted]);
    const out: Record<string, Tensor> = {};
    for (const name of wanted) {
      const value = results[name];
      if (value.type !== 'float32') throw new Error(`${WHO}: model output '${name}' is ${value.type}; only float32 outputs are supported`);
      out[name] = { dims: [...value.dims], data: value.data as Float32Array };
    }
    return out;
  }

  async dispose(): Promise<void> {
    const session = this.session;
    if (!session) return;
    this.session = undefined;
    this.onDispose();
    await session.release();
  }
}

// Name, version and aliases come from this package's package.json, so they are written once.
const { name, version, aliases } = pluginPackage(import.meta.url);

export const plugin = definePlugin({
  name,
  version,
  aliases,
  description: 'ONNX graphs on onnxruntime-node with the execution providers you name',
  stages: {
    // Built once per pipeline; pipeline.dispose() disposes it. Without createNumericSession, the scorers' float64
    // numerics run on the onnx runtime plugin, which the pipeline says.
    runtime: { optionsSchema, create: (options: ProvidersRuntimeOptions) => new ProvidersRuntime(options) },
  },
});

export default plugin;
