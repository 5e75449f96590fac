// What every browser script in this folder starts with: the console's address (CONSOLE_URL), the
// screenshot folder (SCREENSHOT_DIR, created), Debian's Chromium (CHROMIUM, default
// /usr/bin/chromium), a logger and checks that print each step, the HTTP API, and one page whose
// browser-console errors and failed requests are collected for the script's last checks.
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { chromium } from "playwright-core";

export const base = (process.env.CONSOLE_URL ?? "").replace(/\/?$/, "/");
if (!process.env.CONSOLE_URL) throw new Error("CONSOLE_URL is not set");
export const shots = process.env.SCREENSHOT_DIR ?? "target/console-screenshots";
mkdirSync(shots, { recursive: true });
/** How long one wait in the page may take (ms). */
export const T = 30_000;

/** `log`, `check` and `shot` printing under `[<name> e2e hh:mm:ss.mmm]`. */
export function reporter(name) {
  const log = (...a) => console.log(`[${name} e2e ${new Date().toISOString().slice(11, 23)}]`, ...a);
  const check = (cond, what) => {
    if (!cond) throw new Error(`check failed: ${what}`);
    log(`ok: ${what}`);
  };
  const shot = async (page, file) => {
    const path = join(shots, `${file}.png`);
    await page.screenshot({ path, fullPage: true });
    log(`screenshot: ${path}`);
  };
  return { log, check, shot };
}

/** One call of the HTTP API; answers the JSON and its text, throws on a status of 400 or more. */
export async function apiText(method, path, body) {
  const res = await fetch(new URL(path, base), {
    method,
    headers: { "Content-Type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${text}`);
  return { json: JSON.parse(text), text };
}

/** One call of the HTTP API; answers the JSON, throws on a status of 400 or more. */
export async function api(method, path, body) {
  return (await apiText(method, path, body)).json;
}

/** A run or step status as a lowercase word (`RUN_STATUS_SUCCEEDED` → `succeeded`). */
export const word = (s) => String(s ?? "").replace(/^(RUN|STEP)_STATUS_/i, "").toLowerCase();

/**
 * Chromium with one page in a context of `contextOptions` (viewport, timezoneId, ...). Answers the
 * browser, the context, the page, and the lists the page fills: `consoleErrors` (browser-console
 * errors but Chromium's "Failed to load resource", and uncaught page errors) and `failedRequests`
 * (`<status> <method> <path>` of every answer of 400 or more).
 */
export async function launch(contextOptions) {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-dev-shm-usage"],
  });
  const context = await browser.newContext(contextOptions);
  const page = await context.newPage();
  const consoleErrors = [];
  const failedRequests = [];
  watch(page, consoleErrors, failedRequests);
  return { browser, context, page, consoleErrors, failedRequests };
}

/** Collects `page`'s browser-console errors and failed requests into these lists. */
export function watch(page, consoleErrors, failedRequests) {
  page.on("console", (m) => m.type() === "error" && !m.text().startsWith("Failed to load resource") && consoleErrors.push(m.text()));
  page.on("response", (r) => r.status() >= 400 && failedRequests.push(`${r.status()} ${r.request().method()} ${new URL(r.url()).pathname}`));
  page.on("pageerror", (e) => consoleErrors.push(String(e)));
}

/** Polls GetRun until `done(run)` (at most `within` ms); answers the run and its JSON text. */
export async function waitRun(id, what, done, within = 60_000) {
  const deadline = Date.now() + within;
  for (;;) {
    const { json, text } = await apiText("GET", `v1/runs/${id}`);
    if (done(json)) return { run: json, text };
    if (Date.now() > deadline) throw new Error(`run ${id}: ${what} did not happen within ${within} ms: ${text.slice(0, 2000)}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
