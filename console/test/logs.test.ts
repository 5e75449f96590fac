import { describe, expect, it } from "vitest";
import { atEnd, belongsTo, countLevels, filterLines, inputView, levelColour, levelRank, logsPath, logTime, mergeLines, type LogLine } from "../src/logs";

const line = (s: number, level: string, message: string, attempt = 1, step_id = "charge"): LogLine => ({
  time: new Date(Date.UTC(2026, 11, 6, 7, 1, s, 123)).toISOString(),
  level,
  message,
  step_id,
  attempt,
});

describe("step logs", () => {
  it("merges the lines read and the live ones, each once, by time, bounded", () => {
    const read = [line(1, "info", "a"), line(2, "warn", "b")];
    const live = [line(2, "warn", "b"), line(3, "error", "c"), line(0, "debug", "early")];
    const all = mergeLines(read, live);
    expect(all.map((l) => l.message)).toEqual(["early", "a", "b", "c"]);
    expect(mergeLines(all, [line(3, "error", "c")])).toBe(all);
    // The same text at the same time in two attempts is two lines.
    expect(mergeLines([line(1, "info", "x", 1)], [line(1, "info", "x", 2)])).toHaveLength(2);
    const many = Array.from({ length: 30 }, (_, i) => line(i, "info", `l${i}`));
    expect(mergeLines([], many, 10).map((l) => l.message)).toEqual(many.slice(20).map((l) => l.message));
  });
  it("filters by lowest level and by attempt, and counts the levels", () => {
    const lines = [line(1, "debug", "d"), line(2, "info", "i", 2), line(3, "warn", "w"), line(4, "error", "e", 2)];
    expect(filterLines(lines, "debug").map((l) => l.message)).toEqual(["d", "i", "w", "e"]);
    expect(filterLines(lines, "warn").map((l) => l.message)).toEqual(["w", "e"]);
    expect(filterLines(lines, "info", 2).map((l) => l.message)).toEqual(["i", "e"]);
    expect(countLevels(lines)).toEqual({ debug: 1, info: 1, warn: 1, error: 1 });
    expect(levelRank("nonsense")).toBe(levelRank("info"));
  });
  it("colours each level with dark text on a light fill", () => {
    expect(levelColour("error")).toEqual({ text: "#7f1d1d", fill: "#fee2e2" });
    expect(levelColour("warn").fill).toBe("#fef3c7");
    expect(levelColour("odd")).toEqual(levelColour("info"));
  });
  it("takes a fan-out element's lines into its step's panel, not another step's", () => {
    expect(belongsTo(line(1, "info", "x", 1, "charge#4"), "charge")).toBe(true);
    expect(belongsTo(line(1, "info", "x", 1, "charge2"), "charge")).toBe(false);
    expect(belongsTo(line(1, "info", "x", 2), "charge", 1)).toBe(false);
  });
  it("writes a line's time with milliseconds in the zone picked", () => {
    const t = "2026-12-06T07:01:02.123Z";
    expect(logTime(t, "utc")).toBe("07:01:02.123 UTC");
    expect(logTime(t, "local", "Europe/Paris")).toBe("08:01:02.123 CET");
    expect(logTime(t, "local", "Asia/Kolkata")).toBe("12:31:02.123 GMT+5:30");
    expect(logTime(null, "utc")).toBe("–");
  });
  it("follows the end only while the box is scrolled to it", () => {
    expect(atEnd(600, 400, 1000)).toBe(true);
    expect(atEnd(580, 400, 1000)).toBe(true);
    expect(atEnd(300, 400, 1000)).toBe(false);
  });
  it("reads a step's lines from the logs route, and says why an input is missing", () => {
    expect(logsPath("r/1", "a b")).toBe("/v1/runs/r%2F1/logs?step=a%20b");
    expect(inputView({ input: { order: "A-17" }, input_omitted_bytes: 0 })).toEqual({ value: { order: "A-17" } });
    expect(inputView({ input: null, input_omitted_bytes: 0 })).toEqual({ note: "not recorded (no worker started this attempt)" });
    expect(inputView({ input: null, input_omitted_bytes: 5_300_000 })).toEqual({ note: "5.3 MB: too large for the run's answer." });
  });
});

import { inFlight } from "../src/views/StepData";

describe("the attempt in flight", () => {
  const done = { number: 1, outcome: "failed", error: "x", worker: "w", started_at: null, finished_at: null, input: { a: 1 }, input_omitted_bytes: 0, error_type: "E", error_details: "", log_lines: 0 };
  it("is a card with its input while it runs, and nothing once it is among the finished ones", () => {
    const running = inFlight({ attempt: 2, status: "running", input: { a: 2 }, input_omitted_bytes: 0, attempts: [done] }, "running");
    expect(running).toMatchObject({ number: 2, outcome: "running", input: { a: 2 } });
    expect(inFlight({ attempt: 1, status: "failed", input: null, input_omitted_bytes: 0, attempts: [done] }, "failed")).toBeUndefined();
    expect(inFlight({ attempt: 2, status: "pending", input: null, input_omitted_bytes: 0, attempts: [done] }, "pending")).toBeUndefined();
    expect(inFlight({ attempt: 2, status: "running", input: null, input_omitted_bytes: 9000, attempts: [done] }, "running")?.input_omitted_bytes).toBe(9000);
  });
});
