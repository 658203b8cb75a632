import { BUILTIN_PLUGINS, loadPlugin, loadConfigFile, PLUGIN_ALIASES, type TransformalyPlugin } from '@transformaly/core';
import { dirname } from 'node:path';

/** Lists the built-in stages, the first-party plugins that are installed, and the plugins the config names. */
export async function pluginsCommand(options: { config?: string }): Promise<void> {
  const rows: { ref: string; plugin?: TransformalyPlugin; problem?: string }[] = [];
  for (const [ref, plugin] of BUILTIN_PLUGINS) rows.push({ ref, plugin });
  const refs = new Set<string>(Object.keys(PLUGIN_ALIASES));
  let baseDir = process.cwd();
  try {
    const { config, file } = await loadConfigFile({ configPath: options.config });
    baseDir = dirname(file);
    collectRefs(config, refs);
  } catch (error) {
    if (options.config) throw error;
  }
  for (const ref of refs) {
    if (BUILTIN_PLUGINS.has(ref)) continue;
    try {
      rows.push({ ref, plugin: await loadPlugin(ref, { baseDir }) });
    } catch (error) {
      rows.push({ ref, problem: (error as Error).message });
    }
  }
  const out: string[] = [];
  for (const { ref, plugin, problem } of rows) {
    if (!plugin) {
      out.push(`${ref}\n  not available: ${problem}\n`);
      continue;
    }
    out.push(`${ref}${plugin.name !== ref ? `  (${plugin.name})` : ''}${plugin.description ? `\n  ${plugin.description}` : ''}`);
    const props = (plugin.optionsSchema?.properties ?? {}) as Record<string, { type?: unknown; description?: string; enum?: unknown[] }>;
    const required = new Set((plugin.optionsSchema?.required ?? []) as string[]);
    for (const [name, schema] of Object.entries(props)) {
      const type = schema.enum ? schema.enum.map((v) => JSON.stringify(v)).join(' | ') : Array.isArray(schema.type) ? schema.type.join(' | ') : (schema.type ?? 'any');
      out.push(`    ${name}${required.has(name) ? '' : '?'}: ${type}${schema.description ? `  ${schema.description}` : ''}`);
    }
    out.push('');
  }
  process.stdout.write(`${out.join('\n')}\n`);
}

function collectRefs(config: unknown, refs: Set<string>): void {
  if (!config || typeof config !== 'object') return;
  for (const [key, value] of Object.entries(config as Record<string, unknown>)) {
    if (key === 'use' && typeof value === 'string') refs.add(value);
    else if (key === 'plugins' && Array.isArray(value)) value.forEach((v) => typeof v === 'string' && refs.add(v));
    else if (typeof value === 'object') collectRefs(value, refs);
  }
  for (const stage of ['backbone', 'runtime', 'data', 'distiller', 'combiner']) {
    const value = (config as Record<string, unknown>)[stage];
    if (typeof value === 'string') refs.add(value);
  }
}
