import type { JsonSchema } from '../types.js';

const stageRef: JsonSchema = {
  oneOf: [
    { type: 'string', minLength: 1 },
    {
      type: 'object',
      properties: {
        use: { type: 'string', minLength: 1 },
        options: { type: 'object' },
      },
      required: ['use'],
      additionalProperties: false,
    },
  ],
};

/** The core's part of the config schema; each stage's `options` is checked against its plugin's own schema. */
export const coreConfigSchema: JsonSchema = {
  $id: 'transformaly:config',
  type: 'object',
  properties: {
    data: stageRef,
    protocol: {
      type: 'object',
      properties: {
        mode: { enum: ['unimodal', 'multimodal'] },
        classes: {
          oneOf: [{ const: 'all' }, { type: 'array', items: { type: 'string' }, minItems: 1, uniqueItems: true }],
        },
        limit: {
          type: 'object',
          properties: {
            train: { type: 'integer', minimum: 2 },
            testPerClass: { type: 'integer', minimum: 1 },
          },
          additionalProperties: false,
        },
      },
      required: ['mode'],
      additionalProperties: false,
    },
    backbone: stageRef,
    runtime: stageRef,
    distiller: { oneOf: [{ const: false }, stageRef] },
    scorers: {
      type: 'object',
      properties: { pretrained: stageRef, finetuned: stageRef },
      additionalProperties: false,
    },
    combiner: stageRef,
    batchSize: { type: 'integer', minimum: 1 },
    skipBadFiles: { type: 'boolean' },
    seed: { type: 'integer', minimum: 0 },
    validationFraction: { type: 'number', minimum: 0, exclusiveMaximum: 1 },
    threshold: {
      oneOf: [
        {
          type: 'object',
          properties: { quantile: { type: 'number', minimum: 0, maximum: 1 } },
          required: ['quantile'],
          additionalProperties: false,
        },
        {
          type: 'object',
          properties: { contamination: { type: 'number', minimum: 0, maximum: 1 } },
          required: ['contamination'],
          additionalProperties: false,
        },
      ],
    },
    outputDir: { type: 'string', minLength: 1, resolvePath: true },
    plugins: { type: 'array', items: { type: 'string', minLength: 1 } },
  },
  required: ['data', 'backbone'],
  additionalProperties: false,
};
