// Response schemas: Fastify serializes answers through them, and Serve.md documents the same fields.

export const statusSchema = {
  type: 'object',
  required: ['status'],
  properties: { status: { type: 'string' }, message: { type: 'string' } },
} as const;

export const errorSchema = {
  type: 'object',
  required: ['statusCode', 'error', 'message'],
  properties: { statusCode: { type: 'integer' }, error: { type: 'string' }, message: { type: 'string' } },
} as const;

const number = { type: 'number' } as const;
const integer = { type: 'integer' } as const;

export const scoreSchema = {
  type: 'object',
  required: ['images', 'timing'],
  properties: {
    images: {
      type: 'array',
      items: {
        type: 'object',
        required: ['format', 'width', 'height', 'scores', 'threshold', 'anomalous', 'timing'],
        properties: {
          name: { type: 'string' },
          format: { type: 'string' },
          width: integer,
          height: integer,
          scores: {
            type: 'object',
            required: ['pretrained', 'combined'],
            properties: { pretrained: number, finetuned: number, combined: number },
          },
          threshold: number,
          anomalous: { type: 'boolean' },
          timing: {
            type: 'object',
            required: ['decodeMs', 'queueMs', 'batchMs', 'batchImages'],
            properties: { decodeMs: number, queueMs: number, batchMs: number, batchImages: integer },
          },
        },
      },
    },
    timing: { type: 'object', required: ['totalMs'], properties: { totalMs: number } },
  },
} as const;

const anyObject = { type: 'object', additionalProperties: true } as const;

export const detectorSchema = {
  type: 'object',
  required: ['caseId', 'createdAt', 'backbone', 'spaces', 'threshold', 'plugins', 'packages', 'limits'],
  properties: {
    caseId: { type: ['string', 'null'] },
    createdAt: { type: 'string' },
    backbone: {
      type: 'object',
      required: ['id', 'sha256', 'untrained', 'imageSize'],
      properties: { id: { type: 'string' }, sha256: { type: 'string' }, untrained: { type: 'boolean' }, imageSize: { type: 'array', items: integer } },
    },
    spaces: { type: 'array', items: { type: 'string' } },
    threshold: number,
    plugins: { type: 'object', additionalProperties: anyObject },
    packages: {
      type: 'object',
      required: ['fitted', 'serving'],
      properties: { fitted: { type: 'object', additionalProperties: { type: 'string' } }, serving: { type: 'object', additionalProperties: { type: 'string' } } },
    },
    limits: {
      type: 'object',
      properties: {
        batchSize: integer,
        batchWaitMs: number,
        maxQueue: integer,
        timeoutMs: integer,
        bodyLimit: integer,
        maxFiles: integer,
        maxPixels: integer,
        decodeConcurrency: integer,
      },
    },
  },
} as const;
