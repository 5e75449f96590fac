// The schedule form's pure core: a schedule (or nothing, for a new one) becomes the form's text
// values, and the values become the body of `POST /v1/schedules` (which creates, or replaces the
// API schedule with the same id), or the field errors found before sending.
import type { Schedule } from "./api";

/** What the schedule form holds, as typed. */
export interface ScheduleValues {
  id: string;
  workflow: string;
  /** "" or "0": the latest version when each run starts. */
  version: string;
  cron: string;
  timezone: string;
  /** JSON text; "" means `{}`. */
  input: string;
  overlap: string;
  /** Seconds; "": the coordinator's default (1 h). */
  catchup: string;
}

/** The overlap policies, in the API's words, with what each does. */
export const OVERLAPS: [string, string][] = [
  ["skip", "skip a tick while the last run is unfinished"],
  ["buffer_one", "run one buffered tick after it ends"],
  ["allow_all", "start every tick"],
  ["cancel_other", "cancel the unfinished run, start the new one"],
];

export function scheduleValues(s?: Schedule): ScheduleValues {
  if (!s) return { id: "", workflow: "", version: "", cron: "", timezone: "UTC", input: "{}", overlap: "skip", catchup: "" };
  return {
    id: s.id,
    workflow: s.workflow,
    version: s.workflow_version ? String(s.workflow_version) : "",
    cron: s.cron,
    timezone: s.timezone || "UTC",
    input: s.input === null || s.input === undefined ? "{}" : JSON.stringify(s.input, null, 2),
    overlap: s.overlap || "skip",
    catchup: s.catchup_window_ms ? String(Math.round(s.catchup_window_ms / 1000)) : "",
  };
}

export interface ScheduleBody {
  id?: string;
  workflow: string;
  workflow_version?: number;
  cron: string;
  timezone?: string;
  input?: unknown;
  overlap?: string;
  catchup_window_ms?: number;
}

/** The request body, or the errors by field name (the keys of [`ScheduleValues`]). The
 * coordinator checks cron, time zone and bounds again and names its field. */
export function scheduleBody(v: ScheduleValues): { body?: ScheduleBody; errors: Record<string, string> } {
  const errors: Record<string, string> = {};
  if (!v.workflow.trim()) errors.workflow = "Choose a workflow.";
  if (!v.cron.trim()) errors.cron = "Required: 5 fields (min hour day month weekday) or 6 (seconds first).";
  let version: number | undefined;
  if (v.version.trim() !== "" && v.version.trim() !== "0") {
    const n = Number(v.version.trim());
    if (!/^\d+$/.test(v.version.trim()) || !Number.isSafeInteger(n) || n < 1 || n > 4294967295) errors.version = "A version number (1 or more), or empty for the latest.";
    else version = n;
  }
  let input: unknown;
  if (v.input.trim() !== "") {
    try {
      input = JSON.parse(v.input);
    } catch (e) {
      errors.input = `Not valid JSON: ${(e as Error).message}`;
    }
  }
  let catchup: number | undefined;
  if (v.catchup.trim() !== "") {
    const n = Number(v.catchup.trim());
    if (!/^\d+$/.test(v.catchup.trim()) || !Number.isSafeInteger(n) || n < 1) errors.catchup = "Whole seconds (1 or more), or empty for the default (1 h).";
    else catchup = n * 1000;
  }
  if (Object.keys(errors).length > 0) return { errors };
  const body: ScheduleBody = { workflow: v.workflow.trim(), cron: v.cron.trim() };
  if (v.id.trim()) body.id = v.id.trim();
  if (version !== undefined) body.workflow_version = version;
  if (v.timezone.trim()) body.timezone = v.timezone.trim();
  if (input !== undefined) body.input = input;
  if (v.overlap) body.overlap = v.overlap;
  if (catchup !== undefined) body.catchup_window_ms = catchup;
  return { body, errors };
}

/** Where the coordinator's error goes in the form: its `field` (`input/...` → input,
 * `workflow_version` → version, `catchup_window_ms` → catchup), else above the form (""). */
export function scheduleErrorField(field: string | undefined): keyof ScheduleValues | "" {
  const f = (field ?? "").split(/[/.[]/)[0];
  switch (f) {
    case "id":
    case "workflow":
    case "cron":
    case "timezone":
    case "overlap":
    case "input":
      return f;
    case "input_json":
      return "input";
    case "workflow_version":
      return "version";
    case "catchup_window_ms":
      return "catchup";
    default:
      return "";
  }
}
