// Browser test of a step's data on the run page (issue 19), run by tests/tests/console.rs against a
// real cluster with the workflow `steplogs` registered: step `charge` (handler `chatty` of the test
// worker) logs a line every 120 ms at every level, fails attempt 1 (error type `Flaky`, with
// details) and succeeds on attempt 2.
//
// 1. The log lines appear live while the step runs (no reload), with level colours, times in the
//    zone picked (UTC, then the browser's local zone, pinned to Europe/Paris), and a level filter.
// 2. Auto-scroll keeps the newest line in view, and stops once the user scrolls up.
// 3. Attempt 1 shows its resolved input (while it runs, too) (the template rendered with the run's input), its error
//    type and message and its details; the copy button copies the input.
// 4. After a reload, the lines are read back from the API.
// 5. At 1400 px and on a 390 px phone nothing overflows the page; screenshots of both.
//
// Environment: CONSOLE_URL (e.g. http://127.0.0.1:8080/), SCREENSHOT_DIR (created),
// CHROMIUM (default /usr/bin/chromium). Exits 0 when every scenario passed; prints each step.
import { T, api, base, launch, reporter, waitRun, word } from "./harness.mjs";

const { log, check, shot } = reporter("step logs");

// Local time is Paris time in this browser, whatever the machine's zone.
const { browser, context, page, consoleErrors } = await launch({ viewport: { width: 1400, height: 900 }, timezoneId: "Europe/Paris" });
await context.grantPermissions(["clipboard-read", "clipboard-write"], { origin: new URL(base).origin });

const lines = page.locator("[data-testid='step-logs'] .log-line");
const box = page.locator("[data-testid='step-logs'] .log-box");

/** How far the page reaches past the window's right edge (px). */
const pageOverflow = () => page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);

try {
  // ---- 1. Live lines ---------------------------------------------------------------------------
  // Pick UTC first (the choice is kept in localStorage).
  await page.goto(`${base}#/runs`);
  await page.locator("header .zone select").selectOption("utc");
  const { run_id: id } = await api("POST", "v1/runs", { workflow: "steplogs", input: { order: "A-17" } });
  log(`submitted steplogs run ${id}`);
  await page.goto(`${base}#/runs/${id}?step=charge`);
  await page.locator("[data-testid='stream-state']", { hasText: "live" }).waitFor({ timeout: T });
  await lines.first().waitFor({ timeout: T });
  const firstCount = await lines.count();
  const during = await api("GET", `v1/runs/${id}`);
  check(!["succeeded", "failed"].includes(word(during.status)), `the first lines show while the run is still ${word(during.status)}`);
  await page.waitForFunction((n) => document.querySelectorAll("[data-testid='step-logs'] .log-line").length >= n + 5, firstCount, { timeout: T });
  check(true, `more lines arrive without a reload (${firstCount} at first, then ${await lines.count()})`);
  const stamp = (await lines.first().locator("time").textContent()) ?? "";
  check(/^\d\d:\d\d:\d\d\.\d{3} UTC$/.test(stamp), `a line's time has milliseconds and its zone ("${stamp}")`);
  const flying = page.locator("[data-testid='attempt-1'] pre.json");
  await flying.waitFor({ timeout: T });
  const flyingRun = await api("GET", `v1/runs/${id}`);
  check(
    JSON.parse((await flying.textContent()) ?? "").order === "A-17" && flyingRun.steps[0].attempts.length === 0,
    "while attempt 1 runs, its card shows the input it runs with",
  );
  const infoColour = await lines.locator(".log-level", { hasText: "info" }).first().evaluate((e) => getComputedStyle(e).backgroundColor);
  check(infoColour === "rgb(219, 234, 254)", `info lines have the info colour (${infoColour})`);

  // ---- 2. Auto-scroll ----------------------------------------------------------------------------
  await page.waitForFunction(() => {
    const b = document.querySelector("[data-testid='step-logs'] .log-box");
    return b && b.scrollHeight > b.clientHeight + 40;
  }, null, { timeout: T });
  const atEnd = () => box.evaluate((b) => b.scrollHeight - b.scrollTop - b.clientHeight <= 24);
  check(await atEnd(), "while following, the newest line is in view");
  await box.evaluate((b) => {
    b.scrollTop = 0;
    b.dispatchEvent(new Event("scroll"));
  });
  await page.locator(".log-paused").waitFor({ timeout: T });
  const before = await lines.count();
  await page.waitForFunction((n) => document.querySelectorAll("[data-testid='step-logs'] .log-line").length > n, before, { timeout: T });
  const top = await box.evaluate((b) => b.scrollTop);
  check(top === 0, `scrolled up, new lines do not move the view (scrollTop ${top}, ${await lines.count()} lines)`);
  await page.getByRole("button", { name: "Follow the newest" }).click();
  await page.waitForTimeout(300);
  check(await atEnd(), "'Follow the newest' brings the end back into view");
  await shot(page, "step-logs-live");

  // ---- 3. The failed attempt: input, error, details ----------------------------------------------
  const { run } = await waitRun(id, "success", (r) => word(r.status) === "succeeded");
  const charge = run.steps.find((s) => s.id === "charge");
  check(charge.attempts.length === 2 && charge.attempts[0].error_type === "Flaky", "the API has two attempts, the first Flaky");
  check(charge.attempts[0].error_details.length > 0, "the API has the first attempt's details");
  // The page has both attempts (its GetRun may lag the API by a moment).
  await page.locator("[data-testid='attempt-2']").waitFor({ timeout: T });
  const first = page.locator("[data-testid='attempt-1']");
  await first.waitFor({ timeout: T });
  await first.locator("[data-testid='error-type']", { hasText: "Flaky" }).waitFor({ timeout: T });
  check((await first.locator(".error").textContent()).includes("attempt 1 is flaky"), "attempt 1 shows its error type and message");
  const details = first.locator("[data-testid='error-details']");
  if (!(await details.isVisible())) await first.locator("summary", { hasText: "Details" }).click();
  check((await details.textContent()) === charge.attempts[0].error_details, "attempt 1 shows its error details in a scrollable box");
  check(
    (await details.evaluate((e) => getComputedStyle(e).overflow)) === "auto",
    "the details box scrolls",
  );
  const inputBox = first.locator(".attempt-input");
  if (!(await inputBox.evaluate((d) => d.open))) await inputBox.locator("summary").click();
  const inputText = (await first.locator("pre.json").textContent()) ?? "";
  check(JSON.parse(inputText).order === "A-17", `attempt 1 shows the input it ran with (${inputText.replace(/\s+/g, " ")})`);
  await first.getByRole("button", { name: "Copy the input of attempt 1" }).click();
  await first.getByRole("button", { name: "Copy the input of attempt 1" }).filter({ hasText: "Copied" }).waitFor({ timeout: T });
  const copied = await page.evaluate(() => navigator.clipboard.readText());
  check(JSON.parse(copied).order === "A-17", "the copy button copies the input");

  // Level filter.
  const total = await lines.count();
  await page.getByLabel("Lowest level shown").selectOption("error");
  const errors = await lines.count();
  const levels = await lines.locator(".log-level").allTextContents();
  check(errors > 0 && errors < total && levels.every((l) => l === "error"), `the level filter shows only errors (${errors} of ${total})`);
  await page.getByLabel("Lowest level shown").selectOption("debug");

  // ---- 4. After a reload, from the API; local time ------------------------------------------------
  const { lines: kept } = await api("GET", `v1/runs/${id}/logs?step=charge`);
  await page.reload();
  await lines.first().waitFor({ timeout: T });
  await page.waitForFunction((n) => document.querySelectorAll("[data-testid='step-logs'] .log-line").length === n, kept.length, { timeout: T });
  check(true, `after a reload the step shows the ${kept.length} lines the API keeps`);
  const lastText = (await lines.last().locator(".log-msg").textContent()) ?? "";
  check(lastText === kept[kept.length - 1].message, `the last line is the API's last ("${lastText}")`);
  await page.locator("header .zone select").selectOption("local");
  const local = (await lines.first().locator("time").textContent()) ?? "";
  check(/^\d\d:\d\d:\d\d\.\d{3} (CET|CEST|GMT\+1|GMT\+2)$/.test(local), `with local time picked, lines show Paris time ("${local}")`);
  await page.locator("header .zone select").selectOption("utc");

  // ---- 5. Layout at 1400 px and 390 px -------------------------------------------------------------
  let over = await pageOverflow();
  check(over <= 0, `the page does not scroll sideways at 1400 px (over by ${over} px)`);
  await shot(page, "step-logs-1400");
  await page.setViewportSize({ width: 390, height: 844 });
  await page.waitForTimeout(300);
  over = await pageOverflow();
  check(over <= 0, `on a 390 px phone the page does not scroll sideways (over by ${over} px)`);
  const boxRight = await box.evaluate((b) => b.getBoundingClientRect().right);
  check(boxRight <= 390, `the log box fits the phone (right edge ${boxRight})`);
  await shot(page, "step-logs-phone");
  await page.setViewportSize({ width: 1400, height: 900 });

  check(consoleErrors.length === 0, `no errors in the browser console (${consoleErrors.join("; ")})`);
  log("all step logs scenarios passed");
} catch (e) {
  try {
    await shot(page, "step-logs-failure");
  } catch {
    /* the page may be gone */
  }
  console.error(`[step logs e2e] FAILED at ${page.url()}: ${e.stack ?? e}`);
  if (consoleErrors.length) console.error(`browser console errors: ${consoleErrors.join("\n")}`);
  process.exitCode = 1;
} finally {
  await browser.close();
}
