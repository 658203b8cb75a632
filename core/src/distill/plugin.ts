import { corePlugin } from '../plugins/define.js';
import type { TransformalyPlugin } from '../types.js';
import { TransformalyDistiller } from './distiller.js';
import { distillerOptionsSchema, resolveDistillerOptions, type DistillerOptions } from './options.js';

/**
 * The `transformaly` distiller stage: a fresh, unfitted distiller per detector. Creating it fails with a clear error
 * when the configured runtime cannot train students.
 */
export const distillerPlugin: TransformalyPlugin = corePlugin({
  name: 'transformaly',
  description: 'Distiller: a student per selected ViT block trained to reproduce the frozen teacher block (Transformaly fine-tuned features)',
  stages: {
    distiller: {
      optionsSchema: distillerOptionsSchema,
      checkOptions: (options: DistillerOptions) => void resolveDistillerOptions(options),
      create: (options: DistillerOptions, ctx) => new TransformalyDistiller(options, ctx.runtime, ctx.progress),
    },
  },
});
