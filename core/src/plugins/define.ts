import type { TransformalyPlugin } from '../types.js';
import { pluginPackage } from './packages.js';

/**
 * Typed identity for a plugin object: the stage key decides which interface `create` must return, and `ctx` is typed
 * for that kind of stage.
 */
export function definePlugin<P extends TransformalyPlugin>(plugin: P): P {
  return plugin;
}

/** The core's own package: name, version and the engines it runs on (sharp decodes the images). */
export const CORE_PACKAGE = pluginPackage(import.meta.url);

const builtIn = new WeakSet<TransformalyPlugin>();

/** A stage that ships with the core: its version and engines are the core's. */
export function corePlugin(plugin: Omit<TransformalyPlugin, 'version'>): TransformalyPlugin {
  const out = { ...plugin, version: CORE_PACKAGE.version, provenance: CORE_PACKAGE.provenance };
  builtIn.add(out);
  return out;
}

/** Whether a plugin ships with the core (so its version is the core's, not a package's). */
export function isCorePlugin(plugin: TransformalyPlugin): boolean {
  return builtIn.has(plugin);
}
