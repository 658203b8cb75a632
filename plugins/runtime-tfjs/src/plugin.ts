import { ContainerModule } from 'inversify';
import { TOKENS, TransformalyDistiller, distillerOptionsSchema } from '@transformaly/core';
import type { Distiller, DistillerOptions, JsonSchema, ProgressReporter, Runtime, TransformalyPlugin } from '@transformaly/core';
import { TfjsRuntime, type TfjsRuntimeOptions } from './runtime.js';

export type TfjsRuntimePluginOptions = Omit<TfjsRuntimeOptions, 'progress'>;

export const optionsSchema: JsonSchema = {
  type: 'object',
  additionalProperties: false,
  properties: {
    backend: {
      enum: ['tensorflow', 'webgpu', 'wasm', 'cpu'],
      description:
        "tfjs backend; default: the first that works of 'tensorflow' (@tensorflow/tfjs-node-gpu or -node), 'webgpu' on a GPU adapter, 'wasm', 'cpu' (about 50x slower than wasm).",
    },
    adapter: {
      enum: ['auto', 'gpu', 'any'],
      description:
        "WebGPU adapters the webgpu backend accepts: 'gpu' only a GPU, 'any' also a CPU implementation (lavapipe, SwiftShader); 'auto' (default) a CPU one only when backend is 'webgpu'.",
    },
    threads: {
      type: 'integer',
      minimum: 1,
      description: "Threads of the 'tensorflow' backend (TF_NUM_INTRAOP_THREADS); wasm and cpu run single-threaded under Node.",
    },
    microBatch: {
      type: 'integer',
      minimum: 1,
      description:
        'Images per student forward/backward pass; larger batches are split and their gradients accumulated (default: what fits the wasm heap, or on webgpu one storage binding).',
    },
  },
};

/** The runtime stage: every ONNX graph (the backbone) and, unless a distiller says otherwise, the students on tfjs. */
export const plugin: TransformalyPlugin<TfjsRuntimePluginOptions> = {
  name: '@transformaly/runtime-tfjs',
  description: "TensorFlow.js: ONNX graphs and student training on tfjs-node ('tensorflow'), WebGPU (Dawn), wasm (SIMD) or cpu",
  optionsSchema,
  register(options: TfjsRuntimePluginOptions = {}) {
    return new ContainerModule(({ bind }) => {
      bind<Runtime>(TOKENS.Runtime)
        .toResolvedValue((progress: ProgressReporter) => new TfjsRuntime({ ...options, progress }), [TOKENS.ProgressReporter])
        .inSingletonScope();
    });
  },
};

export interface TfjsStudentsOptions extends DistillerOptions {
  /** Options of the tfjs runtime that trains the students. */
  tfjs?: TfjsRuntimePluginOptions;
}

export const studentsOptionsSchema: JsonSchema = {
  ...distillerOptionsSchema,
  description: "The 'transformaly' distiller with its students on tfjs (the teacher stays on the configured runtime).",
  properties: { ...(distillerOptionsSchema.properties as Record<string, unknown>), tfjs: optionsSchema },
};

/**
 * A distiller stage: the built-in `transformaly` distiller, whose students train on their own tfjs runtime while the
 * teacher (the backbone) runs on whatever runtime the config names, e.g. onnxruntime. One tfjs runtime serves every
 * protocol case of a run.
 */
export const studentsPlugin: TransformalyPlugin<TfjsStudentsOptions> = {
  name: 'transformaly-tfjs',
  description: "Distiller 'transformaly' with the students trained on tfjs; the teacher stays on the configured runtime",
  optionsSchema: studentsOptionsSchema,
  register(options: TfjsStudentsOptions = {}) {
    const { tfjs, ...distiller } = options;
    let runtime: TfjsRuntime | undefined;
    return new ContainerModule(({ bind }) => {
      bind<Distiller>(TOKENS.Distiller)
        .toResolvedValue(
          (progress: ProgressReporter) => {
            runtime ??= new TfjsRuntime({ ...tfjs, progress });
            return new TransformalyDistiller(distiller, runtime, progress);
          },
          [TOKENS.ProgressReporter],
        )
        .inTransientScope();
    });
  },
};
