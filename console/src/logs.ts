// Step logs as the run page shows them: the lines read from `GET /v1/runs/{id}/logs?step=` merged
// with the live ones from the run's event stream (kind "log"), once each, oldest first and
// bounded; the level filter, the level colours, the times in the zone the user picked, and the
// auto-scroll rule. Pure functions: the tests pin the zone and the clock.
import { fmtBytes } from "./status";
import { formatTime, type ZoneMode } from "./time";

/** One line a handler logged (docs/http-api.md, `LogLine`). */
export interface LogLine {
  time: string | null;
  level: string;
  message: string;
  step_id: string;
  attempt: number;
}

/** The levels, least severe first. */
export const LEVELS = ["debug", "info", "warn", "error"] as const;
export type Level = (typeof LEVELS)[number];

/** Most lines the panel keeps (the coordinator keeps at most 1,000 per attempt); the oldest go first. */
export const MAX_LINES = 5000;

/** Text and background colour per level: dark text on light fills (contrast ≥ 4.5:1), and the
 * level word is always written too. */
export const LEVEL_COLOURS: Record<Level, { text: string; fill: string }> = {
  debug: { text: "#374151", fill: "#f3f4f6" },
  info: { text: "#1e3a8a", fill: "#dbeafe" },
  warn: { text: "#78350f", fill: "#fef3c7" },
  error: { text: "#7f1d1d", fill: "#fee2e2" },
};

/** The rank of a level (0 debug … 3 error); an unknown level counts as info. */
export function levelRank(level: string): number {
  const i = LEVELS.indexOf(level as Level);
  return i < 0 ? 1 : i;
}

export function levelColour(level: string): { text: string; fill: string } {
  return LEVEL_COLOURS[(LEVELS as readonly string[]).includes(level) ? (level as Level) : "info"];
}

/** Whether a line belongs to step `stepId` (a fan-out step's panel shows its elements' lines,
 * `step#index`) and, when given, to `attempt`. */
export function belongsTo(line: LogLine, stepId: string, attempt?: number): boolean {
  if (line.step_id !== stepId && !line.step_id.startsWith(`${stepId}#`)) return false;
  return attempt === undefined || line.attempt === attempt;
}

function key(l: LogLine): string {
  return `${l.step_id}\u0000${l.attempt}\u0000${l.time}\u0000${l.level}\u0000${l.message}`;
}

function ms(t: string | null): number {
  const v = t ? new Date(t).getTime() : NaN;
  return Number.isFinite(v) ? v : 0;
}

/** `old` and `incoming` as one list: each line once (a line read from the API and also received
 * live is one line), ordered by time (lines of the same time keep their order), at most `max`
 * lines, the oldest dropped. Returns `old` itself when nothing is new. */
export function mergeLines(old: LogLine[], incoming: LogLine[], max = MAX_LINES): LogLine[] {
  const seen = new Set(old.map(key));
  const fresh = incoming.filter((l) => {
    const k = key(l);
    if (seen.has(k)) return false;
    seen.add(k);
    return true;
  });
  if (fresh.length === 0) return old;
  const all = [...old, ...fresh];
  // Stable sort by time: the worker's clock orders one attempt's lines.
  const sorted = all
    .map((l, i) => ({ l, i, t: ms(l.time) }))
    .sort((a, b) => a.t - b.t || a.i - b.i)
    .map((x) => x.l);
  return sorted.length > max ? sorted.slice(sorted.length - max) : sorted;
}

/** The lines at `min` level or above, of `attempt` when given (0 or undefined: all attempts). */
export function filterLines(lines: LogLine[], min: string, attempt?: number): LogLine[] {
  const floor = levelRank(min);
  return lines.filter((l) => levelRank(l.level) >= floor && (!attempt || l.attempt === attempt));
}

/** How many lines of each level, for the filter's labels. */
export function countLevels(lines: LogLine[]): Record<Level, number> {
  const c: Record<Level, number> = { debug: 0, info: 0, warn: 0, error: 0 };
  for (const l of lines) c[LEVELS[levelRank(l.level)]]++;
  return c;
}

function pad(n: number, w = 2): string {
  return String(n).padStart(w, "0");
}

/** A line's time of day with milliseconds and zone, `08:01:02.123 UTC` (mode utc) or
 * `09:01:02.123 CET` (mode local; `timeZone` pins the zone in tests). "–" for no time. The full
 * date is `formatTime` (the tooltip). */
export function logTime(t: string | null, mode: ZoneMode, timeZone?: string): string {
  if (!t) return "–";
  const d = new Date(t);
  if (Number.isNaN(d.getTime())) return t;
  const millis = pad(d.getUTCMilliseconds(), 3);
  if (mode === "utc") return `${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}:${pad(d.getUTCSeconds())}.${millis} UTC`;
  // formatTime gives `YYYY-MM-DD HH:MM:SS ZONE` in the local zone: keep the time and zone.
  const full = formatTime(t, "local", timeZone);
  const [, clock = "", ...zone] = full.split(" ");
  return `${clock}.${millis} ${zone.join(" ")}`;
}

/** Whether a log box scrolled to `scrollTop` is at its end (within 24 px): new lines then keep
 * it at the end; once the user scrolled up, they do not move it. */
export function atEnd(scrollTop: number, clientHeight: number, scrollHeight: number): boolean {
  return scrollHeight - scrollTop - clientHeight <= 24;
}

/** The API path of a step's lines (all its attempts). */
export function logsPath(runId: string, stepId: string): string {
  return `/v1/runs/${encodeURIComponent(runId)}/logs?step=${encodeURIComponent(stepId)}`;
}

/** An attempt's input as the panel shows it: the JSON value, or a note when the attempt has none
 * (no worker started it) or the answer left it out (over its budget). */
export function inputView(a: { input?: unknown; input_omitted_bytes?: number }): { value: unknown } | { note: string } {
  if (a.input_omitted_bytes && a.input_omitted_bytes > 0)
    return { note: `${fmtBytes(a.input_omitted_bytes)}: too large for the run's answer.` };
  if (a.input === null || a.input === undefined) return { note: "not recorded (no worker started this attempt)" };
  return { value: a.input };
}
