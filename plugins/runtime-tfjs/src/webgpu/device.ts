// WebGPU in Node through Dawn (the `webgpu` package's prebuilt dawn.node): one GPU instance per process, the adapter
// Dawn prefers, and tfjs-backend-webgpu registered on a device of that adapter. On Linux Dawn reaches the hardware
// through Vulkan, so an adapter needs a Vulkan loader (libvulkan1) and a driver: the GPU vendor's, or Mesa's
// lavapipe, which runs the same shaders on the CPU.
import * as tf from '@tensorflow/tfjs-core';

/** Which adapters the webgpu backend accepts. */
export type AdapterPolicy = 'auto' | 'gpu' | 'any';

export const ADAPTER_POLICIES: readonly AdapterPolicy[] = ['auto', 'gpu', 'any'];

/** What the adapter is, as Dawn reports it; recorded with every run's results. */
export interface AdapterDescription {
  vendor: string;
  architecture: string;
  device: string;
  description: string;
  /** Dawn's own flag: an implementation on the CPU (lavapipe, SwiftShader) rather than a GPU. */
  isFallbackAdapter: boolean;
  /** Where the shaders run: on the CPU for software rasterisers (lavapipe/llvmpipe, SwiftShader), else a GPU. */
  type: 'gpu' | 'cpu';
  /** The adapter's optional features this runtime can use (`shader-f16`, `subgroups`, subgroup matrices). */
  features: string[];
  /** Largest storage buffer a kernel can bind, in bytes: bounds the images of one training pass. */
  maxStorageBufferBindingSize: number;
}

/** Optional adapter features worth recording (the rest are graphics features). */
const NOTED_FEATURES = ['shader-f16', 'subgroups', 'chromium-experimental-subgroup-matrix', 'timestamp-query'];

/** Debian's packages that give Dawn a Vulkan adapter (lavapipe on the CPU; the loader for any GPU driver). */
export const VULKAN_PACKAGES_HINT =
  'install a Vulkan loader and driver: on Debian/Ubuntu `apt-get install libvulkan1 mesa-vulkan-drivers` ' +
  '(Mesa >= 23: on Debian 12 from bookworm-backports, `apt-get install -t bookworm-backports mesa-vulkan-drivers`), ' +
  "which gives lavapipe, a CPU adapter (use adapter 'any'); for a GPU, its vendor's Vulkan driver (NVIDIA's driver " +
  'installs nvidia_icd.json) beside libvulkan1';

interface Probe {
  ok: true;
  adapter: GPUAdapter;
  description: AdapterDescription;
}
interface ProbeFailure {
  ok: false;
  why: string;
}

let probed: Promise<Probe | ProbeFailure> | undefined;
let registered: Promise<void> | undefined;

function firstLine(error: unknown): string {
  const message = error instanceof Error ? error.message : String(error);
  return message.split('\n').find((line) => line.trim() !== '')?.trim() ?? 'unknown error';
}

const SOFTWARE = /llvmpipe|lavapipe|swiftshader/i;

function describe(adapter: GPUAdapter): AdapterDescription {
  const info = adapter.info;
  const isFallbackAdapter = Boolean((info as { isFallbackAdapter?: boolean }).isFallbackAdapter);
  const software = isFallbackAdapter || info.architecture === 'software' || SOFTWARE.test(`${info.device} ${info.description}`);
  return {
    vendor: info.vendor,
    architecture: info.architecture,
    device: info.device,
    description: info.description,
    isFallbackAdapter,
    type: software ? 'cpu' : 'gpu',
    features: NOTED_FEATURES.filter((f) => adapter.features.has(f)),
    maxStorageBufferBindingSize: adapter.limits.maxStorageBufferBindingSize,
  };
}

/**
 * tfjs-backend-webgpu finds WebGPU as `navigator.gpu` and uses the WebGPU enums (GPUBufferUsage, ...) as globals,
 * as in a browser. Dawn's objects are put there, leaving anything already defined alone.
 */
function installGlobals(gpu: GPU, globals: object): void {
  for (const [name, value] of Object.entries(globals)) {
    if (!(name in globalThis)) Object.defineProperty(globalThis, name, { value, configurable: true, writable: true });
  }
  const nav = (globalThis as { navigator?: object }).navigator;
  if (nav === undefined) Object.defineProperty(globalThis, 'navigator', { value: { gpu }, configurable: true, writable: true });
  else if (!('gpu' in nav)) Object.defineProperty(nav, 'gpu', { value: gpu, configurable: true });
}

/** The adapter Dawn picks (a GPU before a CPU implementation), found once per process. */
export function probeAdapter(): Promise<Probe | ProbeFailure> {
  probed ??= (async (): Promise<Probe | ProbeFailure> => {
    let dawn: typeof import('webgpu');
    try {
      dawn = await import('webgpu');
    } catch (error) {
      return { ok: false, why: `the webgpu package (Dawn) did not load: ${firstLine(error)}` };
    }
    let gpu: GPU;
    try {
      gpu = dawn.create([]);
    } catch (error) {
      return { ok: false, why: `Dawn did not start: ${firstLine(error)}` };
    }
    installGlobals(gpu, dawn.globals);
    const adapter = await gpu.requestAdapter({ powerPreference: 'high-performance' }).catch(() => null);
    if (!adapter) return { ok: false, why: `Dawn found no WebGPU adapter (no Vulkan driver answered); ${VULKAN_PACKAGES_HINT}` };
    return { ok: true, adapter, description: describe(adapter) };
  })();
  return probed;
}

/**
 * Registers tfjs's `webgpu` backend on a device of the probed adapter (once per process), replacing the factory
 * tfjs-backend-webgpu registers on import, which would pick its own adapter.
 */
export function registerWebgpuBackend(probe: Probe): Promise<void> {
  registered ??= (async () => {
    const { WebGPUBackend } = await import('@tensorflow/tfjs-backend-webgpu');
    const { adapter } = probe;
    const limits = adapter.limits;
    // The largest buffers and workgroups the adapter allows (WebGPU's defaults are far smaller), as tfjs itself asks.
    const device = await adapter.requestDevice({
      requiredFeatures: adapter.features.has('timestamp-query') ? ['timestamp-query'] : [],
      requiredLimits: {
        maxBufferSize: limits.maxBufferSize,
        maxStorageBufferBindingSize: limits.maxStorageBufferBindingSize,
        maxComputeWorkgroupStorageSize: limits.maxComputeWorkgroupStorageSize,
        maxComputeWorkgroupsPerDimension: limits.maxComputeWorkgroupsPerDimension,
        maxComputeWorkgroupSizeX: limits.maxComputeWorkgroupSizeX,
        maxComputeInvocationsPerWorkgroup: limits.maxComputeInvocationsPerWorkgroup,
      },
    });
    watchDevice(device);
    tf.removeBackend('webgpu');
    // Priority 0: never the engine's implicit default; runtimes always name their backend.
    tf.registerBackend('webgpu', () => new WebGPUBackend(device, adapter.info), 0);
  })();
  return registered;
}

// A WebGPU device reports invalid work (a binding larger than the adapter allows, memory exhausted) as an
// "uncaptured error" and carries on, leaving outputs undefined; a command buffer holding an invalid command is dropped
// whole, with whatever other work (uploads of weights too) was recorded in it. So the first such error is kept, and
// every read-back from then on fails: nothing computed on the device after it can be trusted.
let deviceError: string | undefined;

function watchDevice(device: GPUDevice): void {
  device.onuncapturederror = (event) => {
    deviceError ??= event.error.message.split('\n')[0];
  };
}

/** Throws once the WebGPU device has reported an error: results read back since then are not valid. */
export function throwOnDeviceError(what: string): void {
  if (deviceError === undefined) return;
  throw new Error(
    `runtime-tfjs: the WebGPU device rejected work, so the results of ${what} (and of any WebGPU work of this process since) are invalid: ` +
      `${deviceError}. A "binding size" error means one tensor exceeds the adapter's maxStorageBufferBindingSize: use smaller batches ` +
      '(batchSize, microBatch); then start the process again.',
  );
}
