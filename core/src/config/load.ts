import { cosmiconfig, type Loader } from 'cosmiconfig';
import { createJiti } from 'jiti';
import { existsSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { TransformalyConfig } from '../types.js';

export const CONFIG_FILE_NAMES = [
  'transformaly.config.ts',
  'transformaly.config.mts',
  'transformaly.config.js',
  'transformaly.config.mjs',
  'transformaly.config.json',
  'transformaly.config.yaml',
  'transformaly.config.yml',
] as const;

/** Typed identity: gives editors the config's types and documentation. */
export function defineConfig(config: TransformalyConfig): TransformalyConfig {
  return config;
}

const jitiLoader: Loader = async (filepath) => {
  const jiti = createJiti(pathToFileURL(filepath).href, { interopDefault: true, moduleCache: false });
  const module = await jiti.import<unknown>(filepath, { default: true });
  return typeof module === 'function' ? await (module as () => unknown)() : module;
};

export class ConfigFileError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'ConfigFileError';
  }
}

/**
 * Reads the config: the file at `configPath`, or the first `transformaly.config.*` in `cwd`.
 * TypeScript configs are loaded with jiti, so no build step is needed.
 */
export async function loadConfigFile(options: { configPath?: string; cwd?: string } = {}): Promise<{ config: unknown; file: string }> {
  const cwd = options.cwd ?? process.cwd();
  const explorer = cosmiconfig('transformaly', {
    searchPlaces: [...CONFIG_FILE_NAMES],
    searchStrategy: 'none',
    loaders: { '.ts': jitiLoader, '.mts': jitiLoader, '.js': jitiLoader, '.mjs': jitiLoader, '.cjs': jitiLoader },
    cache: false,
  });
  let result;
  if (options.configPath) {
    const file = resolve(cwd, options.configPath);
    if (!existsSync(file)) throw new ConfigFileError(`config file ${file} does not exist`);
    try {
      result = await explorer.load(file);
    } catch (error) {
      throw new ConfigFileError(`${file}: cannot be read: ${(error as Error).message}`, { cause: error });
    }
  } else {
    try {
      result = await explorer.search(cwd);
    } catch (error) {
      throw new ConfigFileError(`${(error as { filepath?: string }).filepath ?? cwd}: cannot be read: ${(error as Error).message}`, { cause: error });
    }
    if (!result) {
      throw new ConfigFileError(`no config found in ${cwd}: create one of ${CONFIG_FILE_NAMES.join(', ')}, or pass --config PATH`);
    }
  }
  if (!result || result.isEmpty) throw new ConfigFileError(`${result?.filepath ?? options.configPath}: the config is empty`);
  return { config: result.config, file: result.filepath };
}

export function configBaseDir(file: string): string {
  return dirname(file);
}
