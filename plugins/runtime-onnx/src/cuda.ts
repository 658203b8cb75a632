import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import * as ort from 'onnxruntime-node';
import onnxProto from 'onnx-proto';

/** The shell command that fetches onnxruntime-node's CUDA 12 provider (read by its postinstall script). */
export const CUDA_INSTALL_COMMAND = 'ONNXRUNTIME_NODE_INSTALL=cuda12 npm install onnxruntime-node';

const INSTALL_HELP =
  `Install it with \`${CUDA_INSTALL_COMMAND}\` (where onnxruntime-node is already installed, ` +
  '`ONNXRUNTIME_NODE_INSTALL=cuda12 npm rebuild onnxruntime-node` re-runs its install script; the npm config ' +
  '`npm_config_onnxruntime_node_install=cuda12` or the flag `--onnxruntime-node-install=cuda12` work too). ' +
  "That install script must be allowed to run and reach NuGet, which hosts the provider. The provider needs an NVIDIA " +
  'driver and the CUDA 12 and cuDNN 9 runtime libraries on the library path. ' +
  'Or allow running on the CPU instead with the runtime option `allowCpuFallback: true`.';

/** Where onnxruntime-node keeps its native libraries; the CUDA provider is looked up next to libonnxruntime. */
function ortBinaryDir(): string {
  const require = createRequire(import.meta.url);
  const main = require.resolve('onnxruntime-node');
  return join(dirname(main), '..', 'bin', 'napi-v6', process.platform, process.arch);
}

function providerLibraryName(): string | undefined {
  if (process.platform === 'linux') return 'libonnxruntime_providers_cuda.so';
  if (process.platform === 'win32') return 'onnxruntime_providers_cuda.dll';
  return undefined;
}

/**
 * Cheap synchronous check: is the CUDA provider library installed next to onnxruntime? Returns the reason it cannot
 * be used, or undefined when the library is present (which does not yet prove a GPU and CUDA libraries are usable).
 */
export function missingCudaProvider(): string | undefined {
  const library = providerLibraryName();
  if (library === undefined || process.arch !== 'x64') {
    return `onnxruntime-node has no CUDA execution provider for ${process.platform}/${process.arch} (only linux/x64 and win32/x64).`;
  }
  const path = join(ortBinaryDir(), library);
  if (!existsSync(path)) {
    return `The CUDA execution provider of onnxruntime-node is not installed (${path} is missing). ${INSTALL_HELP}`;
  }
  return undefined;
}

/** A one-node graph (y = x + x) to try the provider on without touching a real model. */
function probeModel(): Uint8Array {
  const { onnx } = onnxProto;
  const valueInfo = (name: string) => ({
    name,
    type: { tensorType: { elemType: onnx.TensorProto.DataType.FLOAT, shape: { dim: [{ dimValue: 1 }] } } },
  });
  const model = onnx.ModelProto.create({
    irVersion: 8,
    opsetImport: [{ domain: '', version: 17 }],
    producerName: 'transformaly-cuda-probe',
    graph: {
      name: 'probe',
      node: [{ opType: 'Add', input: ['x', 'x'], output: ['y'] }],
      input: [valueInfo('x')],
      output: [valueInfo('y')],
    },
  });
  return onnx.ModelProto.encode(model).finish();
}

let probe: Promise<string | undefined> | undefined;

/**
 * Full check, once per process: creates and runs a trivial session on the CUDA provider. Resolves to the reason CUDA
 * cannot be used, or undefined when it works.
 */
export function probeCuda(): Promise<string | undefined> {
  probe ??= (async () => {
    const missing = missingCudaProvider();
    if (missing !== undefined) return missing;
    let session: ort.InferenceSession | undefined;
    try {
      session = await ort.InferenceSession.create(probeModel(), {
        executionProviders: ['cuda'],
        logSeverityLevel: 4,
      });
      await session.run({ x: new ort.Tensor('float32', new Float32Array([1]), [1]) });
      return undefined;
    } catch (error) {
      return (
        `The CUDA execution provider of onnxruntime-node is installed but failed to start: ${(error as Error).message}. ` +
        'Check that an NVIDIA driver is present and the CUDA 12 and cuDNN 9 libraries are on the library path ' +
        '(LD_LIBRARY_PATH on Linux, PATH on Windows). ' +
        INSTALL_HELP
      );
    } finally {
      await session?.release();
    }
  })();
  return probe;
}
