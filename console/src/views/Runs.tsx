// The runs list: filters (workflow, status, created after/before) kept in the URL, pages by
// token, refreshed every 3 s with counts by status.
import { useState } from "preact/hooks";
import { get, listWorkflows, query, type Run, type Workflow } from "../api";
import { href, navigate, type Route } from "../router";
import { RUN_STATUSES, statusWord } from "../status";
import { ErrorBox, fmtDuration, fmtTime, Status, usePoll } from "../ui";

/** datetime-local value (local time) → RFC 3339 UTC, or "" when empty/invalid. */
function toRfc3339(local: string): string {
  if (!local) return "";
  const d = new Date(local);
  return Number.isNaN(d.getTime()) ? "" : d.toISOString();
}

export function Runs({ route }: { route: Route }) {
  const p = route.params;
  const filters = {
    workflow: p.get("workflow") ?? "",
    status: p.get("status") ?? "",
    after: p.get("after") ?? "",
    before: p.get("before") ?? "",
    parent: p.get("parent") ?? "",
  };
  // The page tokens that led here: [""] is the first page.
  const [pages, setPages] = useState<string[]>([""]);
  const token = pages[pages.length - 1];
  const key = JSON.stringify(filters);
  const [lastKey, setLastKey] = useState(key);
  if (key !== lastKey) {
    setLastKey(key);
    setPages([""]);
  }
  const { data, error } = usePoll(
    () =>
      get<{ runs: Run[]; next_page_token: string }>(
        `/v1/runs${query({
          workflow: filters.workflow,
          status: filters.status,
          parent_run_id: filters.parent,
          created_after: toRfc3339(filters.after),
          created_before: toRfc3339(filters.before),
          limit: 50,
          page_token: token,
        })}`,
      ),
    [key, token],
    3000,
  );
  const workflows = usePoll(() => listWorkflows<Workflow>(), []);
  const set = (k: string, v: string) => navigate(href(["runs"], { ...filters, [k]: v }), true);
  const counts: Record<string, number> = {};
  for (const r of data?.runs ?? []) counts[statusWord(r.status)] = (counts[statusWord(r.status)] ?? 0) + 1;

  return (
    <section>
      <h1>Runs</h1>
      <form class="filters" onSubmit={(e) => e.preventDefault()}>
        <label>
          Workflow
          <select value={filters.workflow} onChange={(e) => set("workflow", e.currentTarget.value)}>
            <option value="">all</option>
            {(workflows.data?.workflows ?? []).map((w) => (
              <option value={w.name} key={w.name}>
                {w.name}
              </option>
            ))}
          </select>
        </label>
        <label>
          Status
          <select value={filters.status} onChange={(e) => set("status", e.currentTarget.value)}>
            <option value="">all</option>
            {RUN_STATUSES.map((s) => (
              <option value={s} key={s}>
                {s.replace("_", " ")}
              </option>
            ))}
          </select>
        </label>
        <label>
          Created after
          <input type="datetime-local" value={filters.after} onChange={(e) => set("after", e.currentTarget.value)} />
        </label>
        <label>
          Created before
          <input type="datetime-local" value={filters.before} onChange={(e) => set("before", e.currentTarget.value)} />
        </label>
        {filters.parent && (
          <p>
            Started by run <a href={href(["runs", filters.parent])}>{filters.parent}</a>{" "}
            <button type="button" onClick={() => set("parent", "")}>
              Show all runs
            </button>
          </p>
        )}
      </form>
      <p class="counts" aria-live="polite" data-testid="run-counts">
        {data ? `${data.runs.length} run${data.runs.length === 1 ? "" : "s"} on this page` : "Loading…"}
        {Object.entries(counts).map(([s, n]) => (
          <span key={s}>
            {" · "}
            <Status s={s} /> {n}
          </span>
        ))}
      </p>
      <ErrorBox error={error} />
      <table>
        <thead>
          <tr>
            <th scope="col">Run</th>
            <th scope="col">Workflow</th>
            <th scope="col">Status</th>
            <th scope="col">Created</th>
            <th scope="col">Duration</th>
            <th scope="col">Error</th>
          </tr>
        </thead>
        <tbody>
          {(data?.runs ?? []).map((r) => (
            <tr key={r.id}>
              <td>
                <a href={href(["runs", r.id])} class="mono">
                  {r.id}
                </a>
              </td>
              <td>
                <a href={href(["workflows", r.workflow], { version: String(r.version) })}>
                  {r.workflow} v{r.version}
                </a>
              </td>
              <td>
                <Status s={r.status} />
              </td>
              <td>{fmtTime(r.created_at)}</td>
              <td>{fmtDuration(r.started_at ?? r.created_at, r.finished_at)}</td>
              <td class="clip">{r.error || r.waiting_for}</td>
            </tr>
          ))}
        </tbody>
      </table>
      {data && data.runs.length === 0 && <p class="muted">No runs match.</p>}
      <nav class="pager" aria-label="Pages">
        <button type="button" disabled={pages.length < 2} onClick={() => setPages(pages.slice(0, -1))}>
          Previous page
        </button>
        <span>Page {pages.length}</span>
        <button type="button" disabled={!data?.next_page_token} onClick={() => data && setPages([...pages, data.next_page_token])}>
          Next page
        </button>
      </nav>
    </section>
  );
}
