// JSON schemas of plugin options as text for `transformaly plugins`: each option with its type, limits and default,
// nested objects and alternatives on indented lines.
import type { JsonSchema } from '@transformaly/core';

type Schema = JsonSchema & Record<string, any>;

/** One line per option (and per nested option), indented by `indent` spaces. */
export function describeOptions(schema: JsonSchema | undefined, indent = 4): string[] {
  const s = (schema ?? {}) as Schema;
  const props = Object.entries((s.properties ?? {}) as Record<string, Schema>);
  if (props.length === 0) return [`${' '.repeat(indent)}(no options)`];
  return propertyLines(s, indent);
}

function propertyLines(schema: Schema, indent: number): string[] {
  const required = new Set<string>(Array.isArray(schema.required) ? schema.required : []);
  const lines: string[] = [];
  for (const [name, prop] of Object.entries((schema.properties ?? {}) as Record<string, Schema>)) {
    const { text, nested } = describe(prop, indent + 2);
    const extra = [prop.default !== undefined ? `default ${JSON.stringify(prop.default)}` : '', prop.description ?? ''].filter(Boolean).join('; ');
    lines.push(`${' '.repeat(indent)}${name}${required.has(name) ? '' : '?'}: ${text}${extra ? `  - ${extra}` : ''}`);
    lines.push(...nested);
  }
  if (Array.isArray(schema.oneOf) || Array.isArray(schema.anyOf)) {
    const forms = ((schema.oneOf ?? schema.anyOf) as Schema[]).map((b) => (Array.isArray(b.required) ? b.required.join(' + ') : describe(b, 0).text));
    lines.push(`${' '.repeat(indent)}(exactly one of: ${forms.join(' | ')})`);
  }
  return lines;
}

/** The type of a schema with its limits on one line, and the lines of whatever is nested in it. */
export function describe(schema: Schema, indent: number): { text: string; nested: string[] } {
  const branches = (schema.oneOf ?? schema.anyOf) as Schema[] | undefined;
  if (Array.isArray(branches) && !schema.properties) {
    const parts = branches.map((b) => describe(b, indent + 2));
    if (parts.every((p) => p.nested.length === 0)) return { text: parts.map((p) => p.text).join(' | '), nested: [] };
    const nested: string[] = [];
    for (const part of parts) {
      nested.push(`${' '.repeat(indent)}- ${part.text}`);
      nested.push(...part.nested);
    }
    return { text: 'one of:', nested };
  }
  if (Array.isArray(schema.enum)) return { text: schema.enum.map((v: unknown) => JSON.stringify(v)).join(' | '), nested: [] };
  if ('const' in schema) return { text: JSON.stringify(schema.const), nested: [] };
  const type = Array.isArray(schema.type) ? schema.type.join(' | ') : schema.type;
  switch (type) {
    case 'integer':
    case 'number':
      return { text: withLimits(type, numberLimits(schema)), nested: [] };
    case 'string': {
      const limits = [];
      if (schema.minLength !== undefined) limits.push(`length >= ${schema.minLength}`);
      if (schema.maxLength !== undefined) limits.push(`length <= ${schema.maxLength}`);
      if (schema.pattern !== undefined) limits.push(`matching /${schema.pattern}/`);
      if (schema.resolvePath) limits.push(schema.resolvePath === 'explicit' ? 'a path when it starts with ./, ../ or ~/' : 'a path, relative to the config');
      return { text: withLimits('string', limits), nested: [] };
    }
    case 'boolean':
      return { text: 'boolean', nested: [] };
    case 'array': {
      const items = schema.items ? describe(schema.items as Schema, indent) : { text: 'any', nested: [] };
      const limits = [];
      if (schema.minItems !== undefined && schema.minItems === schema.maxItems) limits.push(`exactly ${schema.minItems}`);
      else {
        if (schema.minItems !== undefined) limits.push(`at least ${schema.minItems}`);
        if (schema.maxItems !== undefined) limits.push(`at most ${schema.maxItems}`);
      }
      if (schema.uniqueItems) limits.push('distinct');
      const itemText = items.text === 'one of:' ? 'items of one of the forms below' : items.text;
      return { text: withLimits(`list of ${itemText}`, limits), nested: items.nested };
    }
    case 'object':
    case undefined:
      if (schema.properties) return { text: 'object', nested: propertyLines(schema, indent) };
      return { text: type ?? 'any', nested: [] };
    default:
      return { text: String(type), nested: [] };
  }
}

function numberLimits(schema: Schema): string[] {
  const limits = [];
  if (schema.minimum !== undefined) limits.push(`>= ${schema.minimum}`);
  if (schema.exclusiveMinimum !== undefined) limits.push(`> ${schema.exclusiveMinimum}`);
  if (schema.maximum !== undefined) limits.push(`<= ${schema.maximum}`);
  if (schema.exclusiveMaximum !== undefined) limits.push(`< ${schema.exclusiveMaximum}`);
  if (schema.multipleOf !== undefined) limits.push(`a multiple of ${schema.multipleOf}`);
  return limits;
}

function withLimits(text: string, limits: string[]): string {
  return limits.length > 0 ? `${text} (${limits.join(', ')})` : text;
}
