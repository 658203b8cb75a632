// Busy time per stage of a fit or a scoring run (loading images, preprocessing, the teacher, the students, ...),
// process-wide and off unless someone starts it (`npm run bench` does): each stage times itself with `timed`, which
// costs one check when the profile is off. Stages named `wait: ...` are time one stage spent waiting for another.

export interface StageTime {
  seconds: number;
  calls: number;
}

let stages: Map<string, StageTime> | undefined;

export const stageProfile = {
  /** Starts (or restarts) collecting. */
  start(): void {
    stages = new Map();
  },
  /** Stops collecting; returns the seconds and calls of every stage seen. */
  stop(): Record<string, StageTime> {
    const out = Object.fromEntries(stages ?? []);
    stages = undefined;
    return out;
  },
  /** Adds `seconds` to a stage (work timed elsewhere, e.g. in a worker thread). */
  add(stage: string, seconds: number): void {
    if (!stages) return;
    const time = stages.get(stage);
    if (time) {
      time.seconds += seconds;
      time.calls++;
    } else {
      stages.set(stage, { seconds, calls: 1 });
    }
  },
  get active(): boolean {
    return stages !== undefined;
  },
};

/** Runs `work`, adding its duration to `stage` while the profile is on. */
export async function timed<T>(stage: string, work: () => T | Promise<T>): Promise<T> {
  if (!stages) return work();
  const start = performance.now();
  try {
    return await work();
  } finally {
    stageProfile.add(stage, (performance.now() - start) / 1000);
  }
}
