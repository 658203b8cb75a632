import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { createPipelineFromFile, runIdOf, type ProgressReporter } from '@transformaly/core';

/** Fits one detector on the config's normal images and saves it as a detector folder. */
export async function fitCommand(options: { config?: string; out?: string; resume?: boolean }, progress: ProgressReporter, signal: AbortSignal): Promise<void> {
  const pipeline = await createPipelineFromFile({ configPath: options.config, progress });
  try {
    const cases = await pipeline.cases();
    if (cases.length !== 1) {
      throw new Error(
        `fit fits one detector, but the config's protocol gives ${cases.length} cases (${cases.map((c) => c.id).join(', ')}); ` +
          'set protocol.classes to a single class, or use "transformaly run" for every case',
      );
    }
    const [protocolCase] = cases;
    const out = options.out ?? join(pipeline.config.outputDir, 'detectors', protocolCase.id.replace(/[^A-Za-z0-9._-]+/g, '_'));
    const checkpointDir = join(pipeline.config.outputDir, runIdOf(pipeline.config), 'checkpoints', protocolCase.id.replace(/[^A-Za-z0-9._-]+/g, '_'));
    if (!options.resume) await rm(checkpointDir, { recursive: true, force: true });
    const detector = await pipeline.createDetector();
    progress.info(`fitting ${protocolCase.id} on ${protocolCase.train.length} normal images`);
    const summary = await detector.fit(protocolCase.train, { checkpointDir, signal });
    await pipeline.saveDetector(detector, out, { caseId: protocolCase.id });
    await rm(checkpointDir, { recursive: true, force: true });
    process.stdout.write(
      `detector: ${out}\nfitted on ${summary.fitImages} images, threshold ${summary.threshold.toPrecision(6)} calibrated on ${summary.heldOutImages} held-out images\n`,
    );
  } finally {
    await pipeline.dispose();
  }
}
