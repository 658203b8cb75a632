import { definePlugin, pluginPackage } from '@transformaly/core';
import type { JsonSchema } from '@transformaly/core';
import { VIT_PRESETS } from './arch.js';
import { loadVitBackbone, type VitBackboneOptions } from './backbone.js';

const triple = (what: string) => ({ type: 'array', items: { type: 'number' }, minItems: 3, maxItems: 3, description: what });
const positiveInt = { type: 'integer', minimum: 1 };

export const optionsSchema: JsonSchema = {
  type: 'object',
  additionalProperties: false,
  properties: {
    checkpoint: {
      type: 'string',
      minLength: 1,
      // A relative path (./, ../, ~/) is relative to the config file; anything else may be a hub id.
      resolvePath: 'explicit',
      description: 'A .safetensors file, a model.safetensors.index.json, a folder holding either, or a Hugging Face hub id (org/name).',
    },
    heads: { ...positiveInt, description: "Attention heads, where the checkpoint's config does not say (bare timm files)." },
    layerNormEps: { type: 'number', exclusiveMinimum: 0, description: "LayerNorm epsilon, where the checkpoint's config does not say (timm default 1e-6)." },
    imageSize: {
      oneOf: [positiveInt, { type: 'array', items: positiveInt, minItems: 2, maxItems: 2 }],
      description: 'Input size (N or [height, width]); position embeddings are resampled bicubically if it differs from the checkpoint.',
    },
    mean: triple('Per-channel mean (RGB, on the 0..1 scale); overrides the checkpoint config.'),
    std: triple('Per-channel std (RGB, on the 0..1 scale); overrides the checkpoint config.'),
    resample: { enum: ['bilinear', 'bicubic', 'nearest'], description: 'Resize filter; overrides the checkpoint config.' },
    cacheDir: { type: 'string', resolvePath: true, description: 'Hugging Face hub cache folder (default: HF_HUB_CACHE, HF_HOME/hub, ~/.cache/huggingface/hub).' },
    offline: { type: 'boolean', description: 'Use only the hub cache, never the network.' },
    endpoint: { type: 'string', description: 'Hub URL (default HF_ENDPOINT or https://huggingface.co).' },
    revision: { type: 'string', description: 'Hub branch, tag or commit (default main).' },
    precision: {
      enum: ['float32', 'int8'],
      description: "int8: the blocks' linear layers dynamically quantized (onnxruntime DynamicQuantizeMatMul; runtime onnx only). Default float32.",
    },
    random: {
      type: 'object',
      additionalProperties: false,
      description: 'An untrained model for tests and smoke runs, instead of a checkpoint.',
      properties: {
        seed: { type: 'integer' },
        arch: {
          oneOf: [
            { enum: Object.keys(VIT_PRESETS) },
            {
              type: 'object',
              additionalProperties: false,
              properties: {
                imageSize: { type: 'array', items: positiveInt, minItems: 2, maxItems: 2 },
                patchSize: positiveInt,
                width: positiveInt,
                depth: positiveInt,
                heads: positiveInt,
                mlpDim: positiveInt,
                layerNormEps: { type: 'number', exclusiveMinimum: 0 },
                qkvBias: { type: 'boolean' },
              },
            },
          ],
        },
      },
    },
  },
  oneOf: [{ required: ['checkpoint'] }, { required: ['random'] }],
};

const { name, version, aliases } = pluginPackage(import.meta.url);

export const plugin = definePlugin({
  name,
  version,
  aliases,
  description: 'Vision Transformer from safetensors checkpoints (Hugging Face or timm layout, local or from the hub), run as an ONNX graph',
  stages: {
    backbone: {
      optionsSchema,
      create: (options: VitBackboneOptions, ctx) => loadVitBackbone(options, { runtime: ctx.runtime, progress: ctx.progress }),
    },
  },
});
