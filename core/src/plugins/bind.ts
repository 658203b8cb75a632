// How a plugin's stage enters the core's container. The typed form (`stages: { scorer: { create } }`) is bound here,
// with the scope the stage table gives its kind; the advanced form (`register(options)`) binds itself. Either way the
// instance is checked against its contract when it is resolved.
import { Container, ContainerModule } from 'inversify';
import { STAGE_KIND_NAMES, STAGE_KINDS, type StageSlot } from '../stages.js';
import { TOKENS, type TokenName } from '../tokens.js';
import type { StageContexts, StageKind, TransformalyPlugin } from '../types.js';
import { checkedStage, ContractError } from './contract.js';
import { PluginError } from './loader.js';

/** What a stage's context holds beyond `slot` and `progress`, and the token each comes from. */
const CONTEXT: Record<StageKind, readonly (readonly [key: string, token: TokenName])[]> = {
  data: [],
  runtime: [],
  backbone: [['runtime', 'Runtime']],
  distiller: [['runtime', 'Runtime']],
  scorer: [['numeric', 'NumericEngine']],
  combiner: [['numeric', 'NumericEngine']],
};

/** The module that binds `plugin`'s stage for `slot`: typed stages get the scope of their kind. */
export function stageModule(plugin: TransformalyPlugin, slot: StageSlot, options: unknown): ContainerModule {
  if (!plugin.stages) return registeredModule(plugin, options, slot.path);
  const stage = plugin.stages[slot.kind];
  if (!stage) throw new PluginError(plugin.name, `provides no ${slot.kind} stage (it provides: ${Object.keys(plugin.stages).join(', ') || 'nothing'})`, { stage: slot.path });
  const kind = STAGE_KINDS[slot.kind];
  const deps = CONTEXT[slot.kind];
  return new ContainerModule(({ bind }) => {
    const binding = bind(TOKENS[kind.token]).toResolvedValue(
      async (progress: unknown, ...values: unknown[]) => {
        const ctx = { slot: slot.path, progress, ...Object.fromEntries(deps.map(([key], i) => [key, values[i]])) } as StageContexts[StageKind];
        try {
          return await (stage.create as (o: unknown, c: unknown) => unknown)(options, ctx);
        } catch (error) {
          if (error instanceof PluginError) throw error;
          throw new PluginError(plugin.name, `creating ${kind.label} failed: ${messageOf(error)}`, { stage: slot.path, cause: error });
        }
      },
      [TOKENS.ProgressReporter, ...deps.map(([, token]) => TOKENS[token])],
    );
    if (kind.scope === 'pipeline') binding.inSingletonScope();
    else binding.inTransientScope();
  });
}

/**
 * The advanced form's module, with the mistakes an author of an inversify 6 era plugin makes turned into messages
 * that say what to change.
 */
export function registeredModule(plugin: TransformalyPlugin, options: unknown, stage?: string): ContainerModule {
  let module: unknown;
  try {
    module = plugin.register!(options);
  } catch (error) {
    throw new PluginError(plugin.name, `register() threw: ${messageOf(error)}`, { stage, cause: error });
  }
  const m = module as { load?: unknown; registry?: unknown } | null;
  if (typeof m?.load !== 'function') {
    const found =
      typeof m?.registry === 'function'
        ? 'an inversify 6 ContainerModule (it has registry(), not load())'
        : m === undefined || m === null
          ? String(m)
          : typeof m === 'function'
            ? 'a function'
            : `${(m as object).constructor?.name ?? 'an object'} without load()`;
    throw new PluginError(
      plugin.name,
      `register() must return an inversify 8 ContainerModule, but returned ${found}. ` +
        `Install inversify@^8 beside the plugin, or use the typed form { stages: { <kind>: { create(options, ctx) } } }, which needs no inversify`,
      { stage },
    );
  }
  return module as ContainerModule;
}

/** Loads a module into a container; an inversify 6 style callback is named as such. */
export async function loadModule(container: Container, module: ContainerModule, plugin: TransformalyPlugin, stage?: string): Promise<void> {
  try {
    await container.loadAsync(module);
  } catch (error) {
    const message = messageOf(error);
    const hint = /\b(bind|unbind|isBound|rebind)\b.* is not a function/.test(message)
      ? ' (the ContainerModule callback takes inversify 6 arguments (bind, unbind, ...); inversify 8 passes one object: new ContainerModule(({ bind }) => ...), or use the typed form)'
      : '';
    throw new PluginError(plugin.name, `its bindings failed to load: ${message}${hint}`, { stage, cause: error });
  }
}

/**
 * The kinds of stage a plugin provides: those it declares (typed form), or those its module binds in a scratch
 * container (advanced form).
 */
export async function providedKinds(plugin: TransformalyPlugin, options: unknown): Promise<StageKind[]> {
  if (plugin.stages) return STAGE_KIND_NAMES.filter((k) => plugin.stages![k]);
  const container = new Container();
  await loadModule(container, registeredModule(plugin, options), plugin);
  return STAGE_KIND_NAMES.filter((k) => container.isBound(TOKENS[STAGE_KINDS[k].token]));
}

/**
 * Resolves the stage of `slot` from `container` and checks it against its contract. With `handedOut`, the instances
 * given out before: a per-detector stage must be a new one every time.
 */
export async function resolveStage<T>(container: Container, slot: StageSlot, plugin: TransformalyPlugin, handedOut?: WeakSet<object>): Promise<T> {
  const kind = STAGE_KINDS[slot.kind];
  const owner = { plugin: plugin.name, version: plugin.version, slot: slot.path };
  let instance: unknown;
  try {
    instance = await container.getAsync(TOKENS[kind.token]);
  } catch (error) {
    if (error instanceof PluginError) throw error;
    throw new PluginError(plugin.name, `creating ${kind.label} failed: ${messageOf(error)}`, { stage: slot.path, cause: error });
  }
  if (handedOut && typeof instance === 'object' && instance !== null) {
    if (handedOut.has(instance)) {
      throw new ContractError(
        owner,
        `${kind.contract} is a new instance for every detector and feature space`,
        `the same instance was handed out twice, so fitting one case would refit another (${plugin.register ? 'bind it .inTransientScope()' : 'return a new object from create()'})`,
      );
    }
    handedOut.add(instance);
  }
  return checkedStage(slot.kind, instance as T, owner);
}

/** The parts of a pipeline a stage may need, for building one outside a pipeline (tests, the conformance kit). */
export interface StageDependencies {
  progress: StageContexts['data']['progress'];
  runtime?: StageContexts['backbone']['runtime'];
  numeric?: StageContexts['scorer']['numeric'];
}

/**
 * A resolver of `plugin`'s stage for `slot`, wired as a pipeline wires it (same binding, same scope, same checks),
 * from the given dependencies: each call resolves again, so a per-detector stage is a new instance every time.
 */
export async function stageResolver<T = unknown>(
  plugin: TransformalyPlugin,
  slot: StageSlot,
  options: unknown,
  deps: StageDependencies,
): Promise<() => Promise<T>> {
  const root = new Container();
  root.bind(TOKENS.ProgressReporter).toConstantValue(deps.progress);
  if (deps.runtime) root.bind(TOKENS.Runtime).toConstantValue(deps.runtime);
  if (deps.numeric) root.bind(TOKENS.NumericEngine).toConstantValue(deps.numeric);
  const container = new Container({ parent: root });
  await loadModule(container, stageModule(plugin, slot, options), plugin, slot.path);
  const handedOut = STAGE_KINDS[slot.kind].scope === 'detector' ? new WeakSet<object>() : undefined;
  return () => resolveStage<T>(container, slot, plugin, handedOut);
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
