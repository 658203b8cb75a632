import { Ajv, type ErrorObject, type ValidateFunction } from 'ajv';
import { resolve } from 'node:path';
import type { JsonSchema } from '../types.js';

/** One violation of the config: where (dotted path), what was found, and what was expected. */
export interface ConfigIssue {
  path: string;
  found: unknown;
  expected: string;
}

export class ConfigError extends Error {
  constructor(
    readonly file: string,
    readonly issues: ConfigIssue[],
  ) {
    super(
      `${file}: ${issues.length} problem${issues.length === 1 ? '' : 's'} in the config\n` +
        issues.map((i) => `  - ${i.path || '(top level)'}: found ${describe(i.found)}, expected ${i.expected}`).join('\n'),
    );
    this.name = 'ConfigError';
  }
}

interface ValidationContext {
  baseDir: string;
}

/**
 * One ajv instance for the core schema and every plugin's options schema. `resolvePath: true` marks a string option
 * as a path, made absolute against the config file's folder; `resolvePath: 'explicit'` does so only for values that
 * start with `./`, `../` or `~/`, so that e.g. a hub id stays as it is.
 */
// Strict about unknown keywords (a typo in a plugin's schema is a bug), lenient about style choices of plugin authors.
const ajv = new Ajv({ allErrors: true, verbose: true, strict: true, strictRequired: false, strictTypes: false, passContext: true, allowUnionTypes: true });
ajv.addKeyword({ keyword: 'expected', schemaType: 'string' });
ajv.addKeyword({ keyword: 'x-transformaly', schemaType: 'object' });
ajv.addKeyword({
  keyword: 'resolvePath',
  schemaType: ['boolean', 'string'],
  modifying: true,
  validate: function (this: ValidationContext, mode: boolean | string, data: unknown, _schema?: unknown, cxt?: { parentData: any; parentDataProperty: string | number }) {
    if (!mode || typeof data !== 'string' || !cxt?.parentData || !this?.baseDir) return true;
    const home = process.env.HOME ?? '';
    let value = data;
    if (value.startsWith('~/') && home) value = resolve(home, value.slice(2));
    else if (mode === 'explicit' && !/^\.{1,2}[\\/]/.test(value)) return true;
    cxt.parentData[cxt.parentDataProperty] = resolve(this.baseDir, value);
    return true;
  },
});

const compiled = new WeakMap<object, ValidateFunction>();

/** Compiles a schema once; later calls with the same schema object reuse the validator. */
export function compileSchema(schema: JsonSchema): ValidateFunction {
  let validate = compiled.get(schema);
  if (!validate) {
    validate = ajv.compile(schema);
    compiled.set(schema, validate);
  }
  return validate;
}

/**
 * Validates `data` (modified in place: paths resolved) and returns every issue, with paths prefixed by `at`.
 */
export function validateAgainst(schema: JsonSchema, data: unknown, at: string, baseDir: string): ConfigIssue[] {
  const validate = compileSchema(schema);
  if (validate.call({ baseDir } satisfies ValidationContext, data)) return [];
  return toIssues(validate.errors ?? [], data, at);
}

function toIssues(errors: ErrorObject[], data: unknown, at: string): ConfigIssue[] {
  // A failed oneOf reports every branch's errors. When the value clearly meant one branch (its type fits and its
  // required keys are there), keep that branch's errors alone; otherwise keep one line naming the allowed forms.
  const dropped = new Set<ErrorObject>();
  for (const union of errors.filter((e) => e.keyword === 'oneOf' || e.keyword === 'anyOf')) {
    const inside = errors.filter((e) => e !== union && e.schemaPath.startsWith(`${union.schemaPath}/`));
    const chosen = chooseBranch(union.schema as JsonSchema[], valueAt(data, union.instancePath));
    for (const e of inside) if (chosen < 0 || !e.schemaPath.startsWith(`${union.schemaPath}/${chosen}/`)) dropped.add(e);
    if (chosen >= 0) dropped.add(union);
  }
  const issues: ConfigIssue[] = [];
  const seen = new Set<string>();
  for (const error of errors) {
    if (dropped.has(error)) continue;
    const issue = toIssue(error, data, at);
    const key = `${issue.path}\u0000${issue.expected}`;
    if (!seen.has(key)) {
      seen.add(key);
      issues.push(issue);
    }
  }
  return issues;
}

/** The index of the only branch whose type and required keys fit `value`, or -1. */
function chooseBranch(branches: JsonSchema[] | undefined, value: unknown): number {
  if (!Array.isArray(branches)) return -1;
  const fits = (b: JsonSchema): boolean => {
    const nested = (b.oneOf ?? b.anyOf) as JsonSchema[] | undefined;
    if (Array.isArray(nested)) return nested.some(fits);
    if ('const' in b) return false;
    if (typeof b.type !== 'string' || b.type !== jsonType(value)) return false;
    return !Array.isArray(b.required) || b.required.every((k) => isObject(value) && k in (value as object));
  };
  const candidates = branches.map((b, i) => (fits(b) ? i : -1)).filter((i) => i >= 0);
  return candidates.length === 1 ? candidates[0] : -1;
}

function jsonType(value: unknown): string {
  if (Array.isArray(value)) return 'array';
  if (value === null) return 'null';
  if (typeof value === 'number') return Number.isInteger(value) ? 'integer' : 'number';
  return typeof value;
}

function toIssue(error: ErrorObject, data: unknown, at: string): ConfigIssue {
  const segments = pointerSegments(error.instancePath);
  const found = valueAt(data, error.instancePath);
  const path = (extra?: string) => join(at, dotted(segments, data), extra);
  const params = error.params as Record<string, any>;
  switch (error.keyword) {
    case 'required':
      return { path: path(params.missingProperty), found: undefined, expected: 'a value (this field is required)' };
    case 'additionalProperties': {
      const allowed = Object.keys((error.parentSchema as any)?.properties ?? {});
      return {
        path: path(params.additionalProperty),
        found: (found as any)?.[params.additionalProperty],
        expected: `no such key (unknown key; allowed: ${allowed.join(', ') || 'none'})`,
      };
    }
    case 'type':
      return { path: path(), found, expected: `a value of type ${params.type}` };
    case 'enum':
      return { path: path(), found, expected: `one of ${params.allowedValues.map((v: unknown) => JSON.stringify(v)).join(', ')}` };
    case 'const':
      return { path: path(), found, expected: JSON.stringify(params.allowedValue) };
    case 'oneOf':
    case 'anyOf':
      return { path: path(), found, expected: (error.parentSchema as any)?.expected ?? describeUnion(error.schema as JsonSchema[]) };
    default:
      return { path: path(), found, expected: `a value that ${error.message ?? 'satisfies the schema'}` };
  }
}

function describeUnion(branches: JsonSchema[] | undefined): string {
  if (!Array.isArray(branches)) return 'one of the allowed forms';
  return `one of: ${branches.map(describeForm).join(' or ')}`;
}

function describeForm(b: JsonSchema): string {
  const nested = (b.oneOf ?? b.anyOf) as JsonSchema[] | undefined;
  if (Array.isArray(nested)) return nested.map(describeForm).join(' or ');
  if ('const' in b) return JSON.stringify(b.const);
  if (b.type === 'object' && Array.isArray(b.required)) return `an object with ${b.required.map((r) => `"${r}"`).join(', ')}`;
  if (b.type === 'array') return 'a list';
  if (typeof b.type === 'string') return `a ${b.type}`;
  return 'another form';
}

function pointerSegments(pointer: string): string[] {
  if (!pointer) return [];
  return pointer.slice(1).split('/').map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~'));
}

function valueAt(data: unknown, pointer: string): unknown {
  let current: any = data;
  for (const segment of pointerSegments(pointer)) current = current?.[segment];
  return current;
}

function dotted(segments: string[], data: unknown): string {
  let out = '';
  let current: any = data;
  for (const segment of segments) {
    out += Array.isArray(current) ? `[${segment}]` : out ? `.${segment}` : segment;
    current = current?.[segment];
  }
  return out;
}

function join(...parts: (string | undefined)[]): string {
  return parts.filter((p) => p).join('.').replace(/\.\[/g, '[');
}

function isObject(value: unknown): boolean {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function describe(value: unknown): string {
  if (value === undefined) return 'nothing';
  if (typeof value === 'function') return 'a function';
  const text = JSON.stringify(value);
  return text.length > 60 ? `${text.slice(0, 57)}...` : text;
}
