// A step's data in the run page's step panel: per attempt, the input it ran with (collapsible JSON
// with a copy button) and, for a failed one, the error type, message and details (a traceback in a
// scrollable box); and the step's log, read from `GET /v1/runs/{id}/logs?step=` and then live from
// the run's event stream, with level colours, a level and attempt filter, times in the zone the
// user picked, and auto-scroll that stops while the user reads further up.
import type { ComponentChildren } from "preact";
import { useEffect, useLayoutEffect, useMemo, useRef, useState } from "preact/hooks";
import { get, type Attempt } from "../api";
import { atEnd, belongsTo, countLevels, filterLines, inputView, LEVELS, levelColour, logsPath, logTime, mergeLines, type LogLine } from "../logs";
import { formatTime, savedZone } from "../time";
import { ErrorBox, Json, Status } from "../ui";

/** Copies `text` to the clipboard (the Clipboard API, or a hidden text area where it is missing). */
async function copyText(text: string): Promise<void> {
  if (navigator.clipboard?.writeText) {
    try {
      await navigator.clipboard.writeText(text);
      return;
    } catch {
      /* not allowed here: fall back */
    }
  }
  const area = document.createElement("textarea");
  area.value = text;
  area.setAttribute("readonly", "");
  area.style.position = "fixed";
  area.style.opacity = "0";
  document.body.appendChild(area);
  area.select();
  document.execCommand("copy");
  area.remove();
}

/** A `<details>` open at first when `initiallyOpen`; afterwards only the user opens and closes it
 * (a newer attempt arriving does not fold the one being read). */
function Fold({ initiallyOpen, class: cls, summary, children }: { initiallyOpen: boolean; class?: string; summary: ComponentChildren; children: ComponentChildren }) {
  const ref = useRef<HTMLDetailsElement>(null);
  useLayoutEffect(() => {
    if (ref.current) ref.current.open = initiallyOpen;
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, []);
  return (
    <details ref={ref} class={cls}>
      <summary>{summary}</summary>
      {children}
    </details>
  );
}

function CopyButton({ text, label }: { text: string; label: string }) {
  const [done, setDone] = useState("");
  return (
    <button
      type="button"
      class="small-button"
      aria-label={label}
      onClick={async () => {
        try {
          await copyText(text);
          setDone("Copied");
        } catch {
          setDone("Could not copy");
        }
        setTimeout(() => setDone(""), 2000);
      }}
    >
      {done || "Copy"}
    </button>
  );
}

/** The attempt in flight (running or waiting, not yet among the finished ones) as an attempt
 * card shows it; undefined when there is none or the answer has no input for it. */
export function inFlight(step: { attempt: number; status: string; input: unknown; input_omitted_bytes: number; attempts: Attempt[] }, status: string): Attempt | undefined {
  if (step.attempt < 1 || step.attempts.some((a) => a.number === step.attempt)) return undefined;
  if ((step.input === null || step.input === undefined) && !step.input_omitted_bytes) return undefined;
  return {
    number: step.attempt,
    outcome: status,
    error: "",
    worker: "",
    started_at: null,
    finished_at: null,
    input: step.input,
    input_omitted_bytes: step.input_omitted_bytes,
    error_type: "",
    error_details: "",
    log_lines: 0,
  };
}

/** One card per attempt, newest first (the one in flight, when given, on top): the input it ran
 * with, and its error. */
export function AttemptCards({ stepId, attempts: finished, running }: { stepId: string; attempts: Attempt[]; running?: Attempt }) {
  const attempts = running ? [...finished, running] : finished;
  const newest = attempts.length ? attempts[attempts.length - 1].number : 0;
  // The traceback of the newest failed attempt is open; older ones fold.
  const failedNumbers = attempts.filter((a) => a.error || a.error_type || a.error_details).map((a) => a.number);
  const newestFailed = failedNumbers.length ? failedNumbers[failedNumbers.length - 1] : 0;
  return (
    <div class="attempt-cards">
      {[...attempts].reverse().map((a) => {
        const input = inputView(a);
        const failed = Boolean(a.error || a.error_type || a.error_details);
        return (
          <section key={a.number} class="attempt-card" data-testid={`attempt-${a.number}`} aria-label={`Attempt ${a.number} of ${stepId}`}>
            <h4>
              Attempt {a.number} <Status s={a.outcome} />
              {a.log_lines > 0 && <span class="muted small"> · {a.log_lines} log lines</span>}
            </h4>
            {failed && (
              <div class="attempt-error" data-testid={`attempt-${a.number}-error`}>
                <p class="error">
                  {a.error_type && (
                    <>
                      <strong data-testid="error-type">{a.error_type}</strong>
                      {a.error && ": "}
                    </>
                  )}
                  {a.error.startsWith(`${a.error_type}: `) ? a.error.slice(a.error_type.length + 2) : a.error}
                </p>
                {a.error_details && (
                  <Fold initiallyOpen={a.number === newestFailed} summary="Details (traceback)">
                    <pre class="trace" tabIndex={0} aria-label={`Error details of attempt ${a.number}`} data-testid="error-details">
                      {a.error_details}
                    </pre>
                  </Fold>
                )}
              </div>
            )}
            <Fold class="attempt-input" initiallyOpen={a.number === newest} summary="Input">
              {"value" in input ? (
                <>
                  <div class="actions tight">
                    <CopyButton text={JSON.stringify(input.value, null, 2)} label={`Copy the input of attempt ${a.number}`} />
                  </div>
                  <Json value={input.value} label={`Input of attempt ${a.number}`} />
                </>
              ) : (
                <p class="muted">{input.note}</p>
              )}
            </Fold>
          </section>
        );
      })}
    </div>
  );
}

/** The step's log lines: those kept so far, then live ones (`live`: the log events of the run's
 * stream, any step). `reload` changes when the lines should be read again (the stream came back,
 * the run ended). */
export function StepLogs({ runId, stepId, live, reload }: { runId: string; stepId: string; live: LogLine[]; reload: string }) {
  const [fetched, setFetched] = useState<LogLine[]>([]);
  const [omitted, setOmitted] = useState(0);
  const [error, setError] = useState<unknown>(undefined);
  const [loaded, setLoaded] = useState(false);
  const [level, setLevel] = useState("debug");
  const [attempt, setAttempt] = useState(0);
  const [follow, setFollow] = useState(true);
  const box = useRef<HTMLDivElement>(null);

  useEffect(() => {
    setFetched([]);
    setLoaded(false);
    setAttempt(0);
    setFollow(true);
  }, [runId, stepId]);

  useEffect(() => {
    let current = true;
    get<{ lines: LogLine[]; omitted: number }>(logsPath(runId, stepId)).then(
      (r) => {
        if (!current) return;
        setFetched((old) => mergeLines(old, r.lines));
        setOmitted(r.omitted);
        setError(undefined);
        setLoaded(true);
      },
      (e) => {
        if (current) {
          setError(e);
          setLoaded(true);
        }
      },
    );
    return () => {
      current = false;
    };
  }, [runId, stepId, reload]);

  const all = useMemo(() => mergeLines(fetched, live.filter((l) => belongsTo(l, stepId))), [fetched, live, stepId]);
  const shown = filterLines(all, level, attempt);
  const counts = countLevels(all);
  const attempts = [...new Set(all.map((l) => l.attempt))].sort((a, b) => a - b);
  const elements = all.some((l) => l.step_id !== stepId);
  const zone = savedZone();

  // Keep the end in view while following (also when the window changes size); a user who scrolled
  // up stops the following.
  useLayoutEffect(() => {
    const el = box.current;
    if (!el || !follow) return;
    el.scrollTop = el.scrollHeight;
    const keep = () => (el.scrollTop = el.scrollHeight);
    window.addEventListener("resize", keep);
    return () => window.removeEventListener("resize", keep);
  }, [shown.length, follow]);

  return (
    <div class="step-logs" data-testid="step-logs">
      <div class="filters log-filters">
        <label>
          Level
          <select value={level} onChange={(e) => setLevel(e.currentTarget.value)} aria-label="Lowest level shown">
            {LEVELS.map((l, i) => (
              <option key={l} value={l}>
                {i === 0 ? `all levels (${all.length})` : i === LEVELS.length - 1 ? `error only (${counts.error})` : `${l} and above (${LEVELS.slice(i).reduce((n, x) => n + counts[x], 0)})`}
              </option>
            ))}
          </select>
        </label>
        {attempts.length > 1 && (
          <label>
            Attempt
            <select value={attempt} onChange={(e) => setAttempt(Number(e.currentTarget.value))}>
              <option value={0}>all attempts</option>
              {attempts.map((a) => (
                <option key={a} value={a}>
                  attempt {a}
                </option>
              ))}
            </select>
          </label>
        )}
      </div>
      <ErrorBox error={error} />
      {omitted > 0 && <p class="muted small">{omitted} older lines not shown.</p>}
      <div
        class="log-box"
        ref={box}
        tabIndex={0}
        role="log"
        aria-label={`Log of step ${stepId}`}
        aria-live="polite"
        onScroll={(e) => {
          const el = e.currentTarget;
          const end = atEnd(el.scrollTop, el.clientHeight, el.scrollHeight);
          if (end !== follow) setFollow(end);
        }}
      >
        {shown.length === 0 && <p class="muted log-empty">{!loaded ? "Loading…" : all.length ? "No line at this level." : "No log lines yet."}</p>}
        {shown.map((l, i) => {
          const c = levelColour(l.level);
          return (
            <div key={`${l.time}-${i}`} class="log-line" data-level={l.level}>
              <time dateTime={l.time ?? undefined} title={formatTime(l.time, zone)}>
                {logTime(l.time, zone)}
              </time>
              <span class="log-level" style={{ color: c.text, background: c.fill }}>
                {l.level}
              </span>
              {(attempts.length > 1 || elements) && (
                <span class="muted log-where">
                  {elements ? l.step_id : ""}#{l.attempt}
                </span>
              )}
              <span class="log-msg">{l.message}</span>
            </div>
          );
        })}
      </div>
      {!follow && (
        <p class="log-paused">
          <span class="muted small">Scrolled up: new lines do not move the view.</span>{" "}
          <button type="button" class="small-button" onClick={() => setFollow(true)}>
            Follow the newest
          </button>
        </p>
      )}
    </div>
  );
}
