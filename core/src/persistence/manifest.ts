import { Ajv, type ErrorObject } from 'ajv';
import { SAFE_NAME } from '../io/paths.js';
import type { JsonObject, PluginRecord } from '../types.js';

export const DETECTOR_FORMAT = 'transformaly-detector';
/**
 * The manifest layout this code writes and the only one it reads. Version 2 records plugins by name and version
 * (version 1 held only the config, whose plugin paths `score` imported) and covers the manifest by `manifest.sha256`.
 */
export const DETECTOR_FORMAT_VERSION = 2;

/** `manifest.json` of a fitted-detector folder. */
export interface DetectorManifest {
  format: typeof DETECTOR_FORMAT;
  formatVersion: number;
  /** ISO 8601 time of saving. */
  createdAt: string;
  /** Versions of the packages that fitted the detector (provenance). */
  packages: Record<string, string>;
  /** The resolved config the detector was fitted with (provenance: its `use` references are never followed). */
  config: JsonObject;
  /** The plugin of each stage (`backbone`, `scorers.pretrained`, ...) and of each extra plugin (`plugins.0`, ...). */
  plugins: Record<string, PluginRecord>;
  /** Per stage: the safetensors file holding its arrays, and its JSON metadata. */
  stages: Record<string, { file: string; meta: JsonObject }>;
  /** sha256 (lowercase hex) of every data file of the folder. */
  checksums: Record<string, string>;
  extra?: JsonObject;
}


/** A bare package specifier, optionally with a subpath; never a path, a URL or a `node:` module. */
export const PACKAGE_SPECIFIER = '^(@[a-z0-9][a-z0-9._~-]*/)?[a-z0-9][a-z0-9._~-]*(/[A-Za-z0-9_~-][A-Za-z0-9._~-]*)*$';

const pluginRecord = {
  type: 'object',
  required: ['name', 'version', 'source'],
  additionalProperties: false,
  properties: {
    name: { type: 'string', minLength: 1 },
    version: { type: ['string', 'null'] },
    source: { enum: ['builtin', 'package', 'file', 'code'] },
    package: { type: 'string', pattern: PACKAGE_SPECIFIER },
    path: { type: 'string', minLength: 1 },
  },
} as const;

const schema = {
  type: 'object',
  required: ['format', 'formatVersion', 'createdAt', 'packages', 'config', 'plugins', 'stages', 'checksums'],
  additionalProperties: false,
  properties: {
    format: { const: DETECTOR_FORMAT },
    formatVersion: { type: 'integer', minimum: 1 },
    createdAt: { type: 'string', minLength: 1 },
    packages: { type: 'object', additionalProperties: { type: 'string' } },
    config: { type: 'object' },
    plugins: { type: 'object', propertyNames: { pattern: SAFE_NAME }, additionalProperties: pluginRecord },
    stages: {
      type: 'object',
      propertyNames: { pattern: SAFE_NAME },
      additionalProperties: {
        type: 'object',
        required: ['file', 'meta'],
        additionalProperties: false,
        properties: { file: { type: 'string', pattern: SAFE_NAME }, meta: { type: 'object' } },
      },
    },
    checksums: {
      type: 'object',
      propertyNames: { pattern: SAFE_NAME },
      additionalProperties: { type: 'string', pattern: '^[0-9a-f]{64}$' },
    },
    extra: { type: 'object' },
  },
} as const;

// Compiled once: loading many detectors must not recompile the validator each time.
const validate = new Ajv({ allErrors: false, strict: true, allowUnionTypes: true }).compile<DetectorManifest>(schema);

/** Returns null when `value` is a valid manifest, else a sentence naming the offending field. */
export function manifestProblem(value: unknown): string | null {
  if (validate(value)) return null;
  return describe(validate.errors?.[0]);
}

function describe(error: ErrorObject | undefined): string {
  if (!error) return 'manifest is invalid';
  const at = error.instancePath
    .split('/')
    .slice(1)
    .map((p) => p.replace(/~1/g, '/').replace(/~0/g, '~'))
    .join('.');
  const field = (name: string) => (at ? `${at}.${name}` : name);
  // A failing `propertyNames` subschema reports the offending key here, with the subschema's keyword (pattern).
  if (error.propertyName !== undefined) {
    return `field "${field(error.propertyName)}" is not a valid name (expected letters, digits, '.', '_' or '-', not starting with '.')`;
  }
  switch (error.keyword) {
    case 'required':
      return `field "${field(String(error.params.missingProperty))}" is missing`;
    case 'additionalProperties':
      return `field "${field(String(error.params.additionalProperty))}" is not allowed`;
    default:
      return `field "${at || '(root)'}" ${error.message ?? 'is invalid'}`;
  }
}
