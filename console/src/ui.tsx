// Small shared pieces of the screens: times, JSON, status badges, polling, errors, confirmation.
import type { ComponentChildren } from "preact";
import { useCallback, useEffect, useRef, useState } from "preact/hooks";
import { ApiError } from "./api";
import { statusColour, statusWord } from "./status";
import { formatTime, relativeTime, savedZone } from "./time";

/** A time with its zone, in the zone the user chose (UTC or local; see src/time.ts). */
export function fmtTime(t: string | null | undefined): string {
  return formatTime(t, savedZone());
}

/** A time with its zone, and how long ago it was (as the CLI says it) beside it when `ago`, and
 * always as the tooltip. */
export function When({ t, ago = false }: { t: string | null | undefined; ago?: boolean }) {
  if (!t) return <span>–</span>;
  const rel = relativeTime(t, Date.now());
  return (
    <time dateTime={t} title={rel}>
      {fmtTime(t)}
      {ago && rel && <span class="muted"> ({rel})</span>}
    </time>
  );
}

export function fmtDuration(from: string | null | undefined, to: string | null | undefined): string {
  if (!from) return "–";
  const a = new Date(from).getTime();
  const b = to ? new Date(to).getTime() : Date.now();
  if (!Number.isFinite(a) || !Number.isFinite(b)) return "–";
  const ms = Math.max(0, b - a);
  if (ms < 1000) return `${ms} ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)} s`;
  const m = Math.floor(ms / 60_000);
  if (m < 60) return `${m} min ${Math.floor((ms % 60_000) / 1000)} s`;
  return `${Math.floor(m / 60)} h ${m % 60} min`;
}

export function Status({ s }: { s: string }) {
  const c = statusColour(s);
  const w = statusWord(s) || "unknown";
  return (
    <span class="badge" data-status={w} style={{ background: c.fill, borderColor: c.border }}>
      {w.replace("_", " ")}
    </span>
  );
}

export function Json({ value, label }: { value: unknown; label?: string }) {
  if (value === null || value === undefined) return <p class="muted">{label ? `${label}: ` : ""}none</p>;
  return (
    <pre class="json" aria-label={label} tabIndex={0}>
      {JSON.stringify(value, null, 2)}
    </pre>
  );
}

export function ErrorBox({ error }: { error: unknown }) {
  if (!error) return null;
  const e = error as Error;
  const code = e instanceof ApiError ? `${e.code}: ` : "";
  return (
    <p class="error" role="alert">
      {code}
      {e.message ?? String(error)}
    </p>
  );
}

/** Loads `load()` now, when `deps` change, and every `everyMs` (0: once). */
export function usePoll<T>(load: () => Promise<T>, deps: unknown[], everyMs = 0) {
  const [data, setData] = useState<T | undefined>(undefined);
  const [error, setError] = useState<unknown>(undefined);
  const gen = useRef(0);
  const refresh = useCallback(async () => {
    const g = ++gen.current;
    try {
      const d = await load();
      if (g === gen.current) {
        setData(d);
        setError(undefined);
      }
    } catch (e) {
      if (g === gen.current) setError(e);
    }
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, deps);
  useEffect(() => {
    setData(undefined);
    void refresh();
    if (!everyMs) return;
    const t = setInterval(() => {
      if (document.visibilityState !== "hidden") void refresh();
    }, everyMs);
    return () => clearInterval(t);
  }, [refresh, everyMs]);
  return { data, error, refresh };
}

/** A button that asks for confirmation in a modal dialog before running `action`. */
export function ConfirmButton(props: {
  label: string;
  question: string;
  confirmLabel?: string;
  danger?: boolean;
  disabled?: boolean;
  action: () => Promise<unknown>;
  children?: ComponentChildren;
}) {
  const dlg = useRef<HTMLDialogElement>(null);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>(undefined);
  const run = async () => {
    setBusy(true);
    setError(undefined);
    try {
      await props.action();
      dlg.current?.close();
    } catch (e) {
      setError(e);
    } finally {
      setBusy(false);
    }
  };
  return (
    <>
      <button type="button" class={props.danger ? "danger" : ""} disabled={props.disabled} onClick={() => dlg.current?.showModal()}>
        {props.label}
      </button>
      <dialog ref={dlg} aria-label={props.label}>
        <p>{props.question}</p>
        {props.children}
        <ErrorBox error={error} />
        <div class="actions">
          <button type="button" class={props.danger ? "danger" : "primary"} disabled={busy} onClick={run}>
            {props.confirmLabel ?? props.label}
          </button>
          <button type="button" onClick={() => dlg.current?.close()}>
            Keep as is
          </button>
        </div>
      </dialog>
    </>
  );
}

export function Progress({ done, failed, total, label }: { done: number; failed: number; total: number; label: string }) {
  const pct = total > 0 ? Math.round(((done + failed) / total) * 100) : 0;
  return (
    <div class="progress" role="progressbar" aria-label={label} aria-valuemin={0} aria-valuemax={total} aria-valuenow={done + failed}>
      <div class="bar">
        <div class="ok" style={{ width: `${total ? (done / total) * 100 : 0}%` }} />
        <div class="bad" style={{ width: `${total ? (failed / total) * 100 : 0}%` }} />
      </div>
      <span>
        {done + failed} / {total} done ({pct}%){failed > 0 ? `, ${failed} failed` : ""}
      </span>
    </div>
  );
}
