import { describe, expect, it } from "vitest";
import { checkValues, fieldsFromSchema, initialValues, parseNumber, serverFieldErrors } from "../src/form";

const expense = {
  type: "object",
  required: ["approved", "amount"],
  additionalProperties: false,
  properties: {
    approved: { type: "boolean", description: "Whether the expense is paid." },
    amount: { type: "number", minimum: 0, maximum: 10000 },
    count: { type: "integer", minimum: 1 },
    category: { enum: ["travel", "meals", 3] },
    comment: { type: "string", title: "Comment", maxLength: 50, minLength: 3 },
    notes: { type: "string" },
    extra: { type: "object" },
  },
};

describe("fieldsFromSchema", () => {
  it("gives one field per property, in order, with kind, required, description and title", () => {
    const m = fieldsFromSchema(expense);
    expect(m.closed).toBe(true);
    expect(m.fields.map((f) => [f.name, f.kind, f.required])).toEqual([
      ["approved", "boolean", true],
      ["amount", "number", true],
      ["count", "integer", false],
      ["category", "enum", false],
      ["comment", "string", false],
      ["notes", "text", false],
      ["extra", "json", false],
    ]);
    expect(m.fields[0].description).toBe("Whether the expense is paid.");
    expect(m.fields[4].label).toBe("Comment");
    expect(m.fields[3].options).toEqual(["travel", "meals", 3]);
  });

  it("puts required fields first, in the order of required", () => {
    const m = fieldsFromSchema({ required: ["b", "a"], properties: { a: { type: "string" }, b: { type: "string" }, c: { type: "string" }, d: {} } });
    expect(m.fields.map((f) => f.name)).toEqual(["b", "a", "c", "d"]);
  });

  it("treats a schema without properties as one JSON field", () => {
    const m = fieldsFromSchema({ type: "array" });
    expect(m.fields).toHaveLength(1);
    expect(m.fields[0].kind).toBe("json");
  });

  it("reads nullable types and const", () => {
    const m = fieldsFromSchema({ properties: { a: { type: ["null", "integer"] }, b: { const: "yes" } } });
    expect(m.fields.map((f) => f.kind)).toEqual(["integer", "enum"]);
  });
});

describe("initialValues", () => {
  it("starts from defaults", () => {
    const m = fieldsFromSchema({
      properties: { a: { type: "boolean", default: true }, b: { enum: ["x", "y"], default: "y" }, c: { type: "number", default: 2.5 }, d: { type: "string" } },
    });
    expect(initialValues(m)).toEqual({ a: "true", b: "1", c: "2.5", d: "" });
  });
});

describe("parseNumber", () => {
  it("reads plain decimals only", () => {
    expect(parseNumber("12")).toBe(12);
    expect(parseNumber(" -3.5 ")).toBe(-3.5);
    expect(parseNumber(".5")).toBe(0.5);
    expect(parseNumber("1e3")).toBe(1000);
    expect(parseNumber("")).toBeUndefined();
    expect(parseNumber("12abc")).toBeUndefined();
    expect(parseNumber("0x10")).toBeUndefined();
    expect(parseNumber("1 2")).toBeUndefined();
    expect(parseNumber("Infinity")).toBeUndefined();
  });
});

describe("checkValues", () => {
  const m = fieldsFromSchema(expense);

  it("names every required field left empty", () => {
    const r = checkValues(m, initialValues(m));
    expect(r.errors).toEqual({ approved: "Choose a value.", amount: "Required." });
  });

  it("builds typed data and leaves empty optional fields out", () => {
    const r = checkValues(m, { approved: "false", amount: " 12.50 ", count: "3", category: "2", comment: "ok!", notes: "", extra: '{"a": [1]}' });
    expect(r.errors).toEqual({});
    expect(r.data).toEqual({ approved: false, amount: 12.5, count: 3, category: 3, comment: "ok!", extra: { a: [1] } });
  });

  it("refuses numbers out of range, non-integers and text", () => {
    expect(checkValues(m, { approved: "true", amount: "-1" }).errors).toEqual({ amount: "At least 0." });
    expect(checkValues(m, { approved: "true", amount: "10001" }).errors).toEqual({ amount: "At most 10000." });
    expect(checkValues(m, { approved: "true", amount: "ten" }).errors).toEqual({ amount: "Enter a number." });
    expect(checkValues(m, { approved: "true", amount: "1", count: "1.5" }).errors).toEqual({ count: "Enter a whole number." });
    expect(checkValues(m, { approved: "true", amount: "1", count: "0" }).errors).toEqual({ count: "At least 1." });
  });

  it("checks string lengths in characters, patterns, enums and JSON", () => {
    expect(checkValues(m, { approved: "true", amount: "1", comment: "ab" }).errors).toEqual({ comment: "At least 3 characters." });
    expect(checkValues(m, { approved: "true", amount: "1", comment: "é".repeat(50) }).errors).toEqual({});
    expect(checkValues(m, { approved: "true", amount: "1", category: "7" }).errors).toEqual({ category: "Choose one of the options." });
    expect(checkValues(m, { approved: "true", amount: "1", extra: "{" }).errors.extra).toMatch(/^Not valid JSON/);
    const p = fieldsFromSchema({ properties: { code: { type: "string", pattern: "^[A-Z]{3}$" } } });
    expect(checkValues(p, { code: "abc" }).errors).toEqual({ code: "Must match ^[A-Z]{3}$." });
    expect(checkValues(p, { code: "ABC" }).errors).toEqual({});
  });

  it("submits a whole-JSON form as the parsed value", () => {
    const j = fieldsFromSchema(true);
    expect(checkValues(j, { "": "[1, 2]" })).toEqual({ data: [1, 2], errors: {} });
  });
});

describe("serverFieldErrors", () => {
  const m = fieldsFromSchema(expense);
  it("puts each problem of the coordinator's message on its field", () => {
    const msg = 'data/comment: "no" is shorter than 10 characters; data: "amount" is a required property; data: Additional properties are not allowed (\'x\' was unexpected)';
    expect(serverFieldErrors(m, msg, "data/comment")).toEqual({
      comment: '"no" is shorter than 10 characters',
      amount: '"amount" is a required property',
      "": "Additional properties are not allowed ('x' was unexpected)",
    });
  });
  it("falls back to the field the API names, or the top of the form", () => {
    expect(serverFieldErrors(m, "too long", "data_json.comment")).toEqual({ comment: "too long" });
    expect(serverFieldErrors(m, "the task is not open", undefined)).toEqual({ "": "the task is not open" });
  });
});
