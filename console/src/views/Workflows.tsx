// Workflow definitions with their graph; a run started from a workflow's page with a form built
// from its input schema (or raw JSON), the coordinator's errors shown by the field; a version
// deleted when none of its runs is unfinished.
import { useMemo, useState } from "preact/hooks";
import { ApiError, del, enc, get, listWorkflows, post, query, type Workflow } from "../api";
import { checkValues, initialValues, inputModel, serverFieldErrors, type RawValues } from "../form";
import { href, navigate, type Route } from "../router";
import { ConfirmButton, ErrorBox, Json, usePoll, When } from "../ui";
import { Graph } from "./Graph";
import { FieldInput, focusFirstError } from "./Tasks";

export function Workflows({ route }: { route: Route }) {
  const name = route.parts[1];
  const list = usePoll(() => listWorkflows<Workflow>(), [name]);
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
      {list.data && list.data.workflows.length === 0 && <p class="muted">No workflows registered.</p>}
      {name && <WorkflowDetail key={`${name}@${route.params.get("version") ?? ""}`} name={name} version={route.params.get("version") ?? ""} />}
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
        · <a href={href(["runs"], { workflow: w.name })}>its runs</a> · registered <When t={w.registered_at} ago />
      </p>
      <div class="actions" role="group" aria-label="Workflow actions">
        <ConfirmButton
          label={`Delete version ${w.version}`}
          danger
          question={`Delete ${w.name} version ${w.version}? Runs of it that finished keep their history; the coordinator refuses while any run of it is unfinished.${
            w.versions.length === 1 ? " It is the only version: the workflow goes away." : ""
          }`}
          confirmLabel="Delete the version"
          action={async () => {
            const r = await del<{ remaining_versions: number[] }>(`/v1/workflows/${enc(w.name)}${query({ version: w.version })}`);
            const latest = r.remaining_versions[r.remaining_versions.length - 1];
            navigate(latest ? href(["workflows", w.name], { version: String(latest) }) : href(["workflows"]));
          }}
        />
      </div>
      <StartRun workflow={w} />
      <h3>Steps</h3>
      <div class="graph-scroll" tabIndex={0} aria-label="Graph (scrolls sideways on small screens)">
        <Graph
          label={`Steps of workflow ${w.name}`}
          steps={w.steps.map((s) => ({ id: s.id, dependsOn: s.depends_on, sub: s.kind === "task" ? s.handler : s.kind }))}
          onSelect={(s) => document.getElementById(`wf-step-${s}`)?.focus()}
        />
      </div>
      <div class="table-scroll">
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
      </div>
      <details>
        <summary>Input schema</summary>
        <Json value={w.input_schema} label="Input schema" />
      </details>
      <details>
        <summary>Definition</summary>
        <Json value={w.definition} label="Definition" />
      </details>
    </div>
  );
}

function StartRun({ workflow: w }: { workflow: Workflow }) {
  const model = useMemo(() => inputModel(w.input_schema), [JSON.stringify(w.input_schema)]);
  const [values, setValues] = useState<RawValues>(() => initialValues(model));
  const [raw, setRaw] = useState<string | undefined>(undefined);
  const [key, setKey] = useState("");
  const [errors, setErrors] = useState<Record<string, string>>({});
  const [failure, setFailure] = useState<unknown>(undefined);
  const [busy, setBusy] = useState(false);
  const [existing, setExisting] = useState<{ id: string; differs: boolean } | undefined>(undefined);
  const set = (name: string, v: string) => {
    setValues((old) => ({ ...old, [name]: v }));
    setErrors((old) => {
      if (!(name in old)) return old;
      const { [name]: _gone, ...rest } = old;
      return rest;
    });
  };
  const toRaw = () => {
    const checked = checkValues(model, values);
    setRaw(JSON.stringify(Object.keys(checked.errors).length === 0 ? checked.data : {}, null, 2));
    setErrors({});
  };

  const submit = async (e: Event) => {
    e.preventDefault();
    setFailure(undefined);
    setExisting(undefined);
    let input: unknown;
    if (raw !== undefined) {
      try {
        input = JSON.parse(raw);
      } catch (err) {
        setErrors({ "": `Not valid JSON: ${(err as Error).message}` });
        return;
      }
    } else {
      const checked = checkValues(model, values);
      setErrors(checked.errors);
      if (Object.keys(checked.errors).length > 0) {
        focusFirstError(checked.errors, model.fields);
        return;
      }
      input = checked.data;
    }
    setErrors({});
    setBusy(true);
    try {
      const r = await post<{ run_id: string; created: boolean; input_differs: boolean }>("/v1/runs", {
        workflow: w.name,
        version: w.version,
        input,
        ...(key.trim() ? { idempotency_key: key.trim() } : {}),
      });
      if (r.created) navigate(href(["runs", r.run_id]));
      else setExisting({ id: r.run_id, differs: r.input_differs });
    } catch (err) {
      if (err instanceof ApiError && err.code === "INVALID_ARGUMENT" && (err.field ?? "").startsWith("input")) {
        const fe = raw === undefined ? serverFieldErrors(model, err.message, err.field, "input") : { "": err.message };
        setErrors(fe);
        if (raw === undefined) focusFirstError(fe, model.fields);
      } else setFailure(err);
    } finally {
      setBusy(false);
    }
  };

  return (
    <details class="start-run" open>
      <summary>
        <h3>Start a run of {w.name} v{w.version}</h3>
      </summary>
      <form class="task-form" onSubmit={submit} noValidate aria-label={`Start a run of ${w.name}`}>
        <div class="actions" role="group" aria-label="Input as">
          <button type="button" aria-pressed={raw === undefined} onClick={() => raw !== undefined && setRaw(undefined)}>
            Form
          </button>
          <button type="button" aria-pressed={raw !== undefined} onClick={() => raw === undefined && toRaw()}>
            Raw JSON
          </button>
        </div>
        {errors[""] && (
          <p class="error" role="alert" id="form-error">
            {errors[""]}
          </p>
        )}
        {raw === undefined ? (
          model.fields.map((f) => <FieldInput key={f.name} field={f} value={values[f.name] ?? ""} error={errors[f.name]} onChange={(v) => set(f.name, v)} />)
        ) : (
          <div class="field">
            <label for="run-input-raw">Input (JSON)</label>
            <textarea id="run-input-raw" class="mono" rows={8} value={raw} onInput={(e) => setRaw(e.currentTarget.value)} />
          </div>
        )}
        <div class="field">
          <label for="run-idem">Idempotency key (optional)</label>
          <input id="run-idem" value={key} maxLength={1024} onInput={(e) => setKey(e.currentTarget.value)} aria-describedby="run-idem-desc" />
          <p class="hint" id="run-idem-desc">
            The same key answers the same run instead of starting another.
          </p>
        </div>
        <ErrorBox error={failure} />
        {existing && (
          <p class="note" role="status">
            A run with this key exists already: <a href={href(["runs", existing.id])}>{existing.id}</a>
            {existing.differs ? " (it started with another input; use another key to start a new run)" : ""}.
          </p>
        )}
        <button type="submit" class="primary" disabled={busy}>
          {busy ? "Starting…" : "Start run"}
        </button>
      </form>
    </details>
  );
}
