import { definePlugin, pluginPackage } from '@transformaly/core';
import type { JsonSchema } from '@transformaly/core';
import { OnnxRuntime, type OnnxRuntimeOptions } from './runtime.js';

export type OnnxRuntimePluginOptions = Omit<OnnxRuntimeOptions, 'progress'>;

export const optionsSchema: JsonSchema = {
  type: 'object',
  additionalProperties: false,
  properties: {
    threads: { type: 'integer', minimum: 1, description: 'Intra-op threads of every session, the numeric engine included; default: os.availableParallelism().' },
    interOpThreads: { type: 'integer', minimum: 1, description: 'Inter-op threads; above 1 runs graph branches in parallel.' },
    device: { enum: ['cpu', 'cuda'], default: 'cpu', description: 'Where the ONNX graphs run.' },
    allowCpuFallback: {
      type: 'boolean',
      description: 'With device cuda and no usable CUDA provider, run on the CPU with a warning instead of failing.',
    },
    graphOptimizationLevel: { enum: ['disabled', 'basic', 'extended', 'all'], default: 'all', description: "onnxruntime's graph optimisations." },
    memoryArena: { type: 'boolean', default: true, description: "onnxruntime's CPU memory arena." },
    spinning: { type: 'boolean', default: true, description: 'Whether idle intra-op threads spin waiting for work.' },
  },
};

const { name, version, aliases, provenance } = pluginPackage(import.meta.url);

export const plugin = definePlugin({
  name,
  version,
  aliases,
  provenance,
  description: 'onnxruntime-node: ONNX graphs on the CPU (configurable threads) or on CUDA when its provider is installed; float64 numerics',
  stages: {
    runtime: {
      optionsSchema,
      create: (options: OnnxRuntimePluginOptions, ctx) => new OnnxRuntime({ ...options, progress: ctx.progress }),
    },
  },
});
