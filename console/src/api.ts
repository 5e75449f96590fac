// The HTTP JSON API client (docs/http-api.md): the bearer token (sessionStorage), JSON errors as
// ApiError, and a run's events read as Server-Sent Events with fetch (so the token travels in the
// Authorization header, never in a URL).
import type { LogLine } from "./logs";
import { SseParser } from "./sse";

const TOKEN_KEY = "baton.token";

export function getToken(): string {
  try {
    return sessionStorage.getItem(TOKEN_KEY) ?? "";
  } catch {
    return "";
  }
}

export function setToken(t: string): void {
  if (t) sessionStorage.setItem(TOKEN_KEY, t);
  else sessionStorage.removeItem(TOKEN_KEY);
}

/** An error answer: HTTP status, the gRPC code name, message and the field at fault. */
export class ApiError extends Error {
  constructor(
    public status: number,
    public code: string,
    message: string,
    public field?: string,
  ) {
    super(message);
  }
}

/** Listeners told when the API answers 401 (the shell then asks for a token). */
const unauthorized = new Set<() => void>();
export function onUnauthorized(f: () => void): () => void {
  unauthorized.add(f);
  return () => unauthorized.delete(f);
}

function headers(extra: Record<string, string> = {}): Record<string, string> {
  const h: Record<string, string> = { Accept: "application/json", ...extra };
  const t = getToken();
  if (t) h.Authorization = `Bearer ${t}`;
  return h;
}

async function toError(res: Response): Promise<ApiError> {
  let body: { code?: string; message?: string; field?: string } = {};
  try {
    body = await res.json();
  } catch {
    /* not JSON: keep the status text */
  }
  if (res.status === 401) unauthorized.forEach((f) => f());
  return new ApiError(res.status, body.code ?? String(res.status), body.message ?? res.statusText, body.field);
}

export async function api<T>(method: string, path: string, body?: unknown): Promise<T> {
  const res = await fetch(path, {
    method,
    headers: headers(body === undefined ? {} : { "Content-Type": "application/json" }),
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (!res.ok) throw await toError(res);
  return (await res.json()) as T;
}

export const get = <T>(path: string) => api<T>("GET", path);
export const post = <T>(path: string, body: unknown = {}) => api<T>("POST", path, body);
export const del = <T>(path: string) => api<T>("DELETE", path);

/** Query string from the non-empty values. */
export function query(params: Record<string, string | number | undefined>): string {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== "") q.set(k, String(v));
  const s = q.toString();
  return s ? `?${s}` : "";
}

export const enc = encodeURIComponent;

/** One step of a run with its whole output (`GET /v1/runs/{id}?step_id=`), for an output the
 * run's answer left out; undefined when the run has no such step any more. */
export async function getStep(runId: string, stepId: string): Promise<StepRun | undefined> {
  const run = await get<{ steps: StepRun[] }>(`/v1/runs/${enc(runId)}${query({ step_id: stepId })}`);
  return run.steps.find((s) => s.id === stepId);
}

/** Every registered workflow (latest versions, in name order), following `next_page_token`. */
export async function listWorkflows<W>(): Promise<{ workflows: W[] }> {
  const workflows: W[] = [];
  let token = "";
  // At most 100 pages of up to 1000: a coordinator that repeats its token cannot loop the console.
  for (let page = 0; page < 100; page++) {
    const r = await get<{ workflows: W[]; next_page_token?: string }>(`/v1/workflows${query({ limit: 1000, page_token: token })}`);
    workflows.push(...r.workflows);
    if (!r.next_page_token || r.next_page_token === token) break;
    token = r.next_page_token;
  }
  return { workflows };
}

// ---- shapes (docs/http-api.md) ------------------------------------------------------------------

export type Time = string | null;

export interface Attempt {
  number: number;
  outcome: string;
  error: string;
  worker: string;
  started_at: Time;
  finished_at: Time;
  // The input the attempt ran with (the rendered `input:` template); null when no worker started
  // it, or when left out of the answer (then `input_omitted_bytes` says its size).
  input: unknown;
  input_omitted_bytes: number;
  // For a failed attempt: the error's type and details (a traceback or stack, at most 16 KiB).
  error_type: string;
  error_details: string;
  // Log lines kept for the attempt (`GET /v1/runs/{id}/logs`).
  log_lines: number;
}

export interface StepRun {
  id: string;
  handler: string;
  kind: string;
  status: string;
  attempt: number;
  max_attempts: number;
  attempt_base: number;
  // `null` when the answer left it out (see `output_omitted_bytes`).
  output: unknown;
  // The size in bytes of an output left out of the run's answer (over its 3 MiB budget), 0 when
  // `output` is whole: `getStep` reads it.
  output_omitted_bytes: number;
  // While an attempt is in flight (not yet in `attempts`): the input it runs with; null otherwise
  // or when left out of the answer (then `input_omitted_bytes` says its size).
  input: unknown;
  input_omitted_bytes: number;
  error: string;
  dispatched_at: Time;
  started_at: Time;
  finished_at: Time;
  wake_at: Time;
  depends_on: string[];
  attempts: Attempt[];
  // Finished attempts older than `attempts` (the last 20), only counted.
  earlier_attempts: number;
  worker: string;
  child_run_id: string;
  items: { total: number; succeeded: number; failed: number; in_flight: number } | null;
  emitted: { total: number; pending: number; running: number; succeeded: number; failed: number } | null;
  waiting_for: string;
  completed_by: string;
  slot: string;
  slot_holders: string[];
}

export interface Run {
  id: string;
  workflow: string;
  version: number;
  status: string;
  input: unknown;
  output: unknown;
  error: string;
  idempotency_key: string;
  created_at: Time;
  started_at: Time;
  finished_at: Time;
  steps: StepRun[];
  parent_run_id: string;
  parent_step_id: string;
  child_run_ids: string[];
  waiting_for: string;
  parked_items: string[];
}

export interface StepDefinition {
  id: string;
  handler: string;
  kind: string;
  depends_on: string[];
  when: string;
  for_each: string;
  max_parallel: number;
  timeout_ms: number;
  workflow: string;
  human: { title: string; description: string; assignees: string[]; form_schema: unknown } | null;
  wait_for_event: { event: string; key: string; timeout_ms: number; on_timeout: string } | null;
  emit: { workflow: string; items: string; key: string; wait: boolean; max_in_flight: number } | null;
  retry: { max_attempts: number } | null;
  input_template: unknown;
}

export interface Workflow {
  name: string;
  version: number;
  description: string;
  steps: StepDefinition[];
  edges: { from: string; to: string }[];
  input_schema: unknown;
  definition: unknown;
  registered_at: Time;
  versions: number[];
  max_concurrent_runs: number;
  on_event: string;
}

export interface HumanTask {
  run_id: string;
  step_id: string;
  workflow: string;
  workflow_version: number;
  title: string;
  description: string;
  assignees: string[];
  form_schema: unknown;
  status: string;
  created_at: Time;
  completed_by: string;
  completed_at: Time;
  data: unknown;
}

export interface RunEvent {
  run_id: string;
  sequence: string;
  time: Time;
  kind: string;
  step_id: string;
  attempt: number;
  status: string;
  detail: string;
  payload: unknown;
  // For kind "log": the line a handler logged (live only, without a `sequence`).
  log?: LogLine;
}

export interface Schedule {
  id: string;
  workflow: string;
  workflow_version: number;
  cron: string;
  timezone: string;
  input: unknown;
  overlap: string;
  catchup_window_ms: number;
  paused: boolean;
  source: string;
  created_at: Time;
  next_tick_at: Time;
  last_run_id: string;
}

export interface ScheduleTick {
  schedule_id: string;
  tick_at: Time;
  outcome: string;
  run_id: string;
  reason: string;
  recorded_at: Time;
}

export interface WorkerInfo {
  worker_id: string;
  host: string;
  pid: number;
  version: string;
  namespace: string;
  handlers: string[];
  concurrency: number;
  in_flight: number;
  started_at: Time;
  last_seen: Time;
  state: string;
  lost: boolean;
}

export interface QueueInfo {
  handler: string;
  queue: string;
  ready: number;
  consumers: number;
  exists: boolean;
  unacknowledged: number;
  oldest_waiting_since: Time;
  waiting: number;
  live_workers: number;
}

/** Follows a run's events (history, then live) until the stream ends, `stop` is called, or it
 * fails; reconnects after a dropped connection with Last-Event-ID. `after` (an event `sequence`)
 * starts after that event instead of from the run's first: a caller that opens the stream again
 * gets only what it has not seen, not the history replayed over newer state. Returns `stop`. */
export function watchRun(
  runId: string,
  onEvent: (e: RunEvent) => void,
  onState: (s: "live" | "ended" | "reconnecting" | "error", detail?: string) => void,
  after?: string,
): () => void {
  const ctl = new AbortController();
  let stopped = false;
  let lastId: string | undefined = after;
  const loop = async () => {
    let failures = 0;
    while (!stopped) {
      let ended = false;
      try {
        const h = headers({ Accept: "text/event-stream" });
        if (lastId) h["Last-Event-ID"] = lastId;
        const res = await fetch(`/v1/runs/${enc(runId)}/events`, { headers: h, signal: ctl.signal });
        if (!res.ok || !res.body) {
          const e = await toError(res);
          onState("error", e.message);
          if (res.status < 500) return;
          throw e;
        }
        onState("live");
        failures = 0;
        const parser = new SseParser((m) => {
          if (m.event === "end") {
            ended = true;
            return;
          }
          try {
            onEvent(JSON.parse(m.data) as RunEvent);
          } catch {
            /* a malformed event is skipped */
          }
        });
        const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          parser.push(value);
          if (parser.lastId) lastId = parser.lastId;
        }
        if (ended) {
          onState("ended");
          return;
        }
      } catch (e) {
        if (stopped) return;
        failures++;
        onState("reconnecting", (e as Error).message);
      }
      if (stopped) return;
      await new Promise((r) => setTimeout(r, Math.min(10_000, 500 * 2 ** Math.min(failures, 5))));
    }
  };
  void loop();
  return () => {
    stopped = true;
    ctl.abort();
  };
}
