// One run: its steps as a DAG coloured by status, updated live from the run's SSE stream; a step's
// details (attempts with their inputs and errors, logs, output, fan-out, children, waits, slots);
// cancel, retry and rerun.
import { useEffect, useMemo, useRef, useState } from "preact/hooks";
import { enc, get, getStep, post, watchRun, type Run as RunT, type RunEvent, type StepRun, type Workflow } from "../api";
import { href, navigate, type Route } from "../router";
import { earlierAttemptsNote, fmtBytes, isTerminal, statusColour, statusWord } from "../status";
import { place, timeline } from "../timeline";
import { ConfirmButton, ErrorBox, fmtDuration, fmtTime, Json, Progress, Status, usePoll, When } from "../ui";
import { nodeState } from "../graph";
import { Graph } from "./Graph";
import { MAX_LINES, type LogLine } from "../logs";
import { AttemptCards, inFlight, StepLogs } from "./StepData";

const MAX_EVENTS = 200;
/** Most events kept for the history download (the page shows the last MAX_EVENTS). */
const MAX_HISTORY = 10_000;

export function RunView({ route }: { route: Route }) {
  const id = route.parts[1] ?? "";
  const selected = route.params.get("step") ?? "";
  const { data: run, error, refresh } = usePoll(() => get<RunT>(`/v1/runs/${enc(id)}`), [id]);
  const wf = usePoll(
    () => (run ? get<Workflow>(`/v1/workflows/${enc(run.workflow)}?version=${run.version}`) : Promise.resolve(undefined)),
    [run?.workflow, run?.version],
  );
  // Live statuses from the events, over the ones of the last GetRun.
  const [live, setLive] = useState<Record<string, string>>({});
  const [runStatus, setRunStatus] = useState("");
  const [events, setEvents] = useState<RunEvent[]>([]);
  // Log lines received live (any step; the step panel reads the rest), at most MAX_LINES.
  const [liveLogs, setLiveLogs] = useState<LogLine[]>([]);
  const pendingLogs = useRef<LogLine[]>([]);
  const logFlush = useRef<number | undefined>(undefined);
  // Every event received, for the download (at most MAX_HISTORY, the oldest dropped first).
  const history = useRef<RunEvent[]>([]);
  const [view, setView] = useState<"graph" | "timeline">("graph");
  const [stream, setStream] = useState("connecting");
  const refetch = useRef<number | undefined>(undefined);
  // Bumped by cancel/retry/rerun: a stream that ended with the run is opened again.
  const [watchGen, setWatchGen] = useState(0);
  const afterAction = () => {
    void refresh();
    setWatchGen((g) => g + 1);
  };

  // The sequence of the last event received and the run it belongs to: a stream opened again
  // after an action resumes there, so the history is not replayed over the state it reached
  // (a replayed "running" would show a just-cancelled run running again).
  const lastSeq = useRef<{ run: string; seq?: string }>({ run: "" });

  useEffect(() => {
    if (lastSeq.current.run !== id) {
      lastSeq.current = { run: id };
      setLive({});
      setRunStatus("");
      setEvents([]);
      setLiveLogs([]);
      pendingLogs.current = [];
      history.current = [];
    }
    const stop = watchRun(
      id,
      (e) => {
        // A log line is live only (no sequence): it goes to the step panel, not the history.
        // Lines are handed on in batches (every 200 ms), so a chatty handler costs one render
        // per batch, not one per line.
        if (e.kind === "log") {
          if (e.log) pendingLogs.current.push(e.log);
          if (e.log && logFlush.current === undefined)
            logFlush.current = window.setTimeout(() => {
              logFlush.current = undefined;
              const batch = pendingLogs.current;
              pendingLogs.current = [];
              setLiveLogs((old) => {
                const all = old.concat(batch);
                return all.length > MAX_LINES ? all.slice(all.length - MAX_LINES) : all;
              });
            }, 200);
          return;
        }
        if (e.sequence) lastSeq.current.seq = e.sequence;
        setEvents((old) => [...old.slice(-(MAX_EVENTS - 1)), e]);
        if (!history.current.some((h) => h.sequence === e.sequence)) {
          history.current.push(e);
          if (history.current.length > MAX_HISTORY) history.current.shift();
        }
        if (e.kind === "step" && e.step_id) setLive((old) => ({ ...old, [e.step_id]: e.status }));
        if (e.kind === "run") {
          setRunStatus(e.status);
          // A retry or rerun starts the run again and resets steps without an event of theirs:
          // the statuses received before it are over; the fetched run (asked for below) says.
          if (e.detail === "retried" || e.detail === "rerun") setLive({});
        }
        // Details (attempts, outputs, progress) come from GetRun: fetch again, at most every 500 ms.
        if (refetch.current === undefined)
          refetch.current = window.setTimeout(() => {
            refetch.current = undefined;
            void refresh();
          }, 500);
      },
      (s, detail) => setStream(detail ? `${s}: ${detail}` : s),
      lastSeq.current.seq,
    );
    return () => {
      stop();
      if (refetch.current !== undefined) clearTimeout(refetch.current);
      refetch.current = undefined;
      if (logFlush.current !== undefined) clearTimeout(logFlush.current);
      logFlush.current = undefined;
    };
  }, [id, watchGen]);

  // While it runs, poll as well (fan-out progress and waits change without a status event).
  useEffect(() => {
    if (!run || isTerminal(run.status)) return;
    const t = setInterval(() => void refresh(), 2000);
    return () => clearInterval(t);
  }, [run?.id, run?.status]);

  // Each node's status and counts from one source (nodeState): an event newer than the fetched
  // run wins its status, without the fetched counts, until the next fetch agrees.
  const [statuses, notes] = useMemo(() => {
    const st: Record<string, string> = {};
    const nt: Record<string, string> = {};
    for (const s of run?.steps ?? []) {
      const n = nodeState(s, live[s.id]);
      st[s.id] = n.status;
      nt[s.id] = n.note;
    }
    return [st, nt];
  }, [run, live]);

  if (error && !run) return <ErrorBox error={error} />;
  if (!run) return <p>Loading run {id}…</p>;
  const status = statusWord(runStatus || run.status);
  const step = run.steps.find((s) => s.id === selected);
  const def = wf.data?.steps.find((s) => s.id === selected);
  const select = (s: string) => navigate(href(["runs", id], { step: s === selected ? "" : s }), true);

  return (
    <section>
      <h1>
        Run <span class="mono">{run.id}</span>
      </h1>
      <dl class="facts">
        <dt>Workflow</dt>
        <dd>
          <a href={href(["workflows", run.workflow], { version: String(run.version) })}>
            {run.workflow} v{run.version}
          </a>
        </dd>
        <dt>Status</dt>
        <dd data-testid="run-status">
          <Status s={status} />
        </dd>
        <dt>Created</dt>
        <dd>
          <When t={run.created_at} ago />
        </dd>
        <dt>Duration</dt>
        <dd>{fmtDuration(run.started_at ?? run.created_at, run.finished_at)}</dd>
        {run.parent_run_id && (
          <>
            <dt>Parent</dt>
            <dd>
              <a href={href(["runs", run.parent_run_id], { step: run.parent_step_id })}>{run.parent_run_id}</a> (step {run.parent_step_id})
            </dd>
          </>
        )}
        {run.child_run_ids.length > 0 && (
          <>
            <dt>Child runs</dt>
            <dd>
              <a href={href(["runs"], { parent: run.id })}>{run.child_run_ids.length} started by this run</a>
            </dd>
          </>
        )}
        {run.idempotency_key && (
          <>
            <dt>Idempotency key</dt>
            <dd class="mono">{run.idempotency_key}</dd>
          </>
        )}
        <dt>Live updates</dt>
        <dd data-testid="stream-state">{stream}</dd>
      </dl>
      {run.error && (
        <p class={status === "cancelled" ? "note" : "error"} role="status">
          {status === "cancelled" ? "Why: " : "Error: "}
          {run.error}
        </p>
      )}
      {run.waiting_for && <p class="note">Waiting for {run.waiting_for}</p>}
      {run.parked_items.length > 0 && (
        <details>
          <summary>{run.parked_items.length} parked items</summary>
          <ul>
            {run.parked_items.map((p) => (
              <li key={p}>{p}</li>
            ))}
          </ul>
        </details>
      )}
      <RunActions run={run} status={status} selected={selected} onDone={afterAction} />
      <div class="run-body">
        <div class="graph-wrap">
          <h2>Steps</h2>
          <div class="actions" role="group" aria-label="Steps as">
            <button type="button" aria-pressed={view === "graph"} onClick={() => setView("graph")}>
              Graph
            </button>
            <button type="button" aria-pressed={view === "timeline"} onClick={() => setView("timeline")}>
              Timeline
            </button>
            <button type="button" onClick={() => downloadHistory(run, history.current)}>
              Download history (JSON)
            </button>
          </div>
          {view === "timeline" ? (
            <Timeline run={run} selected={selected} onSelect={select} />
          ) : (
          <div class="graph-scroll" tabIndex={0} aria-label="Step graph (scrolls sideways when wider than the screen)">
          <Graph
            label={`Steps of run ${run.id}`}
            steps={run.steps.map((s) => ({ id: s.id, dependsOn: s.depends_on, sub: notes[s.id] }))}
            status={statuses}
            note={notes}
            selected={selected}
            onSelect={select}
          />
          </div>
          )}
          <p class="muted">Select a step for its attempts, output and waits.</p>
        </div>
        <aside class="detail" aria-label="Step details">
          {step ? (
            <StepDetail step={step} def={def} run={run} liveStatus={statuses[step.id]} liveLogs={liveLogs} reload={`${stream} ${status}`} />
          ) : (
            <RunIo run={run} />
          )}
        </aside>
      </div>
      <details>
        <summary>Events ({events.length})</summary>
        <ol class="events" data-testid="events">
          {events.map((e) => (
            <li key={e.sequence}>
              <span class="mono">{fmtTime(e.time)}</span> {e.kind} {e.step_id && <strong>{e.step_id}</strong>} {e.attempt > 0 && `#${e.attempt}`} {e.status}{" "}
              {e.detail && <span class="muted">{e.detail}</span>}
              {e.payload !== null && e.payload !== undefined && <code>{JSON.stringify(e.payload)}</code>}
            </li>
          ))}
        </ol>
      </details>
    </section>
  );
}

function RunIo({ run }: { run: RunT }) {
  return (
    <>
      <h2>Input</h2>
      <Json value={run.input} label="Run input" />
      <h2>Output</h2>
      <Json value={run.output} label="Run output" />
    </>
  );
}

function RunActions({ run, status, selected, onDone }: { run: RunT; status: string; selected: string; onDone: () => void }) {
  const [reason, setReason] = useState("");
  const [from, setFrom] = useState("");
  const [newInput, setNewInput] = useState("");
  const done = isTerminal(status);
  const fromStep = from || selected || run.steps[0]?.id || "";
  return (
    <div class="actions" role="group" aria-label="Run actions">
      <ConfirmButton
        label="Cancel run"
        danger
        disabled={done}
        question={`Cancel run ${run.id}? Its running steps are told to stop and nothing new starts.`}
        confirmLabel="Cancel the run"
        action={async () => {
          await post(`/v1/runs/${enc(run.id)}/cancel`, reason ? { reason } : {});
          onDone();
        }}
      >
        <label>
          Reason (optional)
          <input value={reason} onInput={(e) => setReason(e.currentTarget.value)} />
        </label>
      </ConfirmButton>
      <ConfirmButton
        label="Retry run"
        disabled={!done || status === "succeeded"}
        question={`Retry the failed, cancelled or timed-out steps of run ${run.id}?`}
        action={async () => {
          await post(`/v1/runs/${enc(run.id)}/retry`, {});
          onDone();
        }}
      />
      <ConfirmButton
        label="Rerun from a step"
        disabled={!done}
        question={`Run ${run.id} again from a step: it and every step after it run again.`}
        confirmLabel="Rerun"
        action={async () => {
          let input: unknown;
          if (newInput.trim()) {
            try {
              input = JSON.parse(newInput);
            } catch (e) {
              throw new Error(`New input: not valid JSON: ${(e as Error).message}`);
            }
          }
          await post(`/v1/runs/${enc(run.id)}/rerun`, input === undefined ? { from_step: fromStep } : { from_step: fromStep, input });
          setNewInput("");
          onDone();
        }}
      >
        <label>
          From step
          <select value={fromStep} onChange={(e) => setFrom(e.currentTarget.value)}>
            {run.steps.map((s) => (
              <option key={s.id} value={s.id}>
                {s.id}
              </option>
            ))}
          </select>
        </label>
        <label>
          New input (JSON; empty: the run's input)
          <textarea class="mono" rows={5} value={newInput} placeholder={JSON.stringify(run.input)} onInput={(e) => setNewInput(e.currentTarget.value)} />
        </label>
      </ConfirmButton>
    </div>
  );
}

function StepDetail({
  step,
  def,
  run,
  liveStatus,
  liveLogs,
  reload,
}: {
  step: StepRun;
  def?: Workflow["steps"][number];
  run: RunT;
  liveStatus?: string;
  liveLogs: LogLine[];
  reload: string;
}) {
  const tasks = step.kind === "human" && statusWord(liveStatus ?? step.status) === "waiting";
  return (
    <div data-testid="step-detail">
      <h2>
        Step {step.id} <Status s={liveStatus ?? step.status} />
      </h2>
      <dl class="facts">
        <dt>Kind</dt>
        <dd>
          {step.kind}
          {step.handler && ` (handler ${step.handler})`}
        </dd>
        <dt>Attempt</dt>
        <dd>
          {step.attempt - step.attempt_base} of {step.max_attempts}
          {step.attempt_base > 0 && ` (${step.attempt} in all)`}
        </dd>
        {step.worker && (
          <>
            <dt>Worker</dt>
            <dd>{step.worker}</dd>
          </>
        )}
        <dt>Dispatched</dt>
        <dd>{fmtTime(step.dispatched_at)}</dd>
        <dt>Started</dt>
        <dd>{fmtTime(step.started_at)}</dd>
        <dt>Finished</dt>
        <dd>{fmtTime(step.finished_at)}</dd>
        {step.wake_at && (
          <>
            <dt>Wakes</dt>
            <dd>{fmtTime(step.wake_at)}</dd>
          </>
        )}
        {step.completed_by && (
          <>
            <dt>Completed by</dt>
            <dd>{step.completed_by}</dd>
          </>
        )}
        {step.depends_on.length > 0 && (
          <>
            <dt>Depends on</dt>
            <dd>{step.depends_on.join(", ")}</dd>
          </>
        )}
        {def?.when && (
          <>
            <dt>When</dt>
            <dd class="mono">{def.when}</dd>
          </>
        )}
      </dl>
      {step.waiting_for && (
        <p class="note" data-testid="waiting-for">
          Waiting for {step.waiting_for}
        </p>
      )}
      {tasks && (
        <p>
          <a href={href(["tasks", run.id, step.id])}>Open the task screen</a>
        </p>
      )}
      {step.error && <p class="error">Error: {step.error}</p>}
      {step.items && (
        <>
          <h3>Fan-out</h3>
          <Progress label={`Elements of ${step.id}`} done={step.items.succeeded} failed={step.items.failed} total={step.items.total} />
          <p data-testid="fanout">
            {step.items.succeeded} succeeded, {step.items.failed} failed, {step.items.in_flight} in flight, {step.items.total} in all
          </p>
        </>
      )}
      {step.emitted && (
        <>
          <h3>Emitted runs</h3>
          <Progress label={`Runs emitted by ${step.id}`} done={step.emitted.succeeded} failed={step.emitted.failed} total={step.emitted.total} />
          <p>
            {step.emitted.pending} pending, {step.emitted.running} running, {step.emitted.succeeded} succeeded, {step.emitted.failed} failed ·{" "}
            <a href={href(["runs"], { parent: run.id })}>list them</a>
          </p>
        </>
      )}
      {step.child_run_id && (
        <p>
          Child run: <a href={href(["runs", step.child_run_id])}>{step.child_run_id}</a>
        </p>
      )}
      {step.slot && (
        <>
          <h3>Concurrency slot</h3>
          <p>
            Pool <span class="mono">{step.slot}</span>, held by:
          </p>
          <ul>
            {step.slot_holders.length === 0 && <li class="muted">nobody</li>}
            {step.slot_holders.map((h) => (
              <li key={h} class="mono">
                {h.includes("/") ? <a href={href(["runs", h.split("/")[0]])}>{h}</a> : h}
              </li>
            ))}
          </ul>
        </>
      )}
      <h3>Attempts</h3>
      {earlierAttemptsNote(step.earlier_attempts) && <p class="muted">{earlierAttemptsNote(step.earlier_attempts)}</p>}
      {step.attempts.length === 0 ? (
        <p class="muted">{step.items ? "A fan-out's attempts are its elements' (see Fan-out above)." : "No finished attempt yet."}</p>
      ) : (
        <div class="table-scroll">
        <table class="attempts">
          <thead>
            <tr>
              <th scope="col">#</th>
              <th scope="col">Outcome</th>
              <th scope="col">Worker</th>
              <th scope="col">Started</th>
              <th scope="col">Took</th>
              <th scope="col">Error</th>
            </tr>
          </thead>
          <tbody>
            {step.attempts.map((a) => (
              <tr key={a.number}>
                <td>{a.number}</td>
                <td>
                  <Status s={a.outcome} />
                </td>
                <td>{a.worker || "–"}</td>
                <td>{fmtTime(a.started_at)}</td>
                <td>{fmtDuration(a.started_at, a.finished_at)}</td>
                <td class="wrap">{a.error}</td>
              </tr>
            ))}
          </tbody>
        </table>
        </div>
      )}
      {(step.attempts.length > 0 || inFlight(step, liveStatus ?? step.status)) && (
        <AttemptCards stepId={step.id} attempts={step.attempts} running={inFlight(step, liveStatus ?? step.status)} />
      )}
      <h3>Logs</h3>
      <StepLogs runId={run.id} stepId={step.id} live={liveLogs} reload={reload} />
      <h3>Input template</h3>
      {def?.input_template !== undefined && def?.input_template !== null ? (
        <details>
          <summary>The step's <code>input:</code> template (each attempt's resolved input is above)</summary>
          <Json value={def.input_template} label="Input template" />
        </details>
      ) : def?.for_each ? (
        <p>
          One element of <code>{def.for_each}</code> per call.
        </p>
      ) : (
        <p class="muted">None: the step gets the run input.</p>
      )}
      <h3>Output</h3>
      {step.output_omitted_bytes > 0 ? (
        <OmittedOutput runId={run.id} stepId={step.id} bytes={step.output_omitted_bytes} />
      ) : (
        <Json value={step.output} label={`Output of ${step.id}`} />
      )}
    </div>
  );
}

// An output the run's answer left out (over its 3 MiB budget), read on its own.
function OmittedOutput({ runId, stepId, bytes }: { runId: string; stepId: string; bytes: number }) {
  const { data: step, error } = usePoll(() => getStep(runId, stepId), [runId, stepId, bytes]);
  return (
    <>
      <p class="muted">
        {fmtBytes(bytes)}: too large for the run's answer, read on its own{step || error ? "." : "…"}
      </p>
      <ErrorBox error={error} />
      {step && <Json value={step.output} label={`Output of ${stepId}`} />}
    </>
  );
}

/** Saves the run (as GetRun answers it) and the events received from its stream as one JSON file,
 * `run-<id>.json`. */
function downloadHistory(run: RunT, events: RunEvent[]) {
  const doc = { run, events, events_kept: events.length, events_limit: MAX_HISTORY, saved_at: new Date().toISOString() };
  const url = URL.createObjectURL(new Blob([JSON.stringify(doc, null, 2)], { type: "application/json" }));
  const a = document.createElement("a");
  a.href = url;
  a.download = `run-${run.id}.json`;
  document.body.appendChild(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

/** The run's attempts as a waterfall: a row per step, a bar per attempt, on the run's span. */
function Timeline({ run, selected, onSelect }: { run: RunT; selected: string; onSelect: (s: string) => void }) {
  const t = timeline(run, Date.now());
  return (
    <div class="timeline" role="table" aria-label={`Timeline of run ${run.id}`} data-testid="timeline">
      <div class="tl-scale" role="row">
        <span role="columnheader">Step</span>
        <span role="columnheader" class="tl-ends">
          <span>{fmtTime(new Date(t.from).toISOString())}</span>
          <span>{fmtDuration(new Date(t.from).toISOString(), new Date(t.to).toISOString())}</span>
        </span>
      </div>
      {t.rows.map((r) => (
        <div key={r.step} role="row" class={`tl-row${r.step === selected ? " selected" : ""}`}>
          <button type="button" role="rowheader" class="tl-step" onClick={() => onSelect(r.step)} aria-pressed={r.step === selected}>
            {r.step}
          </button>
          <span role="cell" class="tl-track">
            {r.bars.map((b) => {
              const p = place(t, b);
              const c = statusColour(b.status);
              const when = `${fmtTime(new Date(b.start).toISOString())}, ${fmtDuration(new Date(b.start).toISOString(), b.open ? null : new Date(b.end).toISOString())}`;
              return (
                <span
                  key={`${b.attempt}-${b.start}`}
                  class={`tl-bar${b.open ? " open" : ""}`}
                  data-status={b.status}
                  style={{ left: `${p.left}%`, width: `${p.width}%`, background: c.fill, borderColor: c.border }}
                  title={`${r.step}${b.attempt ? ` attempt ${b.attempt}` : ""}: ${b.status}, ${when}${b.error ? ` — ${b.error}` : ""}`}
                >
                  {b.attempt ? `#${b.attempt}` : ""}
                </span>
              );
            })}
            {r.bars.length === 0 && <span class="muted tl-none">not started</span>}
          </span>
        </div>
      ))}
    </div>
  );
}
