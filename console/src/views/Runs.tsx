// The runs list: filters, search (run id or idempotency key) and the page's cursor kept in the URL;
// child runs hidden unless asked for; runs selected and cancelled or retried in bulk; refreshed
// every 3 s with counts by status.
import { useState } from "preact/hooks";
import { ApiError, enc, get, listWorkflows, post, query, type Run, type Workflow } from "../api";
import { href, navigate, type Route } from "../router";
import { bulkApplies, bulkSummary, bulkTargets, countsLine, filtersFrom, partialNotice, isRunId, listParams, runBulk, type BulkAction, type RunFilters } from "../runs";
import { RUN_STATUSES } from "../status";
import { savedZone } from "../time";
import { ConfirmButton, ErrorBox, fmtDuration, Status, usePoll, When } from "../ui";

export function Runs({ route }: { route: Route }) {
  const filters = filtersFrom(route.params);
  const zone = savedZone();
  // The tokens of the pages before this one (a deep link starts with none: "First page" then).
  const [before, setBefore] = useState<string[]>([]);
  const [selected, setSelected] = useState<Set<string>>(new Set());
  const [outcome, setOutcome] = useState<{ text: string; bad: boolean } | undefined>(undefined);
  const [search, setSearch] = useState(filters.q);
  const [filterText, setFilterText] = useState(filters.query);
  const key = JSON.stringify({ ...filters, cursor: "" });
  const [lastKey, setLastKey] = useState(key);
  if (key !== lastKey) {
    setLastKey(key);
    setBefore([]);
    setSelected(new Set());
    setSearch(filters.q);
    setFilterText(filters.query);
  }
  const byId = isRunId(filters.q);
  const { data, error, refresh } = usePoll(async () => {
    if (byId) {
      try {
        const run = await get<Run>(`/v1/runs/${enc(filters.q.trim())}`);
        return { runs: [run], next_page_token: "" };
      } catch (e) {
        if (e instanceof ApiError && e.status === 404) return { runs: [] as Run[], next_page_token: "" };
        throw e;
      }
    }
    return get<{
      runs: Run[];
      next_page_token: string;
      status_counts?: Record<string, number | string>;
      partial?: boolean;
      partial_reason?: string;
    }>(
      `/v1/runs${query(listParams(filters, zone))}`,
    );
  }, [key, filters.cursor, zone], 3000);
  const workflows = usePoll(() => listWorkflows<Workflow>(), []);
  const go = (next: Partial<RunFilters>) => navigate(href(["runs"], { ...filters, cursor: "", ...next }), true);
  const runs = data?.runs ?? [];
  const notice = byId || !data || !("partial" in data) ? undefined : partialNotice(data);
  const summary = countsLine(runs, byId || !data || !("status_counts" in data) ? undefined : data.status_counts);
  const toggle = (id: string) =>
    setSelected((old) => {
      const s = new Set(old);
      if (s.has(id)) s.delete(id);
      else s.add(id);
      return s;
    });
  const allOnPage = runs.length > 0 && runs.every((r) => selected.has(r.id));
  const bulk = (action: BulkAction) => async () => {
    const ids = bulkTargets(action, runs, selected);
    const o = await runBulk(ids, (id) => post(`/v1/runs/${enc(id)}/${action}`, {}));
    setOutcome({ text: bulkSummary(action, o), bad: o.failed.length > 0 });
    setSelected(new Set());
    void refresh();
  };
  const nCancel = bulkTargets("cancel", runs, selected).length;
  const nRetry = bulkTargets("retry", runs, selected).length;

  return (
    <section>
      <h1>Runs</h1>
      <form
        class="search"
        role="search"
        onSubmit={(e) => {
          e.preventDefault();
          go({ q: search.trim() });
        }}
      >
        <label for="run-search">Run id or idempotency key</label>
        <input id="run-search" type="search" value={search} placeholder="e.g. 0b6f… or order-1234" onInput={(e) => setSearch(e.currentTarget.value)} />
        <button type="submit">Search</button>
        {filters.q && (
          <button type="button" onClick={() => go({ q: "" })}>
            Clear search
          </button>
        )}
      </form>
      <form
        class="search"
        role="search"
        aria-label="Filter runs"
        onSubmit={(e) => {
          e.preventDefault();
          go({ query: filterText.trim() });
        }}
      >
        <label for="run-filter">Filter</label>
        <input
          id="run-filter"
          aria-describedby="run-filter-help"
          type="search"
          value={filterText}
          placeholder={'e.g. status = "failed" AND input.customer.id = "c-42"'}
          onInput={(e) => setFilterText(e.currentTarget.value)}
        />
        <button type="submit">Filter</button>
        {filters.query && (
          <button type="button" onClick={() => go({ query: "" })}>
            Clear filter
          </button>
        )}
        <small id="run-filter-help" class="hint">
          Fields: workflow, version, status, created, finished, parent, idempotency_key, error_type, input.&lt;path&gt;,
          output.&lt;path&gt;; operators = != &lt; &lt;= &gt; &gt;= in; AND, OR, NOT and parentheses; times as RFC 3339 or
          relative (created &gt; "-24h"). Searches every run, archived ones too.
        </small>
      </form>
      <form class="filters" onSubmit={(e) => e.preventDefault()}>
        <label>
          Workflow
          <select value={filters.workflow} onChange={(e) => go({ workflow: e.currentTarget.value })}>
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
          <select value={filters.status} onChange={(e) => go({ status: e.currentTarget.value })}>
            <option value="">all</option>
            {RUN_STATUSES.map((s) => (
              <option value={s} key={s}>
                {s.replace("_", " ")}
              </option>
            ))}
          </select>
        </label>
        <label>
          Created after ({zone === "utc" ? "UTC" : "local time"})
          <input type="datetime-local" value={filters.after} onChange={(e) => go({ after: e.currentTarget.value })} />
        </label>
        <label>
          Created before ({zone === "utc" ? "UTC" : "local time"})
          <input type="datetime-local" value={filters.before} onChange={(e) => go({ before: e.currentTarget.value })} />
        </label>
        {!filters.parent && (
          <label class="check">
            <input type="checkbox" checked={filters.children === "1"} onChange={(e) => go({ children: e.currentTarget.checked ? "1" : "" })} />
            Show child runs
          </label>
        )}
        {filters.parent && (
          <p>
            Started by run <a href={href(["runs", filters.parent])}>{filters.parent}</a>{" "}
            <button type="button" onClick={() => go({ parent: "" })}>
              Show all runs
            </button>
          </p>
        )}
      </form>
      <p class="counts" aria-live="polite" data-testid="run-counts">
        {data ? `${runs.length} run${runs.length === 1 ? "" : "s"} on this page` : "Loading…"}
        {data && summary.scope === "matching" && ` · ${summary.total.toLocaleString("en")} matching`}
        {summary.counts.map(([s, n]) => (
          <span key={s}>
            {" · "}
            <Status s={s} /> {n.toLocaleString("en")}
          </span>
        ))}
      </p>
      {notice && (
        <p class="notice" role="status" data-testid="runs-partial">
          {notice}
        </p>
      )}
      <div class="actions bulk" role="group" aria-label="Selected runs">
        <span data-testid="selected-count">{selected.size} selected</span>
        <ConfirmButton
          label="Cancel selected"
          danger
          disabled={nCancel === 0}
          question={`Cancel ${nCancel} unfinished run${nCancel === 1 ? "" : "s"}? Their running steps are told to stop and nothing new starts.`}
          confirmLabel={`Cancel ${nCancel} run${nCancel === 1 ? "" : "s"}`}
          action={bulk("cancel")}
        />
        <ConfirmButton
          label="Retry selected"
          disabled={nRetry === 0}
          question={`Retry the failed, cancelled or timed-out steps of ${nRetry} run${nRetry === 1 ? "" : "s"}?`}
          confirmLabel={`Retry ${nRetry} run${nRetry === 1 ? "" : "s"}`}
          action={bulk("retry")}
        />
      </div>
      {outcome && (
        <p class={outcome.bad ? "error" : "note"} role="status" data-testid="bulk-outcome">
          {outcome.text}
        </p>
      )}
      <ErrorBox error={error} />
      <div class="table-scroll">
        <table class="runs">
          <thead>
            <tr>
              <th scope="col">
                <input
                  type="checkbox"
                  aria-label="Select every run on this page"
                  checked={allOnPage}
                  onChange={() => setSelected(allOnPage ? new Set() : new Set(runs.map((r) => r.id)))}
                />
              </th>
              <th scope="col">Run</th>
              <th scope="col">Workflow</th>
              <th scope="col">Status</th>
              <th scope="col">Created</th>
              <th scope="col">Duration</th>
              <th scope="col">Error</th>
            </tr>
          </thead>
          <tbody>
            {runs.map((r) => (
              <tr key={r.id} class={selected.has(r.id) ? "current" : ""}>
                <td>
                  <input
                    type="checkbox"
                    aria-label={`Select run ${r.id}`}
                    data-run={r.id}
                    checked={selected.has(r.id)}
                    onChange={() => toggle(r.id)}
                    title={
                      bulkApplies("cancel", r.status) ? "can be cancelled" : bulkApplies("retry", r.status) ? "can be retried" : "finished: neither cancel nor retry applies"
                    }
                  />
                </td>
                <td>
                  <a href={href(["runs", r.id])} class="mono">
                    {r.id}
                  </a>
                  {r.parent_run_id && <span class="muted"> (child)</span>}
                  {r.idempotency_key && <div class="muted mono small">key {r.idempotency_key}</div>}
                </td>
                <td>
                  <a href={href(["workflows", r.workflow], { version: String(r.version) })}>
                    {r.workflow} v{r.version}
                  </a>
                </td>
                <td>
                  <Status s={r.status} />
                </td>
                <td>
                  <When t={r.created_at} />
                </td>
                <td>{fmtDuration(r.started_at ?? r.created_at, r.finished_at)}</td>
                <td class="clip">{r.error || r.waiting_for}</td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
      {data && runs.length === 0 && <p class="muted">{byId ? `No run has the id ${filters.q.trim()}.` : "No runs match."}</p>}
      <nav class="pager" aria-label="Pages">
        {before.length > 0 || !filters.cursor ? (
          <button
            type="button"
            disabled={before.length === 0}
            onClick={() => {
              const prev = before[before.length - 1] ?? "";
              setBefore(before.slice(0, -1));
              navigate(href(["runs"], { ...filters, cursor: prev }), true);
            }}
          >
            Previous page
          </button>
        ) : (
          <button type="button" onClick={() => navigate(href(["runs"], { ...filters, cursor: "" }), true)}>
            First page
          </button>
        )}
        <span>{!filters.cursor ? "Page 1" : before.length > 0 ? `Page ${before.length + 1}` : "A later page"}</span>
        <button
          type="button"
          disabled={!data?.next_page_token}
          onClick={() => {
            if (!data) return;
            setBefore([...before, filters.cursor]);
            navigate(href(["runs"], { ...filters, cursor: data.next_page_token }), true);
          }}
        >
          Next page
        </button>
      </nav>
    </section>
  );
}
