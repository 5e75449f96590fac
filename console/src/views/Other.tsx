// Schedules with their tick ledger, workers and queues, and workflow definitions with their graph.
import { enc, get, listWorkflows, post, query, type QueueInfo, type Schedule, type ScheduleTick, type WorkerInfo, type Workflow } from "../api";
import { href, type Route } from "../router";
import { ConfirmButton, ErrorBox, fmtTime, Json, usePoll } from "../ui";
import { Graph } from "./Graph";

export function Schedules({ route }: { route: Route }) {
  const id = route.parts[1];
  const { data, error, refresh } = usePoll(() => get<{ schedules: Schedule[] }>("/v1/schedules"), [], 5000);
  return (
    <section>
      <h1>Schedules</h1>
      <ErrorBox error={error} />
      <table>
        <thead>
          <tr>
            <th scope="col">Schedule</th>
            <th scope="col">Workflow</th>
            <th scope="col">Cron</th>
            <th scope="col">State</th>
            <th scope="col">Next tick</th>
            <th scope="col">Last run</th>
            <th scope="col">Source</th>
          </tr>
        </thead>
        <tbody>
          {(data?.schedules ?? []).map((s) => (
            <tr key={s.id} class={s.id === id ? "current" : ""}>
              <td>
                <a href={href(["schedules", s.id])} aria-current={s.id === id ? "page" : undefined}>
                  {s.id}
                </a>
              </td>
              <td>
                {s.workflow}
                {s.workflow_version ? ` v${s.workflow_version}` : ""}
              </td>
              <td class="mono">
                {s.cron} {s.timezone || "UTC"}
              </td>
              <td>{s.paused ? "paused" : "active"}</td>
              <td>{fmtTime(s.next_tick_at)}</td>
              <td>{s.last_run_id ? <a href={href(["runs", s.last_run_id])}>{s.last_run_id.slice(0, 8)}…</a> : "–"}</td>
              <td>{s.source}</td>
            </tr>
          ))}
        </tbody>
      </table>
      {data && data.schedules.length === 0 && <p class="muted">No schedules.</p>}
      {id && <ScheduleTicks id={id} schedule={data?.schedules.find((s) => s.id === id)} onChange={refresh} />}
    </section>
  );
}

function ScheduleTicks({ id, schedule, onChange }: { id: string; schedule?: Schedule; onChange: () => void }) {
  const { data, error, refresh } = usePoll(() => get<{ ticks: ScheduleTick[] }>(`/v1/schedules/${enc(id)}/ticks${query({ limit: 100 })}`), [id], 5000);
  const act = (verb: string) => async () => {
    await post(`/v1/schedules/${enc(id)}/${verb}`, {});
    onChange();
    void refresh();
  };
  return (
    <div>
      <h2>Ticks of {id}</h2>
      {schedule && (
        <div class="actions" role="group" aria-label="Schedule actions">
          <ConfirmButton label="Trigger now" question={`Fire ${id} now, as a tick at the current time?`} action={act("trigger")} />
          {schedule.paused ? (
            <ConfirmButton label="Resume" question={`Resume ${id}? Ticks missed while paused are not caught up.`} action={act("resume")} />
          ) : (
            <ConfirmButton label="Pause" question={`Pause ${id}? It starts nothing until resumed.`} action={act("pause")} />
          )}
        </div>
      )}
      <ErrorBox error={error} />
      <table>
        <thead>
          <tr>
            <th scope="col">Tick</th>
            <th scope="col">Outcome</th>
            <th scope="col">Run</th>
            <th scope="col">Reason</th>
            <th scope="col">Recorded</th>
          </tr>
        </thead>
        <tbody>
          {(data?.ticks ?? []).map((t) => (
            <tr key={`${t.tick_at}-${t.recorded_at}`}>
              <td>{fmtTime(t.tick_at)}</td>
              <td>{t.outcome}</td>
              <td>{t.run_id ? <a href={href(["runs", t.run_id])}>{t.run_id.slice(0, 8)}…</a> : "–"}</td>
              <td>{t.reason}</td>
              <td>{fmtTime(t.recorded_at)}</td>
            </tr>
          ))}
        </tbody>
      </table>
      {data && data.ticks.length === 0 && <p class="muted">No ticks yet.</p>}
    </div>
  );
}

export function Workers() {
  const w = usePoll(() => get<{ workers: WorkerInfo[] }>("/v1/workers"), [], 3000);
  const q = usePoll(() => get<{ queues: QueueInfo[] }>("/v1/queues"), [], 3000);
  return (
    <section>
      <h1>Workers</h1>
      <ErrorBox error={w.error} />
      <table>
        <thead>
          <tr>
            <th scope="col">Worker</th>
            <th scope="col">State</th>
            <th scope="col">Host / pid</th>
            <th scope="col">Handlers</th>
            <th scope="col">In flight / concurrency</th>
            <th scope="col">Last seen</th>
            <th scope="col">Version</th>
          </tr>
        </thead>
        <tbody>
          {(w.data?.workers ?? []).map((x) => (
            <tr key={x.worker_id}>
              <td class="mono">{x.worker_id}</td>
              <td>{x.lost ? <strong class="bad-text">lost</strong> : x.state}</td>
              <td>
                {x.host} / {x.pid}
              </td>
              <td>{x.handlers.join(", ")}</td>
              <td>
                {x.in_flight} / {x.concurrency}
              </td>
              <td>{fmtTime(x.last_seen)}</td>
              <td>{x.version}</td>
            </tr>
          ))}
        </tbody>
      </table>
      {w.data && w.data.workers.length === 0 && <p class="muted">No workers registered.</p>}
      <h2>Queues</h2>
      <ErrorBox error={q.error} />
      <table>
        <thead>
          <tr>
            <th scope="col">Handler</th>
            <th scope="col">Queue</th>
            <th scope="col">Ready</th>
            <th scope="col">Waiting to start</th>
            <th scope="col">Running</th>
            <th scope="col">Consumers</th>
            <th scope="col">Live workers</th>
            <th scope="col">Oldest waiting since</th>
          </tr>
        </thead>
        <tbody>
          {(q.data?.queues ?? []).map((x) => (
            <tr key={x.queue}>
              <td>{x.handler}</td>
              <td class="mono">
                {x.queue}
                {!x.exists && " (missing)"}
              </td>
              <td>{x.ready}</td>
              <td>{x.waiting}</td>
              <td>{x.unacknowledged}</td>
              <td>{x.consumers === 0 ? <strong class="bad-text">0</strong> : x.consumers}</td>
              <td>{x.live_workers}</td>
              <td>{fmtTime(x.oldest_waiting_since)}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </section>
  );
}

export function Workflows({ route }: { route: Route }) {
  const name = route.parts[1];
  const list = usePoll(() => listWorkflows<Workflow>(), []);
  return (
    <section>
      <h1>Workflows</h1>
      <ErrorBox error={list.error} />
      <ul class="wf-list">
        {(list.data?.workflows ?? []).map((w) => (
          <li key={w.name}>
            <a href={href(["workflows", w.name])} aria-current={w.name === name ? "page" : undefined}>
              {w.name}
            </a>{" "}
            v{w.version} <span class="muted">{w.description}</span>
          </li>
        ))}
      </ul>
      {name && <WorkflowDetail name={name} version={route.params.get("version") ?? ""} />}
    </section>
  );
}

function WorkflowDetail({ name, version }: { name: string; version: string }) {
  const { data: w, error } = usePoll(() => get<Workflow>(`/v1/workflows/${enc(name)}${query({ version })}`), [name, version]);
  if (error) return <ErrorBox error={error} />;
  if (!w) return <p>Loading {name}…</p>;
  return (
    <div>
      <h2>
        {w.name} v{w.version}
      </h2>
      <p>{w.description}</p>
      <p>
        Versions:{" "}
        {w.versions.map((v) => (
          <a key={v} href={href(["workflows", w.name], { version: String(v) })} aria-current={v === w.version ? "page" : undefined} class="ver">
            v{v}
          </a>
        ))}{" "}
        · <a href={href(["runs"], { workflow: w.name })}>its runs</a> · registered {fmtTime(w.registered_at)}
      </p>
      <Graph
        label={`Steps of workflow ${w.name}`}
        steps={w.steps.map((s) => ({ id: s.id, dependsOn: s.depends_on, sub: s.kind === "task" ? s.handler : s.kind }))}
        onSelect={(s) => document.getElementById(`wf-step-${s}`)?.focus()}
      />
      <table>
        <thead>
          <tr>
            <th scope="col">Step</th>
            <th scope="col">Kind</th>
            <th scope="col">Handler / target</th>
            <th scope="col">Depends on</th>
            <th scope="col">When</th>
            <th scope="col">Fan-out</th>
          </tr>
        </thead>
        <tbody>
          {w.steps.map((s) => (
            <tr key={s.id} id={`wf-step-${s.id}`} tabIndex={-1}>
              <td>{s.id}</td>
              <td>{s.kind}</td>
              <td>{s.handler || s.workflow || s.human?.title || s.wait_for_event?.event || ""}</td>
              <td>{s.depends_on.join(", ")}</td>
              <td class="mono">{s.when}</td>
              <td class="mono">{s.for_each && `${s.for_each} (${s.max_parallel || "∞"} at once)`}</td>
            </tr>
          ))}
        </tbody>
      </table>
      <details>
        <summary>Input schema</summary>
        <Json value={w.input_schema} label="Input schema" />
      </details>
      <details>
        <summary>Definition</summary>
        <Json value={w.definition} label="Definition" />
      </details>
      <p>
        Start a run with <code>POST /v1/runs</code> or <code>baton run submit {w.name}</code>.
      </p>
    </div>
  );
}
