import { ContainerModule } from 'inversify';
import { TOKENS } from '@transformaly/core';
import type { JsonSchema, ProgressReporter, Runtime, TransformalyPlugin } from '@transformaly/core';
import { OnnxRuntime, type OnnxRuntimeOptions } from './runtime.js';

export type OnnxRuntimePluginOptions = Omit<OnnxRuntimeOptions, 'progress'>;

export const optionsSchema: JsonSchema = {
  type: 'object',
  additionalProperties: false,
  properties: {
    threads: { type: 'integer', minimum: 1, description: 'Intra-op threads; default: os.availableParallelism().' },
    interOpThreads: { type: 'integer', minimum: 1, description: 'Inter-op threads; above 1 runs graph branches in parallel.' },
    device: { enum: ['cpu', 'cuda'], description: "Default 'cpu'." },
    allowCpuFallback: {
      type: 'boolean',
      description: 'With device cuda and no usable CUDA provider, run on the CPU with a warning instead of failing.',
    },
    graphOptimizationLevel: { enum: ['disabled', 'basic', 'extended', 'all'], description: "Default 'all'." },
    memoryArena: { type: 'boolean', description: "onnxruntime's CPU memory arena; default on." },
    spinning: { type: 'boolean', description: 'Whether idle intra-op threads spin waiting for work; default on.' },
  },
};

export const plugin: TransformalyPlugin<OnnxRuntimePluginOptions> = {
  name: '@transformaly/runtime-onnx',
  description: 'onnxruntime-node: ONNX graphs on the CPU (configurable threads) or on CUDA when its provider is installed',
  optionsSchema,
  register(options: OnnxRuntimePluginOptions = {}) {
    return new ContainerModule(({ bind }) => {
      bind<Runtime>(TOKENS.Runtime)
        .toResolvedValue(
          (progress: ProgressReporter) => new OnnxRuntime({ ...options, progress }),
          [TOKENS.ProgressReporter],
        )
        .inSingletonScope();
    });
  },
};
