import { rm } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import {
  caseFolderName,
  checkDetectorDestination,
  createPipelineFromFile,
  ensureWritableFolder,
  removeStaleTemps,
  resolveInside,
  runIdOf,
  type ProgressReporter,
} from '@transformaly/core';

export interface FitOptions {
  config?: string;
  out?: string;
  /** Discard the training checkpoint of an earlier, unfinished fit instead of resuming from it. */
  restart?: boolean;
}

/**
 * Fits one detector on the config's normal images and saves it as a detector folder. An interrupted fit leaves its
 * training checkpoint, and the same command resumes from it (unless `restart`).
 */
export async function fitCommand(options: FitOptions, progress: ProgressReporter, signal: AbortSignal): Promise<void> {
  const pipeline = await createPipelineFromFile({ configPath: options.config, progress });
  try {
    const { outputDir } = pipeline.config;
    const cases = await pipeline.cases();
    if (cases.length !== 1) {
      throw new Error(
        `fit fits one detector, but the config's protocol gives ${cases.length} cases (${cases.map((c) => c.id).join(', ')}); ` +
          'set protocol.classes to a single class, or use "transformaly run" for every case',
      );
    }
    const [protocolCase] = cases;
    const folder = caseFolderName(protocolCase.id);
    const out = options.out !== undefined ? resolve(options.out) : resolveInside(outputDir, 'detectors', folder);
    // Everything that could stop the save is checked before hours of fitting.
    await ensureWritableFolder(dirname(out), options.out !== undefined ? 'the folder of --out' : 'outputDir');
    await ensureWritableFolder(outputDir, 'outputDir');
    await checkDetectorDestination(out);
    const checkpointDir = resolveInside(outputDir, runIdOf(pipeline.config), 'checkpoints', folder);
    await removeStaleTemps(dirname(out));
    await removeStaleTemps(checkpointDir);
    if (options.restart) await rm(checkpointDir, { recursive: true, force: true });
    const detector = await pipeline.createDetector();
    progress.info(`fitting ${protocolCase.id} on ${protocolCase.train.length} normal images`);
    const summary = await detector.fit(protocolCase.train, { checkpointDir, signal });
    await detector.save(out, { caseId: protocolCase.id });
    await detector.dispose();
    await rm(checkpointDir, { recursive: true, force: true });
    process.stdout.write(
      `detector: ${out}\nfitted on ${summary.fitImages} images, threshold ${summary.threshold.toPrecision(6)} calibrated on ${summary.heldOutImages} held-out images\n`,
    );
  } finally {
    await pipeline.dispose();
  }
}
