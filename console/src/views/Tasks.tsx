// The task inbox (open human tasks, filtered by assignee and workflow) and a task's screen: title,
// description, the outputs of the steps it follows, and a form rendered from the step's JSON
// Schema, checked in the page and again by the coordinator.
import { useMemo, useState } from "preact/hooks";
import { ApiError, enc, get, getToken, post, query, type HumanTask, type Run, type Workflow } from "../api";
import { checkValues, fieldsFromSchema, initialValues, optionLabel, serverFieldErrors, type Field, type RawValues } from "../form";
import { href, navigate, type Route } from "../router";
import { statusColour, statusWord } from "../status";
import { ErrorBox, Json, Status, usePoll, When } from "../ui";

const USER_KEY = "baton.user";

/** The name this browser completes tasks as (the task form's "Completing as"), "" if none yet. */
export function currentUser(): string {
  try {
    return localStorage.getItem(USER_KEY) ?? "";
  } catch {
    return "";
  }
}

/** A task's status as one badge: its own word, in the colour of the matching run status. */
function TaskStatus({ s }: { s: string }) {
  const c = statusColour(s === "open" ? "waiting" : s === "completed" ? "succeeded" : "cancelled");
  return (
    <span class="badge" data-status={s} style={{ background: c.fill, borderColor: c.border }}>
      {s}
    </span>
  );
}

/** Distinct, sorted, non-empty values. */
function distinct(values: string[]): string[] {
  return [...new Set(values.filter(Boolean))].sort();
}

export function Inbox({ route }: { route: Route }) {
  const assignee = route.params.get("assignee") ?? "";
  const workflow = route.params.get("workflow") ?? "";
  const status = route.params.get("status") ?? "open";
  const [me, setMe] = useState(currentUser);
  const { data, error } = usePoll(
    () => get<{ tasks: HumanTask[] }>(`/v1/tasks${query({ assignee, workflow, status: status === "all" ? "" : status, limit: 200 })}`),
    [assignee, workflow, status],
    3000,
  );
  // The lists the filters choose from: every assignee and workflow of the tasks kept.
  const every = usePoll(() => get<{ tasks: HumanTask[] }>(`/v1/tasks${query({ limit: 1000 })}`), [], 15_000);
  const assignees = distinct([...(every.data?.tasks ?? []).flatMap((t) => t.assignees), assignee, me]);
  const workflows = distinct([...(every.data?.tasks ?? []).map((t) => t.workflow), workflow]);
  const set = (k: string, v: string) => navigate(href(["tasks"], { assignee, workflow, status, [k]: v }), true);
  const mine = me !== "" && assignee === me;
  return (
    <section>
      <h1>Task inbox</h1>
      <form
        class="filters"
        onSubmit={(e) => {
          e.preventDefault();
          const name = me.trim();
          if (!name) return;
          localStorage.setItem(USER_KEY, name);
          set("assignee", name);
        }}
      >
        <label>
          I am
          <input value={me} placeholder="your name or group" autoComplete="username" onInput={(e) => setMe(e.currentTarget.value)} />
        </label>
        <button type="submit" aria-pressed={mine} disabled={!me.trim()}>
          My tasks
        </button>
        <label>
          Assignee
          <select value={assignee} onChange={(e) => set("assignee", e.currentTarget.value)}>
            <option value="">anyone</option>
            {assignees.map((a) => (
              <option key={a} value={a}>
                {a}
              </option>
            ))}
          </select>
        </label>
        <label>
          Workflow
          <select value={workflow} onChange={(e) => set("workflow", e.currentTarget.value)}>
            <option value="">any</option>
            {workflows.map((w) => (
              <option key={w} value={w}>
                {w}
              </option>
            ))}
          </select>
        </label>
        <label>
          Status
          <select value={status} onChange={(e) => set("status", e.currentTarget.value)}>
            <option value="open">open</option>
            <option value="completed">completed</option>
            <option value="cancelled">cancelled</option>
            <option value="all">all</option>
          </select>
        </label>
      </form>
      <ErrorBox error={error} />
      <p aria-live="polite" data-testid="task-count">
        {data ? `${data.tasks.length} task${data.tasks.length === 1 ? "" : "s"}` : "Loading…"}
      </p>
      <div class="table-scroll">
        <table>
          <thead>
            <tr>
              <th scope="col">Task</th>
              <th scope="col">Workflow</th>
              <th scope="col">Assignees</th>
              <th scope="col">Status</th>
              <th scope="col">Created</th>
              <th scope="col">Run</th>
            </tr>
          </thead>
          <tbody>
            {(data?.tasks ?? []).map((t) => (
              <tr key={`${t.run_id}/${t.step_id}`}>
                <td>
                  <a href={href(["tasks", t.run_id, t.step_id])}>{t.title || t.step_id}</a>
                </td>
                <td>{t.workflow}</td>
                <td>{t.assignees.join(", ") || "anyone"}</td>
                <td>
                  <TaskStatus s={t.status} />
                </td>
                <td>
                  <When t={t.created_at} ago />
                </td>
                <td>
                  <a class="mono" href={href(["runs", t.run_id])}>
                    {t.run_id.slice(0, 8)}…
                  </a>
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
      {data && data.tasks.length === 0 && <p class="muted">No tasks match.</p>}
    </section>
  );
}

/** Text with `backquoted` spans set as code (descriptions are written that way). */
function withCode(text: string) {
  return text.split(/(`[^`]+`)/).map((part, i) => (part.startsWith("`") && part.endsWith("`") && part.length > 2 ? <code key={i}>{part.slice(1, -1)}</code> : part));
}

/** The key of the "Completing as" error (not a form property: those are JSON names, never this). */
const USER_FIELD = "\u0000user";

export function TaskScreen({ route }: { route: Route }) {
  const runId = route.parts[1] ?? "";
  const stepId = route.parts[2] ?? "";
  const run = usePoll(() => get<Run>(`/v1/runs/${enc(runId)}`), [runId]);
  const wf = usePoll(
    () => (run.data ? get<Workflow>(`/v1/workflows/${enc(run.data.workflow)}?version=${run.data.version}`) : Promise.resolve(undefined)),
    [run.data?.workflow, run.data?.version],
  );
  const def = wf.data?.steps.find((s) => s.id === stepId);
  const step = run.data?.steps.find((s) => s.id === stepId);
  if (run.error) return <ErrorBox error={run.error} />;
  if (!run.data || !wf.data) return <p>Loading task…</p>;
  if (!def?.human || !step) return <p class="error">Run {runId} has no human step {stepId}.</p>;
  const h = def.human;
  const open = statusWord(step.status) === "waiting";
  // The outputs this step follows: its dependencies', then the other finished steps'.
  const before = run.data.steps.filter((s) => step.depends_on.includes(s.id) && s.output !== null);
  return (
    <section class="task">
      <p>
        <a href={href(["tasks"])}>Task inbox</a> › run{" "}
        <a class="mono" href={href(["runs", runId], { step: stepId })}>
          {runId}
        </a>
      </p>
      <h1>{h.title || stepId}</h1>
      <p class="description">{withCode(h.description)}</p>
      <dl class="facts">
        <dt>Workflow</dt>
        <dd>
          {run.data.workflow} v{run.data.version}, step {stepId}
        </dd>
        <dt>Assignees</dt>
        <dd>{h.assignees.join(", ") || "anyone"}</dd>
        <dt>Status</dt>
        <dd>
          <Status s={step.status} /> {open ? "open" : step.completed_by ? `completed by ${step.completed_by}` : ""}
        </dd>
      </dl>
      <div class="task-body">
        <div class="task-found" data-testid="task-found">
          <h2>What is being approved</h2>
          {before.length === 0 && <p class="muted">No outputs before this step.</p>}
          {before.map((s) => (
            <div key={s.id}>
              <h3>Output of {s.id}</h3>
              <Json value={s.output} label={`Output of ${s.id}`} />
            </div>
          ))}
          <details>
            <summary>Run input</summary>
            <Json value={run.data.input} label="Run input" />
          </details>
        </div>
        <div class="task-decide" data-testid="task-form">
          <h2>Form</h2>
          {open ? (
            <TaskForm runId={runId} stepId={stepId} schema={h.form_schema} />
          ) : (
            <>
              <p>This task is not open.</p>
              <Json value={step.output} label="Submitted data" />
            </>
          )}
        </div>
      </div>
    </section>
  );
}

function TaskForm({ runId, stepId, schema }: { runId: string; stepId: string; schema: unknown }) {
  const model = useMemo(() => fieldsFromSchema(schema), [JSON.stringify(schema)]);
  const [values, setValues] = useState<RawValues>(() => initialValues(model));
  const [errors, setErrors] = useState<Record<string, string>>({});
  const [user, setUser] = useState(() => localStorage.getItem(USER_KEY) ?? "");
  const [busy, setBusy] = useState(false);
  const [failure, setFailure] = useState<unknown>(undefined);
  const set = (name: string, v: string) => {
    setValues((old) => ({ ...old, [name]: v }));
    // An error describes the value it was found in: editing the field clears it.
    setErrors((old) => {
      if (!(name in old)) return old;
      const { [name]: _gone, ...rest } = old;
      return rest;
    });
  };

  const submit = async (e: Event) => {
    e.preventDefault();
    setFailure(undefined);
    const checked = checkValues(model, values);
    // Without a token the coordinator needs a name to record; with one it records the token's.
    const userError = !getToken() && !user.trim() ? "Required: who completes the task." : "";
    setErrors(userError ? { ...checked.errors, [USER_FIELD]: userError } : checked.errors);
    if (Object.keys(checked.errors).length > 0 || userError) {
      if (Object.keys(checked.errors).length > 0) focusFirstError(checked.errors, model.fields);
      else document.getElementById("task-user")?.focus();
      return;
    }
    setBusy(true);
    try {
      localStorage.setItem(USER_KEY, user);
      await post(`/v1/tasks/${enc(runId)}/${enc(stepId)}/complete`, user.trim() ? { data: checked.data, user: user.trim() } : { data: checked.data });
      navigate(href(["runs", runId]));
    } catch (err) {
      if (err instanceof ApiError && err.code === "INVALID_ARGUMENT" && err.field === "user") {
        setErrors({ [USER_FIELD]: err.message });
      } else if (err instanceof ApiError && err.code === "INVALID_ARGUMENT" && (err.field ?? "").startsWith("data")) {
        const fe = serverFieldErrors(model, err.message, err.field);
        setErrors(fe);
        focusFirstError(fe, model.fields);
      } else setFailure(err);
    } finally {
      setBusy(false);
    }
  };

  return (
    <form class="task-form" onSubmit={submit} noValidate>
      {errors[""] && (
        <p class="error" role="alert" id="form-error">
          {errors[""]}
        </p>
      )}
      {model.fields.map((f) => (
        <FieldInput key={f.name} field={f} value={values[f.name] ?? ""} error={errors[f.name]} onChange={(v) => set(f.name, v)} />
      ))}
      <div class={`field${errors[USER_FIELD] ? " invalid" : ""}`} data-field="completing-as">
        <label for="task-user">Completing as</label>
        <input
          id="task-user"
          value={user}
          autoComplete="username"
          aria-invalid={errors[USER_FIELD] ? true : undefined}
          aria-describedby={errors[USER_FIELD] ? "task-user-desc task-user-err" : "task-user-desc"}
          onInput={(e) => {
            setUser(e.currentTarget.value);
            setErrors((old) => {
              const { [USER_FIELD]: _gone, ...rest } = old;
              return rest;
            });
          }}
        />
        <p class="hint" id="task-user-desc">
          Your name, recorded with the task (with a token, the coordinator records the token's identity instead).
        </p>
        {errors[USER_FIELD] && (
          <p class="field-error" id="task-user-err" role="alert">
            {errors[USER_FIELD]}
          </p>
        )}
      </div>
      <ErrorBox error={failure} />
      <button type="submit" class="primary" disabled={busy}>
        {busy ? "Submitting…" : "Submit"}
      </button>
    </form>
  );
}

export function fieldId(name: string): string {
  return `f-${name.replace(/[^A-Za-z0-9_-]/g, "_") || "data"}`;
}

export function focusFirstError(errors: Record<string, string>, fields: Field[]) {
  const f = fields.find((x) => x.name in errors);
  const id = f ? fieldId(f.name) : "form-error";
  setTimeout(() => (document.getElementById(id) ?? document.querySelector<HTMLElement>(`[name="${id}"]`))?.focus(), 0);
}

export function FieldInput({ field: f, value, error, onChange }: { field: Field; value: string; error?: string; onChange: (v: string) => void }) {
  const id = fieldId(f.name);
  const describedBy = [f.description ? `${id}-desc` : "", error ? `${id}-err` : ""].filter(Boolean).join(" ") || undefined;
  const common = { id, "aria-invalid": error ? true : undefined, "aria-describedby": describedBy, "aria-required": f.required || undefined };
  let control;
  if (f.kind === "boolean") {
    return (
      <fieldset class={`field${error ? " invalid" : ""}`} aria-describedby={describedBy} data-field={f.name}>
        <legend>
          {f.label}
          {f.required && <span class="req"> (required)</span>}
        </legend>
        {[
          ["true", "Yes"],
          ["false", "No"],
        ].map(([v, l], i) => (
          <label class="inline" key={v}>
            <input type="radio" name={id} id={i === 0 ? id : undefined} value={v} checked={value === v} onChange={() => onChange(v)} /> {l}
          </label>
        ))}
        {!f.required && (
          <label class="inline">
            <input type="radio" name={id} value="" checked={value === ""} onChange={() => onChange("")} /> Not set
          </label>
        )}
        {f.description && (
          <p class="hint" id={`${id}-desc`}>
            {f.description}
          </p>
        )}
        {error && (
          <p class="field-error" id={`${id}-err`} role="alert">
            {error}
          </p>
        )}
      </fieldset>
    );
  }
  if (f.kind === "enum") {
    control = (
      <select {...common} value={value} onChange={(e) => onChange(e.currentTarget.value)}>
        <option value="">— choose —</option>
        {(f.options ?? []).map((o, i) => (
          <option key={i} value={String(i)}>
            {optionLabel(o)}
          </option>
        ))}
      </select>
    );
  } else if (f.kind === "text" || f.kind === "json") {
    control = <textarea {...common} rows={f.kind === "json" ? 6 : 3} value={value} onInput={(e) => onChange(e.currentTarget.value)} />;
  } else if (f.kind === "number" || f.kind === "integer") {
    control = <input {...common} type="text" inputMode={f.kind === "integer" ? "numeric" : "decimal"} value={value} onInput={(e) => onChange(e.currentTarget.value)} />;
  } else {
    control = <input {...common} type="text" maxLength={f.maxLength} value={value} onInput={(e) => onChange(e.currentTarget.value)} />;
  }
  const range =
    f.kind === "number" || f.kind === "integer"
      ? [f.minimum !== undefined ? `at least ${f.minimum}` : "", f.maximum !== undefined ? `at most ${f.maximum}` : ""].filter(Boolean).join(", ")
      : "";
  return (
    <div class={`field${error ? " invalid" : ""}`} data-field={f.name}>
      <label for={id}>
        {f.label}
        {f.required && <span class="req"> (required)</span>}
        {f.kind === "integer" && <span class="muted"> whole number</span>}
        {range && <span class="muted"> ({range})</span>}
      </label>
      {control}
      {f.description && (
        <p class="hint" id={`${id}-desc`}>
          {f.description}
        </p>
      )}
      {error && (
        <p class="field-error" id={`${id}-err`} role="alert">
          {error}
        </p>
      )}
    </div>
  );
}
