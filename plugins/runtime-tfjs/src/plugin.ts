import { TransformalyDistiller, definePlugin, distillerOptionsSchema, pluginPackage, resolveDistillerOptions } from '@transformaly/core';
import type { DistillerOptions, JsonSchema } from '@transformaly/core';
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

export interface TfjsStudentsOptions extends DistillerOptions {
  /** Options of the tfjs runtime that trains the students. */
  tfjs?: TfjsRuntimePluginOptions;
}

export const studentsOptionsSchema: JsonSchema = {
  ...distillerOptionsSchema,
  description: "The 'transformaly' distiller with its students on tfjs (the teacher stays on the configured runtime).",
  properties: { ...(distillerOptionsSchema.properties as Record<string, unknown>), tfjs: optionsSchema },
};

const { name, version, aliases, provenance } = pluginPackage(import.meta.url);

/** One tfjs runtime trains the students of every protocol case of a pipeline (tfjs keeps one engine per process). */
const studentRuntimes = new WeakMap<object, TfjsRuntime>();

/**
 * Two stages: the runtime (every ONNX graph, the backbone, and the students unless a distiller says otherwise), and
 * a distiller: the built-in `transformaly` distiller whose students train on their own tfjs runtime while the teacher
 * (the backbone) runs on whatever runtime the config names, e.g. onnxruntime (`distiller: 'transformaly-tfjs'`).
 */
export const plugin = definePlugin({
  name,
  version,
  aliases,
  provenance,
  description: "TensorFlow.js: ONNX graphs and student training on tfjs-node ('tensorflow'), WebGPU (Dawn), wasm (SIMD) or cpu",
  stages: {
    runtime: {
      optionsSchema,
      create: (options: TfjsRuntimePluginOptions, ctx) => new TfjsRuntime({ ...options, progress: ctx.progress }),
    },
    distiller: {
      optionsSchema: studentsOptionsSchema,
      description: "Distiller 'transformaly' with the students trained on tfjs; the teacher stays on the configured runtime",
      checkOptions: (options: TfjsStudentsOptions) => void resolveDistillerOptions(withoutTfjs(options)),
      create: (options: TfjsStudentsOptions, ctx) => {
        // Keyed by the options object the pipeline holds for this slot: one runtime per pipeline, not per process.
        let runtime = studentRuntimes.get(options);
        if (!runtime) {
          runtime = new TfjsRuntime({ ...options.tfjs, progress: ctx.progress });
          studentRuntimes.set(options, runtime);
        }
        return new TransformalyDistiller(withoutTfjs(options), runtime, ctx.progress);
      },
    },
  },
});

function withoutTfjs(options: TfjsStudentsOptions): DistillerOptions {
  const { tfjs: _tfjs, ...distiller } = options;
  return distiller;
}

/** @deprecated the same plugin: its `distiller` stage. Kept for configs that name `@transformaly/runtime-tfjs/students`. */
export const studentsPlugin = plugin;
