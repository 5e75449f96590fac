import { describe, expect, it } from "vitest";
import { graphEdges, layoutSteps, nodeWidth } from "../src/graph";
import { SseParser, type SseMessage } from "../src/sse";
import { earlierAttemptsNote, fmtBytes, isTerminal, statusColour, statusWord } from "../src/status";

describe("status", () => {
  it("reads every spelling of a status", () => {
    expect(statusWord("RUN_STATUS_TIMED_OUT")).toBe("timed_out");
    expect(statusWord("STEP_STATUS_WAITING")).toBe("waiting");
    expect(statusWord("succeeded")).toBe("succeeded");
    expect(statusWord("RUN_STATUS_UNSPECIFIED")).toBe("");
    expect(statusWord(3)).toBe("");
  });
  it("colours succeeded green and failed red, unknown white", () => {
    expect(statusColour("STEP_STATUS_SUCCEEDED").fill).toBe("#bbf7d0");
    expect(statusColour("failed").border).toBe("#b91c1c");
    expect(statusColour("nonsense").fill).toBe("#ffffff");
  });
  it("counts the attempts a step's history no longer shows", () => {
    expect(earlierAttemptsNote(0)).toBe("");
    expect(earlierAttemptsNote(undefined)).toBe("");
    expect(earlierAttemptsNote(1)).toBe("1 earlier attempt not shown");
    expect(earlierAttemptsNote(280)).toBe("280 earlier attempts not shown");
  });
  it("says the size of a left-out output as the CLI does", () => {
    expect(fmtBytes(0)).toBe("0 bytes");
    expect(fmtBytes(999)).toBe("999 bytes");
    expect(fmtBytes(12_345)).toBe("12.3 kB");
    expect(fmtBytes(5_299_999)).toBe("5.2 MB");
    expect(fmtBytes(2_000_010)).toBe("2.0 MB");
  });
  it("knows the final statuses", () => {
    expect(["succeeded", "failed", "cancelled", "timed_out", "running", "pending"].map(isTerminal)).toEqual([true, true, true, true, false, false]);
  });
});

describe("graph", () => {
  const steps = [
    { id: "submit", dependsOn: [] },
    { id: "approve", dependsOn: ["submit"] },
    { id: "process", dependsOn: ["approve", "ghost"] },
    { id: "reject", dependsOn: ["approve"] },
  ];
  it("draws one edge per known dependency", () => {
    expect(graphEdges(steps)).toEqual([
      { from: "submit", to: "approve" },
      { from: "approve", to: "process" },
      { from: "approve", to: "reject" },
    ]);
  });
  it("lays dependencies above their dependents and side branches apart", () => {
    const l = layoutSteps(steps);
    const at = Object.fromEntries(l.nodes.map((n) => [n.id, n]));
    expect(at.submit.y).toBeLessThan(at.approve.y);
    expect(at.approve.y).toBeLessThan(at.process.y);
    expect(at.process.y).toBe(at.reject.y);
    expect(at.process.x).not.toBe(at.reject.x);
    expect(l.width).toBeGreaterThan(0);
    expect(l.edges.every((e) => e.points.length >= 2)).toBe(true);
  });
  it("sizes boxes to their labels within bounds", () => {
    expect(nodeWidth("a")).toBe(118);
    expect(nodeWidth("approve", "human")).toBe(156);
    expect(nodeWidth("x".repeat(100))).toBe(260);
  });
});

describe("SseParser", () => {
  it("parses events split across chunks, skips comments, keeps the last id", () => {
    const got: SseMessage[] = [];
    const p = new SseParser((m) => got.push(m));
    p.push(": keep-alive\n\nid: 1-0\nevent: step\ndata: {\"a\"");
    p.push(":1}\n\nid: 2-0\r\ndata: x\r");
    p.push("\ndata: y\r\n\r\n");
    expect(got).toEqual([
      { id: "1-0", event: "step", data: '{"a":1}' },
      { id: "2-0", event: "message", data: "x\ny" },
    ]);
    expect(p.lastId).toBe("2-0");
  });
});
