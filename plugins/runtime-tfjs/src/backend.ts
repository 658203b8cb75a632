// Choosing and starting a tfjs backend. tfjs keeps one engine per process, so the backends are process-wide: each is
// started once, and a runtime switches the engine to its own backend before it computes anything.
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { availableParallelism } from 'node:os';
import { dirname, join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import type { Device } from '@transformaly/core';
import { probeAdapter, registerWebgpuBackend, type AdapterDescription, type AdapterPolicy } from './webgpu/device.js';

export type TfjsBackendName = 'tensorflow' | 'webgpu' | 'wasm' | 'cpu';

/** Every backend, in the order of the automatic choice. */
export const BACKEND_NAMES: readonly TfjsBackendName[] = ['tensorflow', 'webgpu', 'wasm', 'cpu'];

/** The native packages that provide the `tensorflow` backend, in order of preference. */
export const NATIVE_PACKAGES = ['@tensorflow/tfjs-node-gpu', '@tensorflow/tfjs-node'] as const;

/** A started backend and why it was chosen. */
export interface BackendChoice {
  name: TfjsBackendName;
  /** The package that provides it. */
  package: string;
  device: Device;
  /** Threads one operation can use. */
  threads: number;
  /** Whether the wasm binary uses SIMD (wasm only). */
  simd?: boolean;
  /** The WebGPU adapter (webgpu only). */
  adapter?: AdapterDescription;
  /** One line: why this backend, and what was tried before it. */
  reason: string;
}

interface Started {
  ok: true;
  package: string;
  device: Device;
  threads: number;
  simd?: boolean;
  adapter?: AdapterDescription;
  note?: string;
}
interface Failed {
  ok: false;
  why: string;
}
type Attempt = Started | Failed;

const require = createRequire(import.meta.url);
const attempts = new Map<TfjsBackendName, Promise<Attempt>>();

function firstLine(error: unknown): string {
  const message = error instanceof Error ? error.message : String(error);
  return message.split('\n').find((line) => line.trim() !== '')?.trim() ?? 'unknown error';
}

/**
 * Emscripten's Node glue (inside tfjs-backend-wasm) installs process-wide `uncaughtException` and
 * `unhandledRejection` handlers that rethrow, which would turn any unhandled rejection of the host program into a
 * crash. A library must not change that, so handlers added while the backend starts are removed again.
 */
async function withoutNewProcessHandlers<T>(task: () => Promise<T>): Promise<T> {
  type Listener = (...args: unknown[]) => void;
  const events = ['uncaughtException', 'unhandledRejection'];
  const listeners = (event: string) => process.listeners(event as 'uncaughtException') as Listener[];
  const before = new Map(events.map((event) => [event, new Set(listeners(event))]));
  try {
    return await task();
  } finally {
    for (const event of events) {
      for (const listener of listeners(event)) {
        if (!before.get(event)!.has(listener)) process.removeListener(event as 'uncaughtException', listener);
      }
    }
  }
}

/**
 * Why a tfjs-node package cannot load, found without importing it: a failed import of tfjs-node still registers
 * its kernels in tfjs-core (and the next package's import then warns about every one of them). The binding's place
 * follows the package's node-pre-gyp metadata (`binary.module_path`, one folder per N-API version).
 */
function nativeBindingProblem(pkg: string): string | undefined {
  let manifest: string;
  try {
    manifest = require.resolve(`${pkg}/package.json`);
  } catch {
    return 'not installed';
  }
  let binary: { module_name?: string; module_path?: string; napi_versions?: number[] } | undefined;
  try {
    binary = (JSON.parse(readFileSync(manifest, 'utf8')) as { binary?: typeof binary }).binary;
  } catch (error) {
    return `unreadable ${manifest}: ${firstLine(error)}`;
  }
  if (!binary?.module_path || !binary.napi_versions) return undefined;
  const napi = Number(process.versions.napi);
  const name = `${binary.module_name ?? 'tfjs_binding'}.node`;
  const candidates = binary.napi_versions
    .filter((v) => v <= napi)
    .map((v) => join(dirname(manifest), binary.module_path!.replace('{napi_build_version}', String(v)), name));
  if (candidates.some((path) => existsSync(path))) return undefined;
  return `its native binding ${name} is not built (the package's install step downloads libtensorflow; run "npm rebuild ${pkg}")`;
}

async function startTensorflow(threads: number | undefined): Promise<Attempt> {
  const failures: string[] = [];
  // libtensorflow reads its intra-op pool size from the environment when it starts.
  const previous = process.env.TF_NUM_INTRAOP_THREADS;
  if (threads !== undefined && previous === undefined) process.env.TF_NUM_INTRAOP_THREADS = String(threads);
  for (const pkg of NATIVE_PACKAGES) {
    const problem = nativeBindingProblem(pkg);
    if (problem !== undefined) {
      failures.push(`${pkg}: ${problem}`);
      continue;
    }
    try {
      await import(pkg);
    } catch (error) {
      failures.push(`${pkg}: ${firstLine(error)}`);
      continue;
    }
    // A nested copy of tfjs-core (a version mismatch) would hold the backend where this package cannot see it.
    if (tf.findBackendFactory('tensorflow') === null || tf.findBackendFactory('tensorflow') === undefined) {
      failures.push(`${pkg} loaded but registered no 'tensorflow' backend with this copy of @tensorflow/tfjs-core (version mismatch?)`);
      continue;
    }
    if (!(await tf.setBackend('tensorflow'))) {
      failures.push(`${pkg}: the 'tensorflow' backend failed to start (tfjs printed the cause above)`);
      continue;
    }
    const configured = Number(process.env.TF_NUM_INTRAOP_THREADS);
    return {
      ok: true,
      package: pkg,
      device: pkg.endsWith('-gpu') ? 'cuda' : 'cpu',
      threads: Number.isInteger(configured) && configured > 0 ? configured : availableParallelism(),
      note:
        threads !== undefined && previous !== undefined && previous !== String(threads)
          ? `TF_NUM_INTRAOP_THREADS=${previous} from the environment wins over the threads option`
          : undefined,
    };
  }
  if (threads !== undefined && previous === undefined) delete process.env.TF_NUM_INTRAOP_THREADS;
  return { ok: false, why: failures.join('; ') };
}

/** The folder holding tfjs-backend-wasm's .wasm binaries (beside its Node bundle). */
export function wasmBinaryDir(): string {
  return dirname(require.resolve('@tensorflow/tfjs-backend-wasm'));
}

async function startWasm(): Promise<Attempt> {
  let wasm: typeof import('@tensorflow/tfjs-backend-wasm');
  try {
    wasm = await import('@tensorflow/tfjs-backend-wasm');
  } catch (error) {
    return { ok: false, why: `@tensorflow/tfjs-backend-wasm: ${firstLine(error)}` };
  }
  const simd = (await tf.env().getAsync('WASM_HAS_SIMD_SUPPORT')) as boolean;
  const dir = wasmBinaryDir();
  const binary = simd ? 'tfjs-backend-wasm-simd.wasm' : 'tfjs-backend-wasm.wasm';
  if (!existsSync(join(dir, binary))) return { ok: false, why: `${binary} is missing from ${dir}` };
  try {
    // A plain directory path: the Emscripten glue reads binaries with fs under Node (no fetch, no URL needed).
    wasm.setWasmPaths(`${dir}/`);
  } catch (error) {
    // Thrown only after an earlier start of the backend was aborted.
    return { ok: false, why: firstLine(error) };
  }
  const started = await withoutNewProcessHandlers(() => tf.setBackend('wasm'));
  if (!started) return { ok: false, why: `the wasm backend failed to start from ${join(dir, binary)} (tfjs printed the cause above)` };
  return { ok: true, package: '@tensorflow/tfjs-backend-wasm', device: 'cpu', threads: wasm.getThreadsCount(), simd };
}

async function startCpu(): Promise<Attempt> {
  try {
    await import('@tensorflow/tfjs-backend-cpu');
  } catch (error) {
    return { ok: false, why: `@tensorflow/tfjs-backend-cpu: ${firstLine(error)}` };
  }
  if (!(await tf.setBackend('cpu'))) return { ok: false, why: "the cpu backend failed to start (tfjs printed the cause above)" };
  return { ok: true, package: '@tensorflow/tfjs-backend-cpu', device: 'cpu', threads: 1 };
}

/** Threads of a CPU Vulkan adapter: llvmpipe runs every shader on LP_NUM_THREADS threads, by default one per core. */
function llvmpipeThreads(): number {
  const configured = Number(process.env.LP_NUM_THREADS);
  return Number.isInteger(configured) && configured > 0 ? configured : availableParallelism();
}

async function startWebgpu(): Promise<Attempt> {
  const probe = await probeAdapter();
  if (!probe.ok) return { ok: false, why: probe.why };
  try {
    await registerWebgpuBackend(probe);
  } catch (error) {
    return { ok: false, why: `the WebGPU device on ${probe.description.description || probe.description.device} did not start: ${firstLine(error)}` };
  }
  if (!(await tf.setBackend('webgpu'))) return { ok: false, why: 'the webgpu backend failed to start (tfjs printed the cause above)' };
  const onCpu = probe.description.type === 'cpu';
  return {
    ok: true,
    package: '@tensorflow/tfjs-backend-webgpu',
    device: onCpu ? 'cpu' : 'gpu',
    threads: onCpu ? llvmpipeThreads() : 1,
    adapter: probe.description,
  };
}

function attempt(name: TfjsBackendName, threads: number | undefined): Promise<Attempt> {
  let pending = attempts.get(name);
  if (!pending) {
    pending =
      name === 'tensorflow' ? startTensorflow(threads) : name === 'webgpu' ? startWebgpu() : name === 'wasm' ? startWasm() : startCpu();
    attempts.set(name, pending);
  }
  return pending;
}

function choice(name: TfjsBackendName, started: Started, reason: string): BackendChoice {
  const { package: pkg, device, threads: used, simd, adapter } = started;
  return { name, package: pkg, device, threads: used, ...(simd !== undefined && { simd }), ...(adapter && { adapter }), reason };
}

const CPU_SLOWNESS = 'the pure-JavaScript cpu backend is about 50x slower than wasm';

/** One line naming an adapter: its description, vendor and architecture, and where it runs. */
export function adapterLine(adapter: AdapterDescription): string {
  const name = adapter.description || adapter.device || 'unnamed adapter';
  const where = adapter.type === 'cpu' ? `a CPU implementation${adapter.isFallbackAdapter ? ' (fallback adapter)' : ''}` : 'a GPU';
  return `${name} [${[adapter.vendor, adapter.architecture].filter(Boolean).join(', ') || 'vendor unknown'}], ${where}`;
}

/**
 * Why an adapter is not acceptable under `policy`, or undefined when it is. A CPU adapter serves only when asked
 * for: by adapter 'any', or (policy 'auto') by naming the webgpu backend; the automatic choice passes over it,
 * since wasm is faster on the same cores.
 */
function adapterRefusal(adapter: AdapterDescription, policy: AdapterPolicy, named: boolean): string | undefined {
  if (adapter.type === 'gpu' || policy === 'any' || (policy === 'auto' && named)) return undefined;
  const what = `the only WebGPU adapter is ${adapterLine(adapter)}`;
  return named ? `${what}, and adapter 'gpu' accepts only a GPU` : `${what} (slower than wasm; adapter 'any' would accept it)`;
}

export interface BackendRequest {
  backend?: TfjsBackendName;
  threads?: number;
  /** Which WebGPU adapters the webgpu backend accepts; default 'auto'. */
  adapter?: AdapterPolicy;
}

/**
 * Starts the requested backend, or the first that works of tensorflow, webgpu (on a GPU), wasm and cpu. A
 * requested backend that cannot start is an error that says why; the automatic choice says what it skipped and why.
 */
export async function startBackend(request: BackendRequest): Promise<BackendChoice> {
  const { backend: requested, threads, adapter: policy = 'auto' } = request;
  if (requested !== undefined) {
    let started: Attempt;
    let webgpuHint = "see above, or use backend 'wasm'";
    if (requested === 'webgpu') {
      const probe = await probeAdapter();
      const refusal = probe.ok ? adapterRefusal(probe.description, policy, true) : probe.why;
      if (probe.ok) webgpuHint = "install the GPU's Vulkan driver beside libvulkan1, use adapter 'any' to run on this adapter, or use backend 'wasm'";
      started = refusal === undefined ? await attempt(requested, threads) : { ok: false, why: refusal };
    } else started = await attempt(requested, threads);
    if (!started.ok) {
      const hint =
        requested === 'tensorflow'
          ? `install ${NATIVE_PACKAGES[1]} (or ${NATIVE_PACKAGES[0]}; their install downloads libtensorflow), or use backend 'wasm'`
          : requested === 'webgpu'
            ? webgpuHint
            : requested === 'wasm'
              ? "reinstall @tensorflow/tfjs-backend-wasm, or use backend 'cpu'"
              : 'reinstall @tensorflow/tfjs-backend-cpu';
      throw new Error(`runtime-tfjs: backend '${requested}' was requested but is not available: ${started.why}. To fix: ${hint}`);
    }
    await tf.setBackend(requested);
    const detail =
      requested === 'cpu'
        ? ` (${CPU_SLOWNESS})`
        : started.adapter
          ? `, on ${adapterLine(started.adapter)}${started.adapter.type === 'cpu' ? ': the GPU code paths run on the CPU, slower than wasm' : ''}`
          : '';
    return choice(requested, started, `requested in the options${detail}`);
  }
  const skipped: string[] = [];
  for (const name of BACKEND_NAMES) {
    if (name === 'webgpu') {
      const probe = await probeAdapter();
      const refusal = probe.ok ? adapterRefusal(probe.description, policy, false) : probe.why;
      if (refusal !== undefined) {
        skipped.push(`webgpu unavailable (${refusal})`);
        continue;
      }
    }
    const started = await attempt(name, threads);
    if (!started.ok) {
      skipped.push(`${name} unavailable (${started.why})`);
      continue;
    }
    await tf.setBackend(name);
    const why =
      name === 'tensorflow'
        ? `native libtensorflow through ${started.package}`
        : name === 'webgpu'
          ? `WebGPU (Dawn) on ${adapterLine(started.adapter!)}`
          : name === 'wasm'
            ? `${started.simd ? 'WebAssembly with SIMD' : 'WebAssembly without SIMD (slower)'}, single-threaded under Node`
            : CPU_SLOWNESS;
    const parts = [why, ...skipped, ...(started.note ? [started.note] : [])];
    return choice(name, started, parts.join('; '));
  }
  throw new Error(`runtime-tfjs: no tfjs backend could start: ${skipped.join('; ')}`);
}

/** Makes `name` the engine's backend (a synchronous switch once it has started). */
export async function activateBackend(name: TfjsBackendName): Promise<void> {
  if (tf.getBackend() !== name) await tf.setBackend(name);
}
