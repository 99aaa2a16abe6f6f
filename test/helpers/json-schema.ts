/**
 * The part of JSON Schema (draft-07) the micro/v1 schemas use: type, const, required,
 * properties, additionalProperties, items, oneOf, pattern, minLength, minimum, maximum and
 * format "date-time". Returns the violations, each with its JSON path; [] means valid.
 */
type Schema = Record<string, any>;

const RFC3339 = /^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$/;

function typeOk(t: string, v: unknown): boolean {
  switch (t) {
    case "object":
      return typeof v === "object" && v !== null && !Array.isArray(v);
    case "array":
      return Array.isArray(v);
    case "string":
      return typeof v === "string";
    case "integer":
      return typeof v === "number" && Number.isInteger(v);
    case "number":
      return typeof v === "number" && Number.isFinite(v);
    case "boolean":
      return typeof v === "boolean";
    case "null":
      return v === null;
    default:
      throw new Error(`schema type ${t} not supported by this checker`);
  }
}

const SUPPORTED = new Set(["$schema", "$id", "$comment", "title", "description", "type", "const", "required", "properties", "additionalProperties", "items", "oneOf", "pattern", "minLength", "minimum", "maximum", "format"]);

export function validate(schema: Schema, value: unknown, path = "$"): string[] {
  for (const k of Object.keys(schema)) if (!SUPPORTED.has(k)) throw new Error(`schema keyword ${k} at ${path} not supported by this checker`);
  const errs: string[] = [];
  if (schema.type !== undefined) {
    const types: string[] = Array.isArray(schema.type) ? schema.type : [schema.type];
    if (!types.some((t) => typeOk(t, value))) return [`${path}: expected ${types.join("|")}, got ${value === null ? "null" : typeof value}`];
  }
  if ("const" in schema && value !== schema.const) errs.push(`${path}: expected ${JSON.stringify(schema.const)}`);
  if (schema.oneOf) {
    const matches = (schema.oneOf as Schema[]).filter((s) => validate(s, value, path).length === 0).length;
    if (matches !== 1) errs.push(`${path}: matches ${matches} of the oneOf schemas (needs exactly 1)`);
  }
  if (typeof value === "string") {
    if (schema.minLength !== undefined && value.length < schema.minLength) errs.push(`${path}: shorter than ${schema.minLength}`);
    if (schema.pattern !== undefined && !new RegExp(schema.pattern).test(value)) errs.push(`${path}: ${JSON.stringify(value)} does not match ${schema.pattern}`);
    if (schema.format === "date-time" && !RFC3339.test(value)) errs.push(`${path}: ${JSON.stringify(value)} is not an RFC 3339 date-time`);
  }
  if (typeof value === "number") {
    if (schema.minimum !== undefined && value < schema.minimum) errs.push(`${path}: below ${schema.minimum}`);
    if (schema.maximum !== undefined && value > schema.maximum) errs.push(`${path}: above ${schema.maximum}`);
  }
  if (Array.isArray(value) && schema.items) value.forEach((v, i) => errs.push(...validate(schema.items, v, `${path}[${i}]`)));
  if (typeOk("object", value)) {
    const obj = value as Record<string, unknown>;
    for (const r of schema.required ?? []) if (!(r in obj)) errs.push(`${path}: missing required "${r}"`);
    const props: Record<string, Schema> = schema.properties ?? {};
    for (const [k, v] of Object.entries(obj)) {
      if (props[k]) errs.push(...validate(props[k]!, v, `${path}.${k}`));
      else if (schema.additionalProperties === false) errs.push(`${path}: unexpected property "${k}"`);
      else if (typeof schema.additionalProperties === "object") errs.push(...validate(schema.additionalProperties, v, `${path}.${k}`));
    }
  }
  return errs;
}
