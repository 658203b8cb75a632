// Constructor checks for the sources' option objects. They mirror each source's JSON schema so that a source built
// in code (not from a validated config) fails just as clearly.
import { DataSourceError } from './errors.js';

export function optionsObject(source: string, options: unknown, allowed: readonly string[]): Record<string, unknown> {
  if (typeof options !== 'object' || options === null || Array.isArray(options)) {
    throw new DataSourceError(`${source}: options must be an object with ${allowed.join(', ')}`);
  }
  const record = options as Record<string, unknown>;
  for (const key of Object.keys(record)) {
    if (!allowed.includes(key)) {
      throw new DataSourceError(`${source}: unknown option '${key}' (allowed: ${allowed.join(', ')})`);
    }
  }
  return record;
}

export function optionalPath(source: string, record: Record<string, unknown>, key: string): string | undefined {
  const value = record[key];
  if (value === undefined) return undefined;
  if (typeof value !== 'string' || value.length === 0) {
    throw new DataSourceError(`${source}: option '${key}' must be a non-empty path string`);
  }
  return value;
}

export function requiredPath(source: string, record: Record<string, unknown>, key: string): string {
  const value = optionalPath(source, record, key);
  if (value === undefined) throw new DataSourceError(`${source}: option '${key}' (a folder path) is required`);
  return value;
}

export function optionalPositiveInteger(source: string, record: Record<string, unknown>, key: string): number | undefined {
  const value = record[key];
  if (value === undefined) return undefined;
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 1) {
    throw new DataSourceError(`${source}: option '${key}' must be a positive integer, got ${JSON.stringify(value)}`);
  }
  return value;
}

export function oneOf<T extends string>(
  source: string,
  record: Record<string, unknown>,
  key: string,
  values: readonly T[],
): T | undefined {
  const value = record[key];
  if (value === undefined) return undefined;
  if (typeof value !== 'string' || !(values as readonly string[]).includes(value)) {
    throw new DataSourceError(`${source}: option '${key}' must be one of ${values.map((v) => `'${v}'`).join(', ')}`);
  }
  return value as T;
}

/** Class names given by the user: non-empty and unique, since items are matched to cases by name. */
export function classNameList(source: string, key: string, value: unknown): string[] {
  if (!Array.isArray(value) || value.length === 0 || !value.every((v) => typeof v === 'string' && v.length > 0)) {
    throw new DataSourceError(`${source}: option '${key}' must be a non-empty array of non-empty strings`);
  }
  const seen = new Set<string>();
  for (const name of value as string[]) {
    if (seen.has(name)) throw new DataSourceError(`${source}: option '${key}' names class '${name}' twice`);
    seen.add(name);
  }
  return [...(value as string[])];
}
