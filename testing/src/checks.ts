// What every conformance suite shares: checks as named functions that throw a descriptive error, running them all
// (ConformanceError lists every broken rule), registering them with a test framework, and making the instances under
// test the way a pipeline makes them.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  SilentProgress,
  STAGE_KINDS,
  STAGE_SLOTS,
  checkedStage,
  ContractError,
  createNumericEngine,
  describeValue,
  readSafetensors,
  stageResolver,
  stageStateProblem,
  writeSafetensors,
  type JsonObject,
  type NumericEngine,
  type Runtime,
  type StageContracts,
  type StageDependencies,
  type StageKind,
  type StageState,
  type TransformalyPlugin,
} from '@transformaly/core';
import { OnnxRuntime } from '@transformaly/runtime-onnx';

/** One rule of a stage contract, checked by `run` (which throws a CheckFailure naming the rule when it is broken). */
export interface Check {
  /** Short, stable identifier, e.g. `state-round-trip`. */
  id: string;
  /** The rule in words. */
  rule: string;
  run(): Promise<void>;
}

export class CheckFailure extends Error {
  constructor(
    readonly id: string,
    readonly rule: string,
    detail: string,
    options?: { cause?: unknown },
  ) {
    super(`${id}: ${rule}: ${detail}`, options);
    this.name = 'CheckFailure';
  }
}

/** Every rule a stage broke, one line each. */
export class ConformanceError extends Error {
  constructor(
    readonly subject: string,
    readonly contract: string,
    readonly failures: CheckFailure[],
    total: number,
  ) {
    super(`${subject} breaks ${failures.length} of ${total} ${contract} rules:\n${failures.map((f) => `  - ${f.message}`).join('\n')}`);
    this.name = 'ConformanceError';
  }
}

/** Runs every check; throws a ConformanceError listing all the broken rules, or returns the ids of the rules kept. */
export async function runChecks(checks: readonly Check[], subject: string, contract: string): Promise<string[]> {
  const failures: CheckFailure[] = [];
  for (const check of checks) {
    try {
      await check.run();
    } catch (error) {
      failures.push(error instanceof CheckFailure ? error : new CheckFailure(check.id, check.rule, messageOf(error), { cause: error }));
    }
  }
  if (failures.length > 0) throw new ConformanceError(subject, contract, failures, checks.length);
  return checks.map((c) => c.id);
}

/**
 * Registers each check as a test of the caller's framework: `registerChecks(densityScorerChecks(plugin), it)` under
 * vitest or jest, `registerChecks(..., test)` under node:test.
 */
export function registerChecks(checks: readonly Check[], test: (name: string, fn: () => Promise<void>) => unknown, prefix = ''): void {
  for (const check of checks) test(`${prefix}${check.id}: ${check.rule}`, () => check.run());
}

/** A check whose failures carry its id and rule. */
export function check(id: string, rule: string, body: (fail: (detail: string) => never) => Promise<void>): Check {
  const fail = (detail: string): never => {
    throw new CheckFailure(id, rule, detail);
  };
  return {
    id,
    rule,
    run: async () => {
      try {
        await body(fail);
      } catch (error) {
        if (error instanceof CheckFailure) throw error;
        throw new CheckFailure(id, rule, `threw ${messageOf(error)}`, { cause: error });
      }
    },
  };
}

/** What a suite checks: a plugin (with options for its stage), or a factory of instances. */
export type Subject<K extends StageKind> = TransformalyPlugin | { plugin: TransformalyPlugin; options?: unknown } | (() => StageContracts[K] | Promise<StageContracts[K]>);

export interface SubjectOptions {
  /** The numeric engine handed to scorers and combiners; default: one on onnxruntime with one thread. */
  numeric?: NumericEngine;
  /** The runtime handed to backbones and distillers; default: onnxruntime with one thread. */
  runtime?: Runtime;
}

let defaultRuntime: OnnxRuntime | undefined;
let defaultEngine: NumericEngine | undefined;

/** The runtime the kit hands to stages given none (onnxruntime, one thread), for a plugin's own tests too. */
export function kitRuntime(): OnnxRuntime {
  return (defaultRuntime ??= new OnnxRuntime({ threads: 1 }));
}

/** The numeric engine the kit hands to scorers and combiners given none, on `kitRuntime()`. */
export function kitNumericEngine(): NumericEngine {
  return (defaultEngine ??= createNumericEngine(kitRuntime()));
}

/** Releases the engine and runtime the kit made (for suites given none, and by `kitRuntime`, `kitNumericEngine`). */
export async function disposeKit(): Promise<void> {
  await defaultEngine?.dispose();
  await defaultRuntime?.dispose();
  defaultEngine = undefined;
  defaultRuntime = undefined;
}

/** The subject's name for messages. */
export function subjectName(subject: Subject<StageKind>): string {
  if (typeof subject === 'function') return subject.name ? `factory ${subject.name}` : 'the factory';
  const plugin = 'plugin' in subject && typeof subject.plugin === 'object' ? subject.plugin : (subject as TransformalyPlugin);
  return `plugin "${plugin.name}"`;
}

/**
 * A maker of instances as a pipeline makes them: through the core's binding of the plugin (same scope, same contract
 * checks), or from the factory, checked against the same contract.
 */
export function instances<K extends StageKind>(kind: K, subject: Subject<K>, options: SubjectOptions = {}): () => Promise<StageContracts[K]> {
  const slot = STAGE_SLOTS.find((s) => s.kind === kind)!;
  if (typeof subject === 'function') {
    const owner = { plugin: 'factory', slot: slot.path };
    const handedOut = new WeakSet<object>();
    return async () => {
      const instance = await subject();
      if (STAGE_KINDS[kind].scope === 'detector' && typeof instance === 'object' && instance !== null) {
        if (handedOut.has(instance)) {
          throw new ContractError(owner, `${STAGE_KINDS[kind].contract} is a new instance for every detector and feature space`, 'the factory returned the same instance twice');
        }
        handedOut.add(instance);
      }
      return checkedStage(kind, instance, owner);
    };
  }
  const { plugin, options: stageOptions } = 'plugin' in subject && typeof subject.plugin === 'object' ? subject : { plugin: subject as TransformalyPlugin, options: {} };
  let resolver: Promise<() => Promise<StageContracts[K]>> | undefined;
  return async () => {
    resolver ??= stageResolver<StageContracts[K]>(plugin, slot, stageOptions ?? {}, dependencies(kind, options));
    return (await resolver)();
  };
}

function dependencies(kind: StageKind, options: SubjectOptions): StageDependencies {
  const deps: StageDependencies = { progress: new SilentProgress() };
  if (kind === 'scorer' || kind === 'combiner') deps.numeric = options.numeric ?? kitNumericEngine();
  if (kind === 'backbone' || kind === 'distiller') deps.runtime = options.runtime ?? kitRuntime();
  return deps;
}

export function contractName(kind: StageKind): string {
  return STAGE_KINDS[kind].contract;
}

/** Runs `fn`, which must throw or reject; returns the error. */
export async function expectRefusal(fn: () => unknown, fail: (detail: string) => never, what: string): Promise<unknown> {
  let result: unknown;
  try {
    result = await fn();
  } catch (error) {
    return error;
  }
  return fail(`${what} was accepted (returned ${describeValue(result)}); it must throw`);
}

/**
 * The state as a saved detector gives it back: arrays through a safetensors file, meta through JSON. A state that
 * cannot take this trip cannot be saved.
 */
export async function throughFile(state: StageState, fail: (detail: string) => never): Promise<StageState> {
  const problem = stageStateProblem(state);
  if (problem) fail(`exportState() returned no StageState: ${problem}`);
  let meta: JsonObject;
  try {
    meta = JSON.parse(JSON.stringify(state.meta)) as JsonObject;
  } catch (error) {
    return fail(`exportState().meta is not JSON: ${messageOf(error)}`);
  }
  const dir = await mkdtemp(join(tmpdir(), 'transformaly-kit-'));
  try {
    const file = join(dir, 'stage.safetensors');
    await writeSafetensors(file, state.arrays);
    return { meta, arrays: (await readSafetensors(file)).arrays };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** The first index where two score arrays differ bitwise (NaN equal to NaN), or -1. */
export function firstDifference(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) return Math.min(a.length, b.length);
  for (let i = 0; i < a.length; i++) if (!Object.is(a[i], b[i])) return i;
  return -1;
}

export function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
