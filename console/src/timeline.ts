// A run's attempts as a timeline (waterfall): one row per step, one bar per attempt from its start
// to its end (or now, while it runs), placed on the run's span from its creation to its end. Pure:
// src/views/Timeline.tsx draws the bars.
import type { Run } from "./api";
import { statusWord } from "./status";

export interface Bar {
  step: string;
  /** The attempt's number; 0 for a step that ran no handler (sleep, wait, human, child run). */
  attempt: number;
  /** The attempt's outcome or the step's status word (`succeeded`, `failed`, `running`, ...). */
  status: string;
  /** Unix ms. */
  start: number;
  end: number;
  /** Whether the bar ends now because the attempt has not finished. */
  open: boolean;
  error: string;
}

export interface Timeline {
  /** Unix ms: the run's creation, and its end (or now). */
  from: number;
  to: number;
  rows: { step: string; bars: Bar[] }[];
}

function ms(t: string | null | undefined): number | undefined {
  if (!t) return undefined;
  const n = new Date(t).getTime();
  return Number.isFinite(n) ? n : undefined;
}

/** The bars of `run` at `now` (Unix ms), steps in the run's order; steps that never started have
 * no bars. */
export function timeline(run: Run, now: number): Timeline {
  const rows: Timeline["rows"] = [];
  let from = ms(run.created_at) ?? now;
  let to = ms(run.finished_at) ?? now;
  for (const s of run.steps) {
    const bars: Bar[] = [];
    for (const a of s.attempts) {
      const start = ms(a.started_at);
      if (start === undefined) continue;
      const end = ms(a.finished_at);
      bars.push({ step: s.id, attempt: a.number, status: statusWord(a.outcome) || a.outcome, start, end: end ?? now, open: end === undefined, error: a.error });
    }
    // The current attempt (or a step without attempts) when the kept list does not hold it.
    const start = ms(s.started_at) ?? ms(s.dispatched_at);
    const word = statusWord(s.status);
    if (start !== undefined && !s.attempts.some((a) => a.number === s.attempt) && word !== "pending" && word !== "skipped") {
      const end = ms(s.finished_at);
      bars.push({ step: s.id, attempt: s.kind === "task" ? s.attempt : 0, status: word, start, end: end ?? now, open: end === undefined, error: s.error });
    }
    for (const b of bars) {
      from = Math.min(from, b.start);
      to = Math.max(to, b.end);
    }
    rows.push({ step: s.id, bars });
  }
  return { from, to: Math.max(to, from + 1), rows };
}

/** A bar's place on the timeline, in percent of its width: left edge and width (at least 0.5 %
 * so that an instant stays visible). */
export function place(t: Timeline, b: Bar): { left: number; width: number } {
  const span = t.to - t.from;
  const left = Math.min(100, Math.max(0, ((b.start - t.from) / span) * 100));
  const width = Math.max(0.5, Math.min(100 - left, ((b.end - b.start) / span) * 100));
  return { left, width };
}
