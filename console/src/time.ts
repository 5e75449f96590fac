// Times as the console writes them: every time with its zone ("2026-11-30 08:01:02 UTC" or
// "2026-11-30 09:01:02 CET"), in UTC or the browser's zone as the user chose (kept in
// localStorage), and relative times ("3 min ago", "in 2 h") where the CLI uses them. Pure
// functions of (time, zone, now): the tests pin the zone and the clock.

const ZONE_KEY = "baton.zone";

/** Which clock the console shows times in. */
export type ZoneMode = "utc" | "local";

/** The zone the user chose last (UTC unless they picked local time). */
export function savedZone(): ZoneMode {
  try {
    return localStorage.getItem(ZONE_KEY) === "local" ? "local" : "utc";
  } catch {
    return "utc";
  }
}

export function saveZone(z: ZoneMode): void {
  try {
    localStorage.setItem(ZONE_KEY, z);
  } catch {
    /* private mode: the choice lasts for the page */
  }
}

function two(n: number): string {
  return String(n).padStart(2, "0");
}

/** `2026-11-30 08:01:02 UTC` (mode utc) or `2026-11-30 09:01:02 CET` (mode local: the zone's
 * short name, or its offset `GMT+1` where the browser has no name for it). `timeZone` pins the
 * local zone (tests); the browser's own when absent. "–" for no time; the text itself when it is
 * not a time. */
export function formatTime(t: string | null | undefined, mode: ZoneMode, timeZone?: string): string {
  if (!t) return "–";
  const d = new Date(t);
  if (Number.isNaN(d.getTime())) return t;
  if (mode === "utc") {
    return `${d.getUTCFullYear()}-${two(d.getUTCMonth() + 1)}-${two(d.getUTCDate())} ${two(d.getUTCHours())}:${two(d.getUTCMinutes())}:${two(d.getUTCSeconds())} UTC`;
  }
  const parts = new Intl.DateTimeFormat("en-GB", {
    timeZone,
    year: "numeric",
    month: "2-digit",
    day: "2-digit",
    hour: "2-digit",
    minute: "2-digit",
    second: "2-digit",
    hourCycle: "h23",
    timeZoneName: "short",
  }).formatToParts(d);
  const p = (type: string) => parts.find((x) => x.type === type)?.value ?? "";
  return `${p("year")}-${p("month")}-${p("day")} ${p("hour")}:${p("minute")}:${p("second")} ${p("timeZoneName")}`;
}

/** How long ago (or ahead) `t` is from `now` (Unix ms), in the CLI's words: "just now",
 * "42 s ago", "3 min ago", "5 h ago", "2 days ago", "in 3 min". "" for no time. */
export function relativeTime(t: string | null | undefined, now: number): string {
  if (!t) return "";
  const ms = new Date(t).getTime();
  if (!Number.isFinite(ms)) return "";
  const diff = now - ms;
  const abs = Math.abs(diff);
  let text: string;
  if (abs < 1_000) return "just now";
  if (abs < 60_000) text = `${Math.floor(abs / 1000)} s`;
  else if (abs < 3_600_000) text = `${Math.floor(abs / 60_000)} min`;
  else if (abs < 86_400_000) text = `${Math.floor(abs / 3_600_000)} h`;
  else {
    const days = Math.floor(abs / 86_400_000);
    text = `${days} day${days === 1 ? "" : "s"}`;
  }
  return diff >= 0 ? `${text} ago` : `in ${text}`;
}

/** A `datetime-local` input's value (wall time in `mode`'s zone) as RFC 3339 UTC; "" when empty
 * or invalid. */
export function inputToRfc3339(value: string, mode: ZoneMode): string {
  if (!value) return "";
  const d = new Date(mode === "utc" ? `${value}Z` : value);
  return Number.isNaN(d.getTime()) ? "" : d.toISOString();
}
