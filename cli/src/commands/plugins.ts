import {
  BUILTIN_PLUGINS,
  ConfigError,
  discoverPlugins,
  loadConfigFile,
  loadPlugin,
  providedKinds,
  resolveConfig,
  STAGE_KINDS,
  STAGE_SLOTS,
  type ConfigIssue,
  type StageKind,
  type TransformalyPlugin,
} from '@transformaly/core';
import { dirname } from 'node:path';
import { describeOptions } from '../schema-text.js';

interface Row {
  ref: string;
  plugin?: TransformalyPlugin;
  /** Config slots that name this reference. */
  slots: string[];
}

/**
 * Lists the built-in stages, the plugin packages found installed, and the plugins a config names: each stage a plugin
 * provides with its options (type, limits, default, nested ones), and a warning for a plugin that provides nothing or
 * whose configured options are invalid.
 */
export async function pluginsReport(options: { config?: string; cwd?: string } = {}): Promise<string> {
  const cwd = options.cwd ?? process.cwd();
  let baseDir = cwd;
  let config: unknown;
  let file: string | undefined;
  try {
    ({ config, file } = await loadConfigFile({ configPath: options.config, cwd }));
    baseDir = dirname(file);
  } catch (error) {
    if (options.config) throw error;
  }
  const rows = new Map<string, Row>();
  const row = (ref: string) => rows.get(ref) ?? rows.set(ref, { ref, slots: [] }).get(ref)!;
  for (const ref of BUILTIN_PLUGINS.keys()) row(ref);
  const installed = discoverPlugins(baseDir);
  for (const [name, pkg] of installed.packages) row(pkg.aliases[0] ?? name);
  const configRefs = stageRefs(config);
  for (const { ref, slot } of configRefs) row(ref).slots.push(slot);

  // The config's own problems, attributed to the plugin of the slot they are in.
  let issues: ConfigIssue[] = [];
  if (config !== undefined && file) {
    try {
      await resolveConfig(config, { file, baseDir, builtins: BUILTIN_PLUGINS });
    } catch (error) {
      if (!(error instanceof ConfigError)) throw error;
      issues = error.issues;
    }
  }

  // Load every reference; two references to one plugin (an alias and its package name) make one entry.
  const entries = new Map<string, Row & { kinds: StageKind[]; warnings: string[] }>();
  const unusable: string[] = [];
  for (const r of rows.values()) {
    try {
      r.plugin = await loadPlugin(r.ref, { baseDir, builtins: BUILTIN_PLUGINS });
    } catch (error) {
      unusable.push(r.ref, `  not available: ${(error as Error).message}`);
      continue;
    }
    const known = entries.get(r.plugin.name);
    if (known) {
      known.slots.push(...r.slots);
      continue;
    }
    const warnings: string[] = [];
    let kinds: StageKind[] = [];
    try {
      kinds = await providedKinds(r.plugin, {});
    } catch (error) {
      warnings.push((error as Error).message);
    }
    if (kinds.length === 0) {
      unusable.push(header(r.ref, r.plugin), ...warnings.map((w) => `  warning: ${w}`), '  warning: provides no stage, so no config slot can use it');
      continue;
    }
    entries.set(r.plugin.name, { ...r, kinds, warnings });
  }

  const out: string[] = [];
  for (const kind of Object.keys(STAGE_KINDS) as StageKind[]) {
    const providers = [...entries.values()].filter((e) => e.kinds.includes(kind));
    if (providers.length === 0) continue;
    const slots = STAGE_SLOTS.filter((s) => s.kind === kind).map((s) => s.path);
    out.push(`${STAGE_KINDS[kind].listing} (${slots.join(', ')})`, '');
    for (const e of providers) {
      const plugin = e.plugin!;
      const stage = plugin.stages?.[kind];
      out.push(header(e.ref, plugin));
      const description = stage?.description ?? plugin.description;
      if (description) out.push(`  ${description}`);
      out.push(...describeOptions(stage ? stage.optionsSchema : plugin.optionsSchema));
      out.push(...e.warnings.map((w) => `  warning: ${w}`));
      for (const slot of e.slots.filter((s) => (slots as string[]).includes(s))) {
        for (const issue of issues.filter((i) => i.path === slot || i.path.startsWith(`${slot}.`))) {
          out.push(`  warning: the config's ${issue.path}: found ${JSON.stringify(issue.found) ?? 'nothing'}, expected ${issue.expected}`);
        }
      }
      out.push('');
    }
  }
  if (unusable.length > 0) out.push('Not usable', '', ...unusable, '');
  const claimed = configRefs.map((c) => c.slot);
  const others = issues.filter((i) => !claimed.some((slot) => i.path === slot || i.path.startsWith(`${slot}.`)));
  if (others.length > 0) {
    out.push(`${file}: other problems in the config`, ...others.map((i) => `  - ${i.path || '(top level)'}: found ${JSON.stringify(i.found) ?? 'nothing'}, expected ${i.expected}`), '');
  }
  return out.join('\n');
}

function header(ref: string, plugin: TransformalyPlugin): string {
  if (BUILTIN_PLUGINS.get(ref) === plugin) return `${ref}  (built in, ${plugin.version})`;
  const aliases = plugin.aliases?.filter((a) => a !== ref) ?? [];
  return `${ref}  (${plugin.name !== ref ? `${plugin.name} ` : ''}${plugin.version}${aliases.length ? `; also ${aliases.join(', ')}` : ''})`;
}

export async function pluginsCommand(options: { config?: string }): Promise<void> {
  process.stdout.write(`${await pluginsReport(options)}\n`);
}

/** The plugin references a config names, by slot: strings and `{ use }` forms, and its `plugins` list. */
function stageRefs(config: unknown): { ref: string; slot: string }[] {
  if (!config || typeof config !== 'object') return [];
  const out: { ref: string; slot: string }[] = [];
  for (const slot of STAGE_SLOTS) {
    const value = slot.path.split('.').reduce<any>((o, k) => (o && typeof o === 'object' ? o[k] : undefined), config);
    const ref = typeof value === 'string' ? value : typeof value?.use === 'string' ? value.use : undefined;
    if (ref) out.push({ ref, slot: slot.path });
  }
  const extra = (config as { plugins?: unknown }).plugins;
  if (Array.isArray(extra)) extra.forEach((ref, i) => typeof ref === 'string' && out.push({ ref, slot: `plugins[${i}]` }));
  return out;
}
