import { describe, expect, it } from "vitest";
import type { Run, StepRun } from "../src/api";
import { checkValues, initialValues, inputModel, serverFieldErrors } from "../src/form";
import { bulkApplies, bulkSummary, bulkTargets, countsLine, filtersFrom, isRunId, listParams, partialNotice, runBulk } from "../src/runs";
import { scheduleBody, scheduleErrorField, scheduleValues } from "../src/schedule";
import { formatTime, inputToRfc3339, relativeTime } from "../src/time";
import { place, timeline } from "../src/timeline";

describe("times", () => {
  const t = "2026-11-30T08:01:02.345Z";
  it("say their zone, in UTC or local time", () => {
    expect(formatTime(t, "utc")).toBe("2026-11-30 08:01:02 UTC");
    expect(formatTime(t, "local", "Europe/Paris")).toBe("2026-11-30 09:01:02 CET");
    expect(formatTime(t, "local", "America/New_York")).toBe("2026-11-30 03:01:02 GMT-5");
    expect(formatTime(t, "local", "UTC")).toBe("2026-11-30 08:01:02 UTC");
    expect(formatTime(null, "utc")).toBe("–");
    expect(formatTime("not a time", "utc")).toBe("not a time");
  });
  it("are relative as the CLI says them", () => {
    const now = Date.parse(t);
    expect(relativeTime(t, now + 400)).toBe("just now");
    expect(relativeTime(t, now + 42_000)).toBe("42 s ago");
    expect(relativeTime(t, now + 3 * 60_000 + 5_000)).toBe("3 min ago");
    expect(relativeTime(t, now + 5 * 3_600_000)).toBe("5 h ago");
    expect(relativeTime(t, now + 86_400_000)).toBe("1 day ago");
    expect(relativeTime(t, now - 120_000)).toBe("in 2 min");
    expect(relativeTime(null, now)).toBe("");
  });
  it("read a datetime-local value in the chosen zone", () => {
    expect(inputToRfc3339("2026-11-30T08:00", "utc")).toBe("2026-11-30T08:00:00.000Z");
    expect(inputToRfc3339("", "utc")).toBe("");
    expect(inputToRfc3339("nonsense", "utc")).toBe("");
  });
});

describe("the runs list", () => {
  const runs = [
    { id: "a", status: "running" },
    { id: "b", status: "failed" },
    { id: "c", status: "succeeded" },
    { id: "d", status: "pending" },
  ];
  it("hides child runs unless asked, and searches by run id or idempotency key", () => {
    const f = filtersFrom(new URLSearchParams("workflow=orders&q=order-17"));
    const p = listParams(f, "utc");
    expect(p.top_level).toBe("true");
    expect(p.idempotency_key).toBe("order-17");
    expect(p.workflow).toBe("orders");
    expect(listParams(filtersFrom(new URLSearchParams("children=1")), "utc").top_level).toBeUndefined();
    expect(listParams(filtersFrom(new URLSearchParams("parent=x")), "utc").top_level).toBeUndefined();
    const id = "0b6f3c1e-2d4a-4f5b-8c9d-0123456789ab";
    expect(isRunId(id)).toBe(true);
    expect(isRunId("order-17")).toBe(false);
    expect(listParams(filtersFrom(new URLSearchParams(`q=${id}`)), "utc").idempotency_key).toBeUndefined();
    expect(listParams(filtersFrom(new URLSearchParams("cursor=0001:abc")), "utc").page_token).toBe("0001:abc");
  });
  it("passes the filter and asks for counts over every matching run", () => {
    const q = 'status = "failed" AND input.customer.id = "c-42"';
    const p = listParams(filtersFrom(new URLSearchParams({ query: `  ${q} ` })), "utc");
    expect(p.query).toBe(q);
    expect(p.counts).toBe("true");
    expect(listParams(filtersFrom(new URLSearchParams("")), "utc").query).toBeUndefined();
  });
  it("counts over every matching run when the API gives counts, else over the page", () => {
    const page = [{ status: "RUN_STATUS_FAILED" }, { status: "succeeded" }, { status: "failed" }];
    expect(countsLine(page, undefined)).toEqual({
      total: 3,
      scope: "page",
      counts: [
        ["failed", 2],
        ["succeeded", 1],
      ],
    });
    // The API's counts (uint64 may come as strings in JSON) win over the page's; zeros are left out.
    expect(countsLine(page, { succeeded: "1200", failed: 34, cancelled: 0 })).toEqual({
      total: 1234,
      scope: "matching",
      counts: [
        ["succeeded", 1200],
        ["failed", 34],
      ],
    });
    expect(countsLine([], {})).toEqual({ total: 0, scope: "matching", counts: [] });
  });
  it("says when the answer is partial, and why", () => {
    expect(partialNotice(undefined)).toBeUndefined();
    expect(partialNotice({ partial: false })).toBeUndefined();
    expect(partialNotice({ partial: true, partial_reason: "the archive is unavailable: timed out" })).toBe(
      "Partial answer: the archive is unavailable: timed out",
    );
    expect(partialNotice({ partial: true })).toBe("Partial answer: some matching runs may be missing");
  });
  it("applies cancel to unfinished runs and retry to failed ones only", () => {
    const sel = new Set(["a", "b", "c", "d"]);
    expect(bulkTargets("cancel", runs, sel)).toEqual(["a", "d"]);
    expect(bulkTargets("retry", runs, sel)).toEqual(["b"]);
    expect(bulkTargets("cancel", runs, new Set(["c"]))).toEqual([]);
    expect(bulkApplies("retry", "RUN_STATUS_TIMED_OUT")).toBe(true);
    expect(bulkApplies("retry", "cancelled")).toBe(true);
  });
  it("goes on past a failure and says what happened", async () => {
    const o = await runBulk(["a", "b", "c"], async (id) => {
      if (id === "b") throw new Error("the run is finished");
    });
    expect(o.done).toEqual(["a", "c"]);
    expect(bulkSummary("cancel", o)).toBe("Cancelled 2 runs. 1 failed: b…: the run is finished");
    expect(bulkSummary("retry", { done: ["x"], failed: [] })).toBe("Retried 1 run.");
  });
});

describe("the start-run form", () => {
  const schema = {
    type: "object",
    required: ["employee", "amount"],
    properties: { employee: { type: "string", maxLength: 100 }, amount: { type: "number", exclusiveMinimum: 0 }, currency: { enum: ["EUR", "USD"] } },
  };
  it("is built from the input schema, or is one JSON field", () => {
    expect(inputModel(schema).fields.map((f) => f.name)).toEqual(["employee", "amount", "currency"]);
    const raw = inputModel(null);
    expect(raw.fields[0].label).toBe("Input (JSON)");
    expect(initialValues(raw)[""]).toBe("{}");
    expect(checkValues(raw, { "": '{"a": 1}' }).data).toEqual({ a: 1 });
  });
  it("puts the coordinator's input errors on their fields", () => {
    const m = inputModel(schema);
    expect(serverFieldErrors(m, "input/amount: -5 is less than or equal to the minimum of 0", "input/amount", "input")).toEqual({
      amount: "-5 is less than or equal to the minimum of 0",
    });
    expect(serverFieldErrors(m, 'input/employee: "employee" is a required property; input/amount: 0 is too small', "input/employee", "input")).toEqual({
      employee: '"employee" is a required property',
      amount: "0 is too small",
    });
  });
});

describe("the schedule form", () => {
  it("builds the body of POST /v1/schedules", () => {
    const v = { ...scheduleValues(), id: "nightly", workflow: "orders", cron: "0 3 * * *", timezone: "Europe/Paris", input: '{"n": 1}', catchup: "600" };
    expect(scheduleBody(v)).toEqual({
      body: { id: "nightly", workflow: "orders", cron: "0 3 * * *", timezone: "Europe/Paris", input: { n: 1 }, overlap: "skip", catchup_window_ms: 600_000 },
      errors: {},
    });
  });
  it("refuses what it can check and names the field", () => {
    const r = scheduleBody({ ...scheduleValues(), version: "x", input: "{", catchup: "-1" });
    expect(r.body).toBeUndefined();
    expect(Object.keys(r.errors).sort()).toEqual(["catchup", "cron", "input", "version", "workflow"]);
  });
  it("edits a schedule with its values, and maps the coordinator's field back", () => {
    const v = scheduleValues({
      id: "s", workflow: "w", workflow_version: 2, cron: "* * * * *", timezone: "", input: { a: 1 }, overlap: "allow_all", catchup_window_ms: 3_600_000,
      paused: false, source: "api", created_at: null, next_tick_at: null, last_run_id: "",
    });
    expect(v).toMatchObject({ version: "2", timezone: "UTC", overlap: "allow_all", catchup: "3600" });
    expect(JSON.parse(v.input)).toEqual({ a: 1 });
    expect(scheduleErrorField("cron")).toBe("cron");
    expect(scheduleErrorField("input/x")).toBe("input");
    expect(scheduleErrorField("workflow_version")).toBe("version");
    expect(scheduleErrorField(undefined)).toBe("");
  });
});

describe("the timeline", () => {
  const step = (over: Partial<StepRun>): StepRun => ({
    id: "s", handler: "h", kind: "task", status: "succeeded", attempt: 1, max_attempts: 3, attempt_base: 0, output: null, output_omitted_bytes: 0, input: null, input_omitted_bytes: 0, error: "",
    dispatched_at: null, started_at: null, finished_at: null, wake_at: null, depends_on: [], attempts: [], earlier_attempts: 0, worker: "", child_run_id: "",
    items: null, emitted: null, waiting_for: "", completed_by: "", slot: "", slot_holders: [], ...over,
  });
  const at = (s: number) => new Date(Date.UTC(2026, 10, 30, 8, 0, s)).toISOString();
  const data = { input: null, input_omitted_bytes: 0, error_type: "", error_details: "", log_lines: 0 };
  const run = {
    id: "r", created_at: at(0), finished_at: null,
    steps: [
      step({
        id: "a", attempt: 2, status: "succeeded", started_at: at(4), finished_at: at(6),
        attempts: [
          { number: 1, outcome: "failed", error: "boom", worker: "w", started_at: at(1), finished_at: at(2), ...data },
          { number: 2, outcome: "succeeded", error: "", worker: "w", started_at: at(4), finished_at: at(6), ...data },
        ],
      }),
      step({ id: "b", status: "running", started_at: at(6), attempt: 1 }),
      step({ id: "c", status: "pending" }),
    ],
  } as unknown as Run;
  it("draws a bar per attempt, the running one up to now", () => {
    const t = timeline(run, Date.parse(at(10)));
    expect(t.rows.map((r) => r.bars.map((b) => `${b.attempt}:${b.status}${b.open ? "…" : ""}`))).toEqual([["1:failed", "2:succeeded"], ["1:running…"], []]);
    expect(place(t, t.rows[0].bars[0])).toEqual({ left: 10, width: 10 });
    expect(place(t, t.rows[1].bars[0])).toEqual({ left: 60, width: 40 });
  });
});
