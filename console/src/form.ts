// The form renderer's pure core: a human step's JSON Schema (an object schema) becomes a list of
// fields; the raw values typed into the page are checked and turned into the JSON data the
// coordinator receives; the coordinator's field errors are mapped back onto the fields.
// No DOM here: src/views/Task.tsx draws the fields, this module decides what they are.

/** What one property of the form schema is drawn as. */
export type FieldKind = "string" | "text" | "number" | "integer" | "boolean" | "enum" | "json";

export interface Field {
  /** The property name: the key in the submitted JSON object. */
  name: string;
  /** The schema's `title`, else the property name. */
  label: string;
  kind: FieldKind;
  required: boolean;
  description?: string;
  /** For `enum`: the allowed values, in schema order. */
  options?: unknown[];
  minimum?: number;
  maximum?: number;
  exclusiveMinimum?: number;
  exclusiveMaximum?: number;
  minLength?: number;
  maxLength?: number;
  pattern?: string;
  /** The schema's `default`, used as the initial value. */
  default?: unknown;
}

/** What the user typed: a string per text/number/enum/json field; a boolean field holds "true",
 * "false" or "" (not chosen). Enum fields hold the index of the option as a string, or "". */
export type RawValues = Record<string, string>;

export interface FormModel {
  fields: Field[];
  /** Whether properties outside `fields` are refused (`additionalProperties: false`). */
  closed: boolean;
}

type Schema = Record<string, unknown>;

function isObject(v: unknown): v is Schema {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function num(v: unknown): number | undefined {
  return typeof v === "number" && Number.isFinite(v) ? v : undefined;
}

/** The type a property schema declares (`type: ["string", "null"]` counts as string). */
function typeOf(s: Schema): string | undefined {
  const t = s.type;
  if (typeof t === "string") return t;
  if (Array.isArray(t)) return t.find((x) => x !== "null") as string | undefined;
  return undefined;
}

/** The fields of an object schema: the required ones first, in the order of `required`, then the
 * others in property order (the API's JSON has its object keys sorted, so the order written in a
 * definition is lost, but `required` is an array and keeps it). A schema that is not an object
 * schema gives one `json` field named "" (the whole data as JSON text). */
export function fieldsFromSchema(schema: unknown): FormModel {
  if (!isObject(schema) || !isObject(schema.properties)) {
    return { fields: [{ name: "", label: "Data (JSON)", kind: "json", required: true }], closed: false };
  }
  const required = new Set(Array.isArray(schema.required) ? (schema.required as unknown[]).filter((r) => typeof r === "string") : []);
  const fields: Field[] = [];
  const props = Object.entries(schema.properties);
  const rank = (name: string) => {
    const i = (schema.required as unknown[] | undefined)?.indexOf(name) ?? -1;
    return i < 0 ? Number.MAX_SAFE_INTEGER : i;
  };
  props.sort((a, b) => rank(a[0]) - rank(b[0]));
  for (const [name, raw] of props) {
    const s: Schema = isObject(raw) ? raw : {};
    const base = {
      name,
      label: typeof s.title === "string" && s.title ? s.title : name,
      required: required.has(name),
      description: typeof s.description === "string" ? s.description : undefined,
      default: s.default,
    };
    let field: Field;
    if (Array.isArray(s.enum)) {
      field = { ...base, kind: "enum", options: s.enum };
    } else if ("const" in s) {
      field = { ...base, kind: "enum", options: [s.const] };
    } else {
      switch (typeOf(s)) {
        case "string":
          field = {
            ...base,
            kind: num(s.maxLength) !== undefined && (s.maxLength as number) <= 200 ? "string" : "text",
            minLength: num(s.minLength),
            maxLength: num(s.maxLength),
            pattern: typeof s.pattern === "string" ? s.pattern : undefined,
          };
          break;
        case "number":
        case "integer":
          field = {
            ...base,
            kind: typeOf(s) as "number" | "integer",
            minimum: num(s.minimum),
            maximum: num(s.maximum),
            exclusiveMinimum: num(s.exclusiveMinimum),
            exclusiveMaximum: num(s.exclusiveMaximum),
          };
          break;
        case "boolean":
          field = { ...base, kind: "boolean" };
          break;
        default:
          field = { ...base, kind: "json" };
      }
    }
    fields.push(field);
  }
  return { fields, closed: schema.additionalProperties === false };
}

/** The form model of a run input: the input schema's fields, or one JSON field ("Input (JSON)",
 * `{}` to start with) when the workflow has no object schema. */
export function inputModel(schema: unknown): FormModel {
  const m = fieldsFromSchema(schema);
  if (m.fields.length === 1 && m.fields[0].name === "" && m.fields[0].kind === "json") {
    return { ...m, fields: [{ ...m.fields[0], label: "Input (JSON)", default: {} }] };
  }
  return m;
}

/** The values the form starts with: each field's `default`, else empty. */
export function initialValues(model: FormModel): RawValues {
  const out: RawValues = {};
  for (const f of model.fields) {
    const d = f.default;
    if (d === undefined) out[f.name] = "";
    else if (f.kind === "enum") {
      const i = (f.options ?? []).findIndex((o) => JSON.stringify(o) === JSON.stringify(d));
      out[f.name] = i >= 0 ? String(i) : "";
    } else if (f.kind === "boolean") out[f.name] = d === true ? "true" : d === false ? "false" : "";
    else if (f.kind === "json") out[f.name] = JSON.stringify(d, null, 2);
    else out[f.name] = String(d);
  }
  return out;
}

/** How an enum option is shown. */
export function optionLabel(o: unknown): string {
  return typeof o === "string" ? o : JSON.stringify(o);
}

/** Parses a number as typed: plain decimal notation only ("1e3", "0x10", " 12 " with inner
 * spaces, and "" are not numbers). */
export function parseNumber(text: string): number | undefined {
  const t = text.trim();
  if (!/^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/.test(t)) return undefined;
  const n = Number(t);
  return Number.isFinite(n) ? n : undefined;
}

export interface Checked {
  /** The JSON to submit (only meaningful when `errors` is empty). */
  data: unknown;
  /** Field name → message, for every field the page refuses. */
  errors: Record<string, string>;
}

/** Checks the typed values against the fields and builds the data. An empty optional field is
 * left out of the data. */
export function checkValues(model: FormModel, values: RawValues): Checked {
  const errors: Record<string, string> = {};
  const data: Record<string, unknown> = {};
  for (const f of model.fields) {
    const raw = values[f.name] ?? "";
    const empty = f.kind === "string" || f.kind === "text" ? raw === "" : raw.trim() === "";
    if (empty) {
      if (f.required) errors[f.name] = f.kind === "boolean" || f.kind === "enum" ? "Choose a value." : "Required.";
      continue;
    }
    let value: unknown;
    switch (f.kind) {
      case "string":
      case "text": {
        value = raw;
        const len = [...raw].length;
        if (f.minLength !== undefined && len < f.minLength) errors[f.name] = `At least ${f.minLength} characters.`;
        else if (f.maxLength !== undefined && len > f.maxLength) errors[f.name] = `At most ${f.maxLength} characters.`;
        else if (f.pattern !== undefined) {
          let re: RegExp | undefined;
          try {
            re = new RegExp(f.pattern, "u");
          } catch {
            re = undefined; // a pattern JavaScript cannot read: the coordinator checks it
          }
          if (re && !re.test(raw)) errors[f.name] = `Must match ${f.pattern}.`;
        }
        break;
      }
      case "number":
      case "integer": {
        const n = parseNumber(raw);
        if (n === undefined) {
          errors[f.name] = f.kind === "integer" ? "Enter a whole number." : "Enter a number.";
          break;
        }
        if (f.kind === "integer" && !Number.isInteger(n)) errors[f.name] = "Enter a whole number.";
        else if (f.minimum !== undefined && n < f.minimum) errors[f.name] = `At least ${f.minimum}.`;
        else if (f.maximum !== undefined && n > f.maximum) errors[f.name] = `At most ${f.maximum}.`;
        else if (f.exclusiveMinimum !== undefined && n <= f.exclusiveMinimum) errors[f.name] = `More than ${f.exclusiveMinimum}.`;
        else if (f.exclusiveMaximum !== undefined && n >= f.exclusiveMaximum) errors[f.name] = `Less than ${f.exclusiveMaximum}.`;
        value = n;
        break;
      }
      case "boolean":
        if (raw !== "true" && raw !== "false") errors[f.name] = "Choose yes or no.";
        value = raw === "true";
        break;
      case "enum": {
        const i = Number(raw);
        const opts = f.options ?? [];
        if (!Number.isInteger(i) || i < 0 || i >= opts.length) errors[f.name] = "Choose one of the options.";
        value = opts[i];
        break;
      }
      case "json":
        try {
          value = JSON.parse(raw);
        } catch (e) {
          errors[f.name] = `Not valid JSON: ${(e as Error).message}`;
        }
        break;
    }
    if (!(f.name in errors)) {
      if (f.name === "") return { data: value, errors };
      data[f.name] = value;
    }
  }
  return { data, errors };
}

/** The coordinator's answer to invalid data, as field → message. Its message lists problems as
 * `data/<field>/...: <message>` joined by "; "; a problem at the root (`data: "x" is a required
 * property`) is put on the named property. Problems no field owns go under "" (shown above the
 * form). `field`, when the API gives one, names the first problem. `root` is the request field
 * the paths start with: `data` for a task's form, `input` for a run's input. */
export function serverFieldErrors(model: FormModel, message: string, field?: string, root = "data"): Record<string, string> {
  const names = new Set(model.fields.map((f) => f.name));
  const out: Record<string, string> = {};
  const add = (k: string, m: string) => {
    out[k] = out[k] ? `${out[k]}; ${m}` : m;
  };
  const problems = message.split(/; (?=(?:data|input)?[\w/\[\].-]*: )/);
  let placed = false;
  const head = new RegExp(`^\\s*(${root}(?:\\/[^:\\s]*)?|\\/[^:\\s]*)\\s*:\\s*(.*)$`, "s");
  for (const p of problems) {
    const m = head.exec(p);
    if (!m) continue;
    const path = m[1].slice(m[1].startsWith(root) ? root.length : 0).replace(/^\//, "");
    const text = m[2].trim();
    let name = path.split("/")[0] ?? "";
    if (name === "") {
      const req = /^"([^"]+)" is a required property/.exec(text);
      if (req && names.has(req[1])) name = req[1];
    }
    placed = true;
    add(names.has(name) ? name : "", text);
  }
  if (!placed) {
    const f = (field ?? "").replace(new RegExp(`^${root}_json`), "").replace(new RegExp(`^${root}`), "").replace(/^[./]/, "").split(/[/.]/)[0] ?? "";
    add(names.has(f) ? f : "", message);
  }
  return out;
}
