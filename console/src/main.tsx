// The console's shell: navigation, the token prompt (shown when the API answers 401), and the
// screen for the current hash route.
import { render } from "preact";
import { useEffect, useRef, useState } from "preact/hooks";
import { getToken, onUnauthorized, setToken } from "./api";
import { href, useRoute } from "./router";
import "./style.css";
import { get, query, type HumanTask } from "./api";
import { savedZone, saveZone, type ZoneMode } from "./time";
import { Events, Workers } from "./views/Other";
import { Schedules } from "./views/Schedules";
import { Workflows } from "./views/Workflows";
import { RunView } from "./views/Run";
import { Runs } from "./views/Runs";
import { currentUser, Inbox, TaskScreen } from "./views/Tasks";
import { usePoll } from "./ui";

const NAV: [string, string][] = [
  ["runs", "Runs"],
  ["tasks", "Task inbox"],
  ["schedules", "Schedules"],
  ["workers", "Workers and queues"],
  ["workflows", "Workflows"],
  ["events", "Events"],
];

/** How many open tasks name the user the console completes tasks as (the "Completing as" name),
 * for the badge beside the inbox; polled every 10 s. */
function useMyTaskCount(): number | undefined {
  const user = currentUser();
  const { data } = usePoll(
    () => (user ? get<{ tasks: HumanTask[] }>(`/v1/tasks${query({ assignee: user, status: "open", limit: 1000 })}`) : Promise.resolve(undefined)),
    [user],
    10_000,
  );
  return data?.tasks.length;
}

function TokenPrompt({ onDone }: { onDone: () => void }) {
  const dlg = useRef<HTMLDialogElement>(null);
  const [value, setValue] = useState("");
  useEffect(() => dlg.current?.showModal(), []);
  return (
    <dialog ref={dlg} aria-labelledby="token-title" onCancel={onDone}>
      <form
        method="dialog"
        onSubmit={() => {
          setToken(value.trim());
          onDone();
          location.reload();
        }}
      >
        <h2 id="token-title">Sign in with a token</h2>
        <p>The coordinator asks for a bearer token. It is kept in this tab only (sessionStorage).</p>
        <label for="token">Token</label>
        <input id="token" type="password" autoComplete="off" value={value} onInput={(e) => setValue(e.currentTarget.value)} required />
        <div class="actions">
          <button type="submit" class="primary">
            Use this token
          </button>
          <button type="button" onClick={onDone}>
            Not now
          </button>
        </div>
      </form>
    </dialog>
  );
}

function App() {
  const route = useRoute();
  const [askToken, setAskToken] = useState(false);
  useEffect(() => onUnauthorized(() => setAskToken(true)), []);
  const [zone, setZone] = useState<ZoneMode>(savedZone);
  const mine = useMyTaskCount();
  const top = route.parts[0] ?? "runs";
  let screen;
  switch (top) {
    case "tasks":
      screen = route.parts.length >= 3 ? <TaskScreen route={route} /> : <Inbox route={route} />;
      break;
    case "schedules":
      screen = <Schedules route={route} />;
      break;
    case "workers":
      screen = <Workers route={route} />;
      break;
    case "events":
      screen = <Events />;
      break;
    case "workflows":
      screen = <Workflows route={route} />;
      break;
    case "runs":
      screen = route.parts.length >= 2 ? <RunView route={route} /> : <Runs route={route} />;
      break;
    default:
      screen = <p>There is no page {location.hash}.</p>;
  }
  return (
    <>
      <a class="skip" href="#main" onClick={(e) => (e.preventDefault(), document.getElementById("main")?.focus())}>
        Skip to content
      </a>
      <header>
        <a class="brand" href={href(["runs"])}>
          Baton
        </a>
        <nav aria-label="Main">
          {NAV.map(([k, label]) => (
            <a key={k} href={href([k])} aria-current={top === k ? "page" : undefined}>
              {label}
              {k === "tasks" && mine !== undefined && mine > 0 && (
                <span class="count" data-testid="my-task-count" aria-label={`${mine} open tasks for you`}>
                  {mine}
                </span>
              )}
            </a>
          ))}
        </nav>
        <span class="grow" />
        <label class="zone">
          Times in{" "}
          <select
            value={zone}
            onChange={(e) => {
              const z = e.currentTarget.value === "local" ? "local" : "utc";
              saveZone(z);
              setZone(z);
            }}
          >
            <option value="utc">UTC</option>
            <option value="local">local time ({Intl.DateTimeFormat().resolvedOptions().timeZone})</option>
          </select>
        </label>
        {getToken() ? (
          <button
            type="button"
            onClick={() => {
              setToken("");
              location.reload();
            }}
          >
            Forget token
          </button>
        ) : (
          <button type="button" onClick={() => setAskToken(true)}>
            Token…
          </button>
        )}
      </header>
      <main id="main" tabIndex={-1}>
        {screen}
      </main>
      {askToken && <TokenPrompt onDone={() => setAskToken(false)} />}
    </>
  );
}

render(<App />, document.getElementById("app")!);
