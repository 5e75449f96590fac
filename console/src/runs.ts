// The runs list's pure logic: what the URL's filters ask of the API, which selected runs an
// action applies to, and the outcome of a bulk action told in words. No DOM here:
// src/views/Runs.tsx draws the list.
import { isTerminal, statusWord } from "./status";
import { inputToRfc3339, type ZoneMode } from "./time";

/** The list's state as the URL keeps it (`#/runs?workflow=…&cursor=…`). */
export interface RunFilters {
  workflow: string;
  status: string;
  /** `datetime-local` values, read in the chosen zone. */
  after: string;
  before: string;
  /** Only the runs this run started. */
  parent: string;
  /** "1": child runs are listed too (hidden by default). */
  children: string;
  /** A run id or an idempotency key. */
  q: string;
  /** A filter in the search language (docs/search.md), e.g. `status = "failed" AND input.customer.id = "c-42"`. */
  query: string;
  /** The page token of the page shown ("" for the first). */
  cursor: string;
}

export const FILTER_KEYS: (keyof RunFilters)[] = ["workflow", "status", "after", "before", "parent", "children", "q", "query", "cursor"];

export function filtersFrom(params: URLSearchParams): RunFilters {
  const out = {} as RunFilters;
  for (const k of FILTER_KEYS) out[k] = params.get(k) ?? "";
  return out;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** Whether a search text is a run id (a UUID): then the run is read directly. */
export function isRunId(q: string): boolean {
  return UUID.test(q.trim());
}

/** The query parameters of `GET /v1/runs` for these filters (a run-id search is not a listing:
 * see [`isRunId`]). Child runs are left out unless asked for or a parent is named. */
export function listParams(f: RunFilters, zone: ZoneMode, limit = 50): Record<string, string | number | undefined> {
  const q = f.q.trim();
  return {
    workflow: f.workflow,
    status: f.status,
    parent_run_id: f.parent,
    top_level: f.parent || f.children === "1" ? undefined : "true",
    idempotency_key: q && !isRunId(q) ? q : undefined,
    created_after: inputToRfc3339(f.after, zone),
    created_before: inputToRfc3339(f.before, zone),
    query: f.query.trim() || undefined,
    // Counts by status over every matching run (not only this page).
    counts: "true",
    limit,
    page_token: f.cursor,
  };
}

/** The notice above the runs list when the API's answer is partial (`partial`: the archive could
 * not be read, or the counts stopped at the Redis scan bound), else `undefined`. */
export function partialNotice(answer: { partial?: boolean; partial_reason?: string } | undefined): string | undefined {
  if (!answer?.partial) return undefined;
  return `Partial answer: ${answer.partial_reason || "some matching runs may be missing"}`;
}

/** The line above the runs list: counts by status over every matching run when the API gave
 * them (`status_counts`), else over the runs of this page. Statuses with no run are left out. */
export function countsLine(
  page: { status: string }[],
  statusCounts: Record<string, number | string> | undefined,
): { total: number; scope: "matching" | "page"; counts: [string, number][] } {
  const counts = new Map<string, number>();
  let scope: "matching" | "page" = "page";
  if (statusCounts && Object.keys(statusCounts).length > 0) {
    scope = "matching";
    for (const [s, n] of Object.entries(statusCounts)) {
      const v = Number(n);
      if (v > 0) counts.set(statusWord(s), (counts.get(statusWord(s)) ?? 0) + v);
    }
  } else if (statusCounts) {
    scope = "matching";
  } else {
    for (const r of page) counts.set(statusWord(r.status), (counts.get(statusWord(r.status)) ?? 0) + 1);
  }
  const list = [...counts.entries()];
  return { total: list.reduce((a, [, n]) => a + n, 0), scope, counts: list };
}

/** A bulk action on selected runs. */
export type BulkAction = "cancel" | "retry";

/** Whether `action` applies to a run in `status`: cancel to an unfinished run, retry to one that
 * failed, was cancelled or timed out. */
export function bulkApplies(action: BulkAction, status: string): boolean {
  if (action === "cancel") return !isTerminal(status);
  return ["failed", "cancelled", "timed_out"].includes(statusWord(status));
}

/** The selected runs `action` applies to, in list order. */
export function bulkTargets(action: BulkAction, runs: { id: string; status: string }[], selected: Set<string>): string[] {
  return runs.filter((r) => selected.has(r.id) && bulkApplies(action, r.status)).map((r) => r.id);
}

/** What a bulk action did, run by run. */
export interface BulkOutcome {
  done: string[];
  failed: { id: string; message: string }[];
}

/** Applies `one` to each id in turn (one request at a time: a page holds at most 1,000 runs, and
 * the coordinator is not flooded); a failure is noted and the others go on. */
export async function runBulk(ids: string[], one: (id: string) => Promise<unknown>): Promise<BulkOutcome> {
  const out: BulkOutcome = { done: [], failed: [] };
  for (const id of ids) {
    try {
      await one(id);
      out.done.push(id);
    } catch (e) {
      out.failed.push({ id, message: (e as Error).message ?? String(e) });
    }
  }
  return out;
}

/** The outcome in words: "Cancelled 3 runs." / "Retried 1 run; 2 failed: <id>: <why>; …". */
export function bulkSummary(action: BulkAction, o: BulkOutcome): string {
  const verb = action === "cancel" ? "Cancelled" : "Retried";
  const n = o.done.length;
  let s = `${verb} ${n} run${n === 1 ? "" : "s"}.`;
  if (o.failed.length > 0) s += ` ${o.failed.length} failed: ${o.failed.map((f) => `${f.id.slice(0, 8)}…: ${f.message}`).join("; ")}`;
  return s;
}
