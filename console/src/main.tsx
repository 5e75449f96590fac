// The console's shell: navigation, the token prompt (shown when the API answers 401), and the
// screen for the current hash route.
import { render } from "preact";
import { useEffect, useRef, useState } from "preact/hooks";
import { getToken, onUnauthorized, setToken } from "./api";
import { href, useRoute } from "./router";
import "./style.css";
import { Workers, Schedules, Workflows } from "./views/Other";
import { RunView } from "./views/Run";
import { Runs } from "./views/Runs";
import { Inbox, TaskScreen } from "./views/Tasks";

const NAV: [string, string][] = [
  ["runs", "Runs"],
  ["tasks", "Task inbox"],
  ["schedules", "Schedules"],
  ["workers", "Workers and queues"],
  ["workflows", "Workflows"],
];

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
      screen = <Workers />;
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
            </a>
          ))}
        </nav>
        <span class="grow" />
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
