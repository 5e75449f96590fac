// Schedules: the list, one schedule's tick ledger, and the operations: create, edit (an API
// schedule is replaced under its id), pause, resume, trigger and delete. A definition's schedules
// are changed by registering a new version of the definition, so they are only paused or triggered.
import type { ComponentChildren } from "preact";
import { useState } from "preact/hooks";
import { ApiError, del, enc, get, listWorkflows, post, query, type Schedule, type ScheduleTick, type Workflow } from "../api";
import { href, navigate, type Route } from "../router";
import { OVERLAPS, scheduleBody, scheduleErrorField, scheduleValues, type ScheduleValues } from "../schedule";
import { ConfirmButton, ErrorBox, usePoll, When } from "../ui";

export function Schedules({ route }: { route: Route }) {
  const id = route.parts[1];
  const editing = route.params.get("edit") === "1";
  const creating = id === undefined && route.params.get("new") === "1";
  const { data, error, refresh } = usePoll(() => get<{ schedules: Schedule[] }>("/v1/schedules"), [], 5000);
  const current = data?.schedules.find((s) => s.id === id);
  return (
    <section>
      <h1>Schedules</h1>
      <div class="actions">
        <button type="button" class="primary" onClick={() => navigate(href(["schedules"], { new: "1" }))}>
          New schedule
        </button>
      </div>
      {creating && <ScheduleForm key="new" onDone={(s) => (void refresh(), navigate(href(["schedules", s.id])))} onCancel={() => navigate(href(["schedules"]))} />}
      <ErrorBox error={error} />
      <div class="table-scroll">
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
                  {s.cron} ({s.timezone || "UTC"})
                </td>
                <td data-testid={`state-${s.id}`}>{s.paused ? "paused" : "active"}</td>
                <td>
                  <When t={s.next_tick_at} />
                </td>
                <td>{s.last_run_id ? <a href={href(["runs", s.last_run_id])}>{s.last_run_id.slice(0, 8)}…</a> : "–"}</td>
                <td>{s.source}</td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
      {data && data.schedules.length === 0 && <p class="muted">No schedules.</p>}
      {id && data && !current && <p class="error">There is no schedule {id} (any more).</p>}
      {id && current && editing && (
        <ScheduleForm
          key={`edit-${id}`}
          schedule={current}
          onDone={() => (void refresh(), navigate(href(["schedules", id]), true))}
          onCancel={() => navigate(href(["schedules", id]), true)}
        />
      )}
      {id && current && <ScheduleTicks id={id} schedule={current} onChange={refresh} />}
    </section>
  );
}

function ScheduleTicks({ id, schedule, onChange }: { id: string; schedule: Schedule; onChange: () => void }) {
  const { data, error, refresh } = usePoll(() => get<{ ticks: ScheduleTick[] }>(`/v1/schedules/${enc(id)}/ticks${query({ limit: 100 })}`), [id], 5000);
  const act = (verb: string) => async () => {
    await post(`/v1/schedules/${enc(id)}/${verb}`, {});
    onChange();
    void refresh();
  };
  const api = schedule.source !== "definition";
  return (
    <div>
      <h2>Ticks of {id}</h2>
      <div class="actions" role="group" aria-label="Schedule actions">
        <ConfirmButton label="Trigger now" question={`Fire ${id} now, as a tick at the current time?`} action={act("trigger")} />
        {schedule.paused ? (
          <ConfirmButton label="Resume" question={`Resume ${id}? Ticks missed while paused are not caught up.`} action={act("resume")} />
        ) : (
          <ConfirmButton label="Pause" question={`Pause ${id}? It starts nothing until resumed.`} action={act("pause")} />
        )}
        {api && (
          <button type="button" onClick={() => navigate(href(["schedules", id], { edit: "1" }), true)}>
            Edit
          </button>
        )}
        {api && (
          <ConfirmButton
            label="Delete"
            danger
            question={`Delete schedule ${id}? It starts no more runs; the runs it started stay.`}
            confirmLabel="Delete the schedule"
            action={async () => {
              await del(`/v1/schedules/${enc(id)}`);
              onChange();
              navigate(href(["schedules"]));
            }}
          />
        )}
      </div>
      {!api && <p class="muted">Declared in the definition of {schedule.workflow}: change it by registering a new version.</p>}
      <ErrorBox error={error} />
      <div class="table-scroll">
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
                <td>
                  <When t={t.tick_at} />
                </td>
                <td>{t.outcome}</td>
                <td>{t.run_id ? <a href={href(["runs", t.run_id])}>{t.run_id.slice(0, 8)}…</a> : "–"}</td>
                <td>{t.reason}</td>
                <td>
                  <When t={t.recorded_at} />
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
      {data && data.ticks.length === 0 && <p class="muted">No ticks yet.</p>}
    </div>
  );
}

function Field(props: { id: string; label: string; error?: string; hint?: string; children: ComponentChildren }) {
  return (
    <div class={`field${props.error ? " invalid" : ""}`} data-field={props.id}>
      <label for={`sch-${props.id}`}>{props.label}</label>
      {props.children}
      {props.hint && <p class="hint">{props.hint}</p>}
      {props.error && (
        <p class="field-error" role="alert">
          {props.error}
        </p>
      )}
    </div>
  );
}

/** Every IANA zone the browser knows (for the time zone field's suggestions). */
function zones(): string[] {
  try {
    return (Intl as unknown as { supportedValuesOf?: (k: string) => string[] }).supportedValuesOf?.("timeZone") ?? [];
  } catch {
    return [];
  }
}

function ScheduleForm({ schedule, onDone, onCancel }: { schedule?: Schedule; onDone: (s: Schedule) => void; onCancel: () => void }) {
  const [v, setV] = useState<ScheduleValues>(() => scheduleValues(schedule));
  const [errors, setErrors] = useState<Record<string, string>>({});
  const [busy, setBusy] = useState(false);
  const workflows = usePoll(() => listWorkflows<Workflow>(), []);
  const set = (k: keyof ScheduleValues) => (e: { currentTarget: { value: string } }) => {
    const value = e.currentTarget.value;
    setV((old) => ({ ...old, [k]: value }));
    setErrors((old) => {
      const { [k]: _gone, ...rest } = old;
      return rest;
    });
  };
  const submit = async (e: Event) => {
    e.preventDefault();
    const { body, errors: found } = scheduleBody(v);
    setErrors(found);
    if (!body) return;
    setBusy(true);
    try {
      const s = await post<Schedule>("/v1/schedules", body);
      onDone(s);
    } catch (err) {
      const f = err instanceof ApiError ? scheduleErrorField(err.field) : "";
      // Next to its field, the message without the field's name in front ("cron: invalid ...").
      const text = err instanceof ApiError ? (f ? err.message.replace(/^[\w.\/\[\]]+: /, "") : `${err.code}: ${err.message}`) : String(err);
      setErrors({ [f]: text });
    } finally {
      setBusy(false);
    }
  };
  const title = schedule ? `Edit schedule ${schedule.id}` : "New schedule";
  return (
    <form class="task-form schedule-form" onSubmit={submit} noValidate aria-label={title}>
      <h2>{title}</h2>
      {errors[""] && (
        <p class="error" role="alert">
          {errors[""]}
        </p>
      )}
      {!schedule && (
        <Field id="id" label="Id (optional)" error={errors.id} hint="Letters, digits and _ . : / -; empty: one is made up.">
          <input id="sch-id" value={v.id} onInput={set("id")} />
        </Field>
      )}
      <Field id="workflow" label="Workflow" error={errors.workflow}>
        <select id="sch-workflow" value={v.workflow} onChange={set("workflow")}>
          <option value="">— choose —</option>
          {(workflows.data?.workflows ?? []).map((w) => (
            <option key={w.name} value={w.name}>
              {w.name}
            </option>
          ))}
          {v.workflow && !(workflows.data?.workflows ?? []).some((w) => w.name === v.workflow) && <option value={v.workflow}>{v.workflow}</option>}
        </select>
      </Field>
      <Field id="version" label="Version (empty: the latest when each run starts)" error={errors.version}>
        <input id="sch-version" inputMode="numeric" value={v.version} onInput={set("version")} />
      </Field>
      <Field id="cron" label="Cron" error={errors.cron} hint="min hour day month weekday, e.g. 0 3 * * * (03:00 every day); 6 fields put seconds first.">
        <input id="sch-cron" class="mono" value={v.cron} onInput={set("cron")} />
      </Field>
      <Field id="timezone" label="Time zone (IANA)" error={errors.timezone} hint="The zone the cron's hours are read in, e.g. Europe/Paris.">
        <input id="sch-timezone" list="sch-zones" value={v.timezone} onInput={set("timezone")} />
        <datalist id="sch-zones">
          {zones().map((z) => (
            <option key={z} value={z} />
          ))}
        </datalist>
      </Field>
      <Field id="overlap" label="When a tick finds the last run unfinished" error={errors.overlap}>
        <select id="sch-overlap" value={v.overlap} onChange={set("overlap")}>
          {OVERLAPS.map(([k, what]) => (
            <option key={k} value={k}>
              {k}: {what}
            </option>
          ))}
        </select>
      </Field>
      <Field id="input" label="Input of each run (JSON)" error={errors.input}>
        <textarea id="sch-input" class="mono" rows={5} value={v.input} onInput={set("input")} />
      </Field>
      <Field id="catchup" label="Catch-up window in seconds (empty: 1 h)" error={errors.catchup} hint="How late a tick missed while no coordinator ran may still fire.">
        <input id="sch-catchup" inputMode="numeric" value={v.catchup} onInput={set("catchup")} />
      </Field>
      <div class="actions">
        <button type="submit" class="primary" disabled={busy}>
          {busy ? "Saving…" : schedule ? "Save changes" : "Create schedule"}
        </button>
        <button type="button" onClick={onCancel}>
          Cancel
        </button>
      </div>
    </form>
  );
}
