// Status words and their colours: one place for the run and step statuses the API reports, so the
// runs table, the graph and the legend agree.

/** The API's status, however it is spelled (`RUN_STATUS_SUCCEEDED`, `STEP_STATUS_WAITING`,
 * `succeeded`), as the lower-case word (`succeeded`, `waiting`); "" for unknown/unspecified. */
export function statusWord(s: unknown): string {
  if (typeof s !== "string") return "";
  const w = s.replace(/^(RUN|STEP)_STATUS_/i, "").toLowerCase();
  return w === "unspecified" ? "" : w;
}

/** Background and border colour of a status: light fills with dark text (contrast ≥ 4.5:1 with
 * #111), so colour is never the only cue (the word is always written too). */
export const STATUS_COLOURS: Record<string, { fill: string; border: string }> = {
  pending: { fill: "#eceff3", border: "#6b7280" },
  dispatched: { fill: "#dbeafe", border: "#2563eb" },
  running: { fill: "#bfdbfe", border: "#1d4ed8" },
  retrying: { fill: "#fde68a", border: "#b45309" },
  waiting: { fill: "#e9d5ff", border: "#7e22ce" },
  succeeded: { fill: "#bbf7d0", border: "#15803d" },
  failed: { fill: "#fecaca", border: "#b91c1c" },
  timed_out: { fill: "#fecaca", border: "#b91c1c" },
  cancelled: { fill: "#e5e7eb", border: "#374151" },
  skipped: { fill: "#f5f5f4", border: "#a8a29e" },
};

export function statusColour(s: unknown): { fill: string; border: string } {
  return STATUS_COLOURS[statusWord(s)] ?? { fill: "#ffffff", border: "#6b7280" };
}

/** Whether a run status is final. */
export function isTerminal(s: unknown): boolean {
  return ["succeeded", "failed", "cancelled", "timed_out"].includes(statusWord(s));
}

/** The run statuses offered by the runs filter, in lifecycle order. */
export const RUN_STATUSES = ["pending", "running", "succeeded", "failed", "cancelled", "timed_out"];

// The note above a step's attempts when the coordinator kept only the last ones (it keeps 20 in
// full and counts the rest); "" when none were left out.
export function earlierAttemptsNote(n: number | undefined): string {
  if (!n || n <= 0) return "";
  return n === 1 ? "1 earlier attempt not shown" : `${n} earlier attempts not shown`;
}

// A size in bytes as people read it, in SI units cut to one decimal: "950 bytes", "12.3 kB",
// "5.2 MB" (as `baton run get` says it).
export function fmtBytes(n: number): string {
  const units: [number, string][] = [
    [1e9, "GB"],
    [1e6, "MB"],
    [1e3, "kB"],
  ];
  for (const [scale, unit] of units) {
    if (n >= scale) return `${Math.floor(n / scale)}.${Math.floor((n % scale) / (scale / 10))} ${unit}`;
  }
  return `${n} bytes`;
}
