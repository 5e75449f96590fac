// Workers (live or stopped) and queues, and publishing an event.
import type { ComponentChildren } from "preact";
import { useState } from "preact/hooks";
import { ApiError, get, post, type QueueInfo, type WorkerInfo } from "../api";
import { href, navigate, type Route } from "../router";
import { ErrorBox, Json, usePoll, When } from "../ui";

/** Whether a worker is live: it has not stopped and its heartbeats are not overdue. */
export function workerIsLive(w: Pick<WorkerInfo, "lost" | "state">): boolean {
  return !w.lost && w.state !== "stopped";
}

export function Workers({ route }: { route: Route }) {
  const show = route.params.get("show") ?? "live";
  const w = usePoll(() => get<{ workers: WorkerInfo[] }>("/v1/workers"), [], 3000);
  const q = usePoll(() => get<{ queues: QueueInfo[] }>("/v1/queues"), [], 3000);
  const shown = (w.data?.workers ?? []).filter((x) => show === "all" || (show === "live") === workerIsLive(x));
  return (
    <section>
      <h1>Workers</h1>
      <form class="filters" onSubmit={(e) => e.preventDefault()}>
        <label>
          Show
          <select value={show} onChange={(e) => navigate(href(["workers"], { show: e.currentTarget.value }), true)}>
            <option value="live">live workers</option>
            <option value="stopped">stopped or lost workers</option>
            <option value="all">every worker</option>
          </select>
        </label>
      </form>
      <ErrorBox error={w.error} />
      <p class="muted" data-testid="worker-count">
        {w.data ? `${shown.length} of ${w.data.workers.length} workers` : "Loading…"}
      </p>
      <div class="table-scroll">
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
          {shown.map((x) => (
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
              <td>
                <When t={x.last_seen} ago />
              </td>
              <td>{x.version}</td>
            </tr>
          ))}
        </tbody>
      </table>
      </div>
      {w.data && shown.length === 0 && <p class="muted">{w.data.workers.length === 0 ? "No workers registered." : "No workers match."}</p>}
      <h2>Queues</h2>
      <ErrorBox error={q.error} />
      <div class="table-scroll">
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
              <td>
                <When t={x.oldest_waiting_since} ago />
              </td>
            </tr>
          ))}
        </tbody>
      </table>
      </div>
    </section>
  );
}

interface PublishAnswer {
  delivered: { run_id: string; step_id: string }[];
  buffered: boolean;
  started_run_ids: string[];
  trigger_errors: { workflow: string; version: number; error: string }[];
}

/** Publishes an event: name, key and JSON payload; shows which waiting steps got it, whether it was
 * buffered, and the runs it started. */
export function Events() {
  const [name, setName] = useState("");
  const [key, setKey] = useState("");
  const [payload, setPayload] = useState("{}");
  const [errors, setErrors] = useState<Record<string, string>>({});
  const [answer, setAnswer] = useState<PublishAnswer | undefined>(undefined);
  const [busy, setBusy] = useState(false);
  const submit = async (e: Event) => {
    e.preventDefault();
    setAnswer(undefined);
    const found: Record<string, string> = {};
    if (!name.trim()) found.name = "Required: the event's name.";
    let body: unknown;
    try {
      body = payload.trim() ? JSON.parse(payload) : undefined;
    } catch (err) {
      found.payload = `Not valid JSON: ${(err as Error).message}`;
    }
    setErrors(found);
    if (Object.keys(found).length > 0) return;
    setBusy(true);
    try {
      setAnswer(await post<PublishAnswer>("/v1/events", { name: name.trim(), ...(key ? { key } : {}), ...(body === undefined ? {} : { payload: body }) }));
    } catch (err) {
      const f = err instanceof ApiError ? (err.field ?? "").split("/")[0] : "";
      setErrors({ [["name", "key", "payload"].includes(f) ? f : ""]: err instanceof ApiError ? `${err.code}: ${err.message}` : String(err) });
    } finally {
      setBusy(false);
    }
  };
  const field = (id: string, label: string, control: ComponentChildren, hint?: string) => (
    <div class={`field${errors[id] ? " invalid" : ""}`} data-field={id}>
      <label for={`ev-${id}`}>{label}</label>
      {control}
      {hint && <p class="hint">{hint}</p>}
      {errors[id] && (
        <p class="field-error" role="alert">
          {errors[id]}
        </p>
      )}
    </div>
  );
  return (
    <section>
      <h1>Publish an event</h1>
      <p class="muted">Steps waiting for the event (name and key) receive it; with none waiting it is buffered for a while; workflows started by the event start a run.</p>
      <form class="task-form" onSubmit={submit} noValidate aria-label="Publish an event">
        {errors[""] && (
          <p class="error" role="alert">
            {errors[""]}
          </p>
        )}
        {field("name", "Name", <input id="ev-name" value={name} onInput={(e) => setName(e.currentTarget.value)} />)}
        {field("key", "Key (optional)", <input id="ev-key" value={key} onInput={(e) => setKey(e.currentTarget.value)} />, "Only steps waiting for this key receive it.")}
        {field("payload", "Payload (JSON)", <textarea id="ev-payload" class="mono" rows={6} value={payload} onInput={(e) => setPayload(e.currentTarget.value)} />)}
        <button type="submit" class="primary" disabled={busy}>
          {busy ? "Publishing…" : "Publish"}
        </button>
      </form>
      {answer && (
        <div role="status" data-testid="publish-answer">
          <h2>Published</h2>
          <p>
            {answer.delivered.length === 0
              ? answer.buffered
                ? "No step was waiting: the event is buffered for the next step that waits for it."
                : "No step was waiting."
              : `Delivered to ${answer.delivered.length} waiting step${answer.delivered.length === 1 ? "" : "s"}:`}
          </p>
          <ul>
            {answer.delivered.map((d) => (
              <li key={`${d.run_id}/${d.step_id}`}>
                <a href={href(["runs", d.run_id], { step: d.step_id })}>
                  {d.run_id.slice(0, 8)}… step {d.step_id}
                </a>
              </li>
            ))}
          </ul>
          {answer.started_run_ids.length > 0 && (
            <p>
              Started {answer.started_run_ids.length} run{answer.started_run_ids.length === 1 ? "" : "s"}:{" "}
              {answer.started_run_ids.map((id) => (
                <a key={id} class="mono" href={href(["runs", id])}>
                  {id}{" "}
                </a>
              ))}
            </p>
          )}
          {answer.trigger_errors.length > 0 && <Json value={answer.trigger_errors} label="Workflows the event could not start" />}
        </div>
      )}
    </section>
  );
}
