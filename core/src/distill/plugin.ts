import { ContainerModule } from 'inversify';
import { TOKENS } from '../tokens.js';
import type { Distiller, ProgressReporter, Runtime, TransformalyPlugin } from '../types.js';
import { TransformalyDistiller } from './distiller.js';
import { distillerOptionsSchema, type DistillerOptions } from './options.js';

/**
 * The `transformaly` distiller stage. Transient: each protocol case resolves a fresh, unfitted distiller. Resolving it
 * fails with a clear error when the configured runtime cannot train students.
 */
export const distillerPlugin: TransformalyPlugin<DistillerOptions> = {
  name: 'transformaly',
  description: 'Distiller: a student per selected ViT block trained to reproduce the frozen teacher block (Transformaly fine-tuned features)',
  optionsSchema: distillerOptionsSchema,
  register: (options) =>
    new ContainerModule(({ bind }) => {
      bind<Distiller>(TOKENS.Distiller)
        .toResolvedValue(
          (runtime: Runtime, progress: ProgressReporter) => new TransformalyDistiller(options, runtime, progress),
          [TOKENS.Runtime, TOKENS.ProgressReporter],
        )
        .inTransientScope();
    }),
};
