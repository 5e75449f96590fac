import { describe, expect, it } from "vitest";
import { nodeState } from "../src/graph";

const fanOut = {
  status: "STEP_STATUS_RUNNING",
  kind: "task",
  handler: "square",
  items: { succeeded: 15, failed: 0, total: 18 },
};

describe("a run graph's node", () => {
  it("shows the fetched status with the fetched counts", () => {
    expect(nodeState(fanOut)).toEqual({ status: "STEP_STATUS_RUNNING", note: "15/18 items" });
    expect(nodeState(fanOut, "running")).toEqual({ status: "STEP_STATUS_RUNNING", note: "15/18 items" });
  });
  it("never pairs an event's status with the counts of an older fetch", () => {
    expect(nodeState(fanOut, "succeeded")).toEqual({ status: "succeeded", note: "square" });
    const done = { ...fanOut, status: "STEP_STATUS_SUCCEEDED", items: { succeeded: 18, failed: 0, total: 18 } };
    expect(nodeState(done, "succeeded")).toEqual({ status: "STEP_STATUS_SUCCEEDED", note: "18/18 items" });
  });
  it("names the kind of a step that runs no handler, and an emitter's runs", () => {
    expect(nodeState({ status: "waiting", kind: "sleep", handler: "" })).toEqual({ status: "waiting", note: "sleep" });
    const emitter = { status: "waiting", kind: "emit", handler: "list", emitted: { succeeded: 2, failed: 1, total: 5 } };
    expect(nodeState(emitter).note).toBe("3/5 runs");
    expect(nodeState(emitter, "succeeded").note).toBe("emit");
  });
});
