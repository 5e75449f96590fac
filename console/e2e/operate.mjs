// Browser tests of the console's operations, run by tests/tests/console.rs against a real cluster
// (coordinator with its HTTP API, a test worker, Redis, RabbitMQ) with the workflows `order`,
// `longrun`, `flaky`, `parent`/`kid`, `wide`, `waiter`, `expense` and `doomed` (v1, v2) registered:
// starting a run from a workflow's page (an error the page finds and one the coordinator finds,
// next to their fields), bulk cancel and retry on the runs list (child runs hidden, search by
// idempotency key, the page in the URL), creating, editing, pausing, resuming and deleting a
// schedule, deleting a workflow version (refused while a run of it is unfinished), publishing an
// event, times with their zone and the UTC/local toggle, the timeline and the history download,
// the inbox's "my tasks", the workers filter, and the phone layout (390 px).
//
// Environment: CONSOLE_URL, SCREENSHOT_DIR (created), CHROMIUM (default /usr/bin/chromium).
// Exits 0 when every scenario passed; prints each check.
import { readFileSync } from "node:fs";
import { T, api, base, launch, reporter } from "./harness.mjs";

const { log, check, shot } = reporter("operate");

async function until(what, f, ms = T) {
  const end = Date.now() + ms;
  let last;
  while (Date.now() < end) {
    last = await f();
    if (last) return last;
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`timed out waiting for ${what}`);
}

// Paris time, so that "local time" differs from UTC.
const { browser, page, consoleErrors, failedRequests } = await launch({
  viewport: { width: 1366, height: 850 },
  timezoneId: "Europe/Paris",
  acceptDownloads: true,
});

let phone;
try {
  // ---- 1. Start a run from the workflow's page -------------------------------------------------
  await page.goto(`${base}#/workflows/order`);
  const form = page.getByRole("form", { name: "Start a run of order" });
  await form.waitFor({ timeout: T });
  // The page's own check: a required field left empty, text in a number field.
  await form.getByLabel("Quantity").fill("seven");
  await form.getByRole("button", { name: "Start run" }).click();
  await form.locator("[data-field='customer'] .field-error").waitFor({ timeout: T });
  check((await form.locator("[data-field='customer'] .field-error").textContent()) === "Required.", "page check: Customer is required");
  check((await form.locator("[data-field='quantity'] .field-error").textContent()) === "Enter a whole number.", "page check: 'seven' is not a whole number");
  // The coordinator's check (multipleOf, which the page does not check), shown next to the field.
  await form.getByLabel("Customer").fill("Ada");
  await form.getByLabel("Quantity").fill("7");
  await form.getByRole("button", { name: "Start run" }).click();
  const qErr = form.locator("[data-field='quantity'] .field-error");
  await qErr.waitFor({ timeout: T });
  const qText = await qErr.textContent();
  check(/multiple of 5/.test(qText), `coordinator check: the error next to Quantity reads "${qText}"`);
  check((await form.locator("[data-field='customer'] .field-error").count()) === 0, "the fixed field shows no error any more");
  await shot(page, "start-run-field-error");
  await form.getByLabel("Quantity").fill("10");
  await form.getByLabel("Idempotency key (optional)").fill("op-order-1");
  await form.getByRole("button", { name: "Start run" }).click();
  await page.waitForURL(/#\/runs\/[0-9a-f-]{36}$/, { timeout: T });
  const orderRun = page.url().split("/").pop();
  await page.locator("[data-testid='run-status'] .badge[data-status='succeeded']").waitFor({ timeout: T });
  check(true, `starting goes to the new run's page and the run succeeds (${orderRun})`);
  const got = await api("GET", `v1/runs/${orderRun}`);
  check(got.input.customer === "Ada" && got.input.quantity === 10 && got.idempotency_key === "op-order-1", "the run got the typed input and key");

  // Raw JSON: the same key answers the existing run instead of starting another.
  await page.goto(`${base}#/workflows/order`);
  await form.waitFor({ timeout: T });
  await form.getByRole("button", { name: "Raw JSON" }).click();
  await form.getByLabel("Input (JSON)").fill('{"customer": "Ada", "quantity": 10}');
  await form.getByLabel("Idempotency key (optional)").fill("op-order-1");
  await form.getByRole("button", { name: "Start run" }).click();
  await form.getByText("A run with this key exists already").waitFor({ timeout: T });
  check((await form.locator(`a[href="#/runs/${orderRun}"]`).count()) === 1, "the same idempotency key links the existing run");

  // ---- 2. Times: with their zone, UTC by default, local on request; the timeline; the history --
  await page.goto(`${base}#/runs/${orderRun}`);
  const created = page.locator("dl.facts time").first();
  await created.waitFor({ timeout: T });
  check(/\d\d:\d\d:\d\d UTC/.test(await created.textContent()), `a time says UTC by default (${await created.textContent()})`);
  await page.getByLabel("Times in").selectOption("local");
  await until("local time", async () => /\d\d:\d\d:\d\d CET/.test(await created.textContent()));
  check(true, `after the toggle it says the local zone (${await created.textContent()})`);
  await page.getByLabel("Times in").selectOption("utc");
  await page.getByRole("button", { name: "Timeline" }).click();
  await page.locator("[data-testid='timeline'] .tl-bar[data-status='succeeded']").first().waitFor({ timeout: T });
  check((await page.locator("[data-testid='timeline'] .tl-row").count()) === 2, "the timeline has a row per step");
  await shot(page, "run-timeline");
  const [download] = await Promise.all([page.waitForEvent("download"), page.getByRole("button", { name: "Download history (JSON)" }).click()]);
  const saved = JSON.parse(readFileSync(await download.path(), "utf8"));
  check(download.suggestedFilename() === `run-${orderRun}.json`, `the history downloads as ${download.suggestedFilename()}`);
  check(saved.run.id === orderRun && saved.events.some((e) => e.kind === "run" && e.status === "succeeded"), "the download holds the run and its events up to succeeded");

  // ---- 3. The runs list: child runs hidden, search, the page in the URL, bulk cancel and retry --
  const parent = await api("POST", "v1/runs", { workflow: "parent", input: {} });
  const longs = [];
  for (let i = 0; i < 2; i++) longs.push((await api("POST", "v1/runs", { workflow: "longrun", input: { ticks: 600, ms: 100 }, idempotency_key: `op-long-${i}` })).run_id);
  const flaky = (await api("POST", "v1/runs", { workflow: "flaky", input: {} })).run_id;
  await until("the parent run to end", async () => (await api("GET", `v1/runs/${parent.run_id}`)).status === "succeeded");
  const kid = (await api("GET", `v1/runs/${parent.run_id}`)).child_run_ids[0];
  await until("the flaky run to fail", async () => (await api("GET", `v1/runs/${flaky}`)).status === "failed");
  await page.goto(`${base}#/runs`);
  await page.locator(`a[href="#/runs/${parent.run_id}"]`).waitFor({ timeout: T });
  check((await page.locator(`a[href="#/runs/${kid}"]`).count()) === 0, "the child run is hidden by default");
  await page.getByLabel("Show child runs").check();
  await page.locator(`a[href="#/runs/${kid}"]`).waitFor({ timeout: T });
  check(page.url().includes("children=1"), "showing child runs lists the child, and says so in the URL");
  await page.getByLabel("Show child runs").uncheck();
  await page.getByLabel("Run id or idempotency key").fill("op-long-1");
  await page.getByRole("button", { name: "Search", exact: true }).click();
  await page.locator("[data-testid='run-counts']", { hasText: "1 run on this page" }).waitFor({ timeout: T });
  check((await page.locator(`a[href="#/runs/${longs[1]}"]`).count()) === 1 && page.url().includes("q=op-long-1"), "search by idempotency key finds its run, kept in the URL");
  await page.getByLabel("Run id or idempotency key").fill(kid);
  await page.getByRole("button", { name: "Search", exact: true }).click();
  await page.locator(`tbody a[href="#/runs/${kid}"]`).waitFor({ timeout: T });
  check(true, "search by run id finds the run, even a child run");
  await page.getByRole("button", { name: "Clear search" }).click();
  // The page in the URL: one run a page, the cursor in the link works when reloaded.
  await page.goto(`${base}#/runs?workflow=longrun`);
  await page.locator("[data-testid='run-counts']", { hasText: "2 runs on this page" }).waitFor({ timeout: T });
  await page.locator(`input[data-run="${longs[0]}"]`).check();
  await page.locator(`input[data-run="${longs[1]}"]`).check();
  check((await page.getByTestId("selected-count").textContent()) === "2 selected", "two runs selected");
  await shot(page, "runs-selected");
  await page.getByRole("button", { name: "Cancel selected" }).click();
  await page.getByRole("dialog", { name: "Cancel selected" }).getByRole("button", { name: "Cancel 2 runs" }).click();
  await page.getByTestId("bulk-outcome").filter({ hasText: "Cancelled 2 runs." }).waitFor({ timeout: T });
  await until("both runs cancelled in the list", async () => (await page.locator("tbody .badge[data-status='cancelled']").count()) === 2);
  check(true, "bulk cancel: both running runs show cancelled");
  for (const id of longs) check((await api("GET", `v1/runs/${id}`)).status === "cancelled", `run ${id} is cancelled in the API`);
  await shot(page, "runs-bulk-cancelled");
  await page.goto(`${base}#/runs?workflow=flaky`);
  await page.locator(`input[data-run="${flaky}"]`).check();
  await page.getByRole("button", { name: "Retry selected" }).click();
  await page.getByRole("dialog", { name: "Retry selected" }).getByRole("button", { name: "Retry 1 run" }).click();
  await page.getByTestId("bulk-outcome").filter({ hasText: "Retried 1 run." }).waitFor({ timeout: T });
  await until("the retried run to succeed", async () => (await api("GET", `v1/runs/${flaky}`)).status === "succeeded");
  check(true, "bulk retry: the failed run runs again and succeeds");

  // ---- 4. Schedules: create, edit (a bad cron refused next to its field), pause, resume, delete --
  await page.goto(`${base}#/schedules`);
  await page.getByRole("button", { name: "New schedule" }).click();
  const sf = page.getByRole("form", { name: "New schedule" });
  await sf.getByLabel("Id (optional)").fill("op-nightly");
  await sf.getByLabel("Workflow").selectOption("longrun");
  await sf.getByLabel("Cron").fill("0 3 * * *");
  await sf.getByLabel("Time zone (IANA)").fill("Europe/Paris");
  await sf.getByLabel("Input of each run (JSON)").fill('{"ticks": 1, "ms": 10}');
  await sf.getByRole("button", { name: "Create schedule" }).click();
  await page.waitForURL("**/#/schedules/op-nightly", { timeout: T });
  const row = page.locator("tr", { has: page.locator("a[href='#/schedules/op-nightly']") });
  await row.getByText("0 3 * * * (Europe/Paris)").waitFor({ timeout: T });
  check(true, "the new schedule is listed with its cron and zone");
  await page.getByRole("group", { name: "Schedule actions" }).getByRole("button", { name: "Edit" }).click();
  const ef = page.getByRole("form", { name: "Edit schedule op-nightly" });
  await ef.waitFor({ timeout: T });
  check((await ef.getByLabel("Cron").inputValue()) === "0 3 * * *", "the edit form starts with the schedule's values");
  await ef.getByLabel("Cron").fill("61 * * * *");
  await ef.getByRole("button", { name: "Save changes" }).click();
  const cronErr = ef.locator("[data-field='cron'] .field-error");
  await cronErr.waitFor({ timeout: T });
  check(true, `the coordinator refuses the cron next to its field: "${await cronErr.textContent()}"`);
  await shot(page, "schedule-edit-error");
  await ef.getByLabel("Cron").fill("30 4 * * 1-5");
  await ef.getByLabel("When a tick finds the last run unfinished").selectOption("allow_all");
  await ef.getByRole("button", { name: "Save changes" }).click();
  await row.getByText("30 4 * * 1-5 (Europe/Paris)").waitFor({ timeout: T });
  const edited = await api("GET", "v1/schedules/op-nightly");
  check(edited.cron === "30 4 * * 1-5" && edited.overlap === "allow_all" && edited.input.ticks === 1, "the edit replaced cron and overlap, kept the input");
  const actions = page.getByRole("group", { name: "Schedule actions" });
  await actions.getByRole("button", { name: "Pause" }).click();
  await page.getByRole("dialog", { name: "Pause" }).getByRole("button", { name: "Pause" }).click();
  await page.getByTestId("state-op-nightly").filter({ hasText: "paused" }).waitFor({ timeout: T });
  check(true, "pausing shows paused");
  await actions.getByRole("button", { name: "Resume" }).click();
  await page.getByRole("dialog", { name: "Resume" }).getByRole("button", { name: "Resume" }).click();
  await page.getByTestId("state-op-nightly").filter({ hasText: "active" }).waitFor({ timeout: T });
  check(true, "resuming shows active");
  await shot(page, "schedule-edited");
  await actions.getByRole("button", { name: "Delete" }).click();
  await page.getByRole("dialog", { name: "Delete" }).getByRole("button", { name: "Delete the schedule" }).click();
  await page.waitForURL("**/#/schedules", { timeout: T });
  await until("the schedule to leave the list", async () => (await page.locator("a[href='#/schedules/op-nightly']").count()) === 0);
  check(true, "deleting removes the schedule from the list");

  // ---- 5. Delete a workflow version: refused while a run of it is unfinished --------------------
  const doomedRun = (await api("POST", "v1/runs", { workflow: "doomed", version: 1, input: { ticks: 600, ms: 100 } })).run_id;
  await page.goto(`${base}#/workflows/doomed?version=1`);
  await page.getByRole("button", { name: "Delete version 1" }).click();
  const dd = page.getByRole("dialog", { name: "Delete version 1" });
  await dd.getByRole("button", { name: "Delete the version" }).click();
  const refusal = dd.locator(".error");
  await refusal.waitFor({ timeout: T });
  const refusalText = await refusal.textContent();
  check(/FAILED_PRECONDITION: .*has 1 unfinished run/.test(refusalText), `deleting is refused while a run is unfinished: "${refusalText}"`);
  await shot(page, "workflow-delete-refused");
  await dd.getByRole("button", { name: "Keep as is" }).click();
  await api("POST", `v1/runs/${doomedRun}/cancel`, {});
  await page.getByRole("button", { name: "Delete version 1" }).click();
  await dd.getByRole("button", { name: "Delete the version" }).click();
  await page.waitForURL("**/#/workflows/doomed?version=2", { timeout: T });
  await page.getByRole("heading", { name: "doomed v2", exact: true }).waitFor({ timeout: T });
  check((await page.locator("a.ver").allTextContents()).join(",") === "v2", "after the run is cancelled, version 1 is deleted; v2 is left");
  check((await api("GET", `v1/runs/${doomedRun}`)).status === "cancelled", "the finished run of the deleted version keeps its history");

  // ---- 6. Publish an event ----------------------------------------------------------------------
  const waiting = (await api("POST", "v1/runs", { workflow: "waiter", input: { order: "op-7" } })).run_id;
  await until("the run to wait", async () => (await api("GET", `v1/runs/${waiting}`)).steps.some((s) => s.id === "paid" && s.status === "waiting"));
  await page.goto(`${base}#/events`);
  await page.getByLabel("Name").fill("payment");
  await page.getByLabel("Key (optional)").fill("op-7");
  await page.getByLabel("Payload (JSON)").fill('{"amount": 12}');
  await page.getByRole("button", { name: "Publish" }).click();
  await page.getByTestId("publish-answer").getByText("Delivered to 1 waiting step:").waitFor({ timeout: T });
  check((await page.locator(`[data-testid='publish-answer'] a[href^="#/runs/${waiting}"]`).count()) === 1, "publishing delivers the event to the waiting step, linked");
  await until("the waiting run to succeed", async () => (await api("GET", `v1/runs/${waiting}`)).status === "succeeded");
  check(true, "the run that waited for the event succeeds");

  // ---- 7. The inbox's "my tasks" and the workers filter ----------------------------------------
  const task = (await api("POST", "v1/runs", { workflow: "expense", input: { employee: "Ada", amount: 84.5, currency: "EUR", reason: "Taxi from the airport to the client" } })).run_id;
  await page.goto(`${base}#/tasks`);
  await page.getByLabel("I am").fill("managers");
  await page.getByRole("button", { name: "My tasks" }).click();
  await page.locator(`tr:has(a[href="#/runs/${task}"])`).waitFor({ timeout: T });
  check(page.url().includes("assignee=managers"), "My tasks filters the inbox on the user");
  const badge = page.getByTestId("my-task-count");
  await badge.waitFor({ timeout: T });
  check(Number(await badge.textContent()) >= 1, `the inbox link has a count badge (${await badge.textContent()})`);
  check((await page.locator(`tr:has(a[href="#/runs/${task}"]) .badge`).allTextContents()).join() === "open", "the task's status is shown once");
  check((await page.getByLabel("Assignee").locator("option").allTextContents()).includes("managers"), "the assignee filter offers the assignees from a list");
  await shot(page, "inbox-my-tasks");
  await page.goto(`${base}#/workers`);
  await page.getByRole("cell", { name: "op-worker", exact: true }).waitFor({ timeout: T });
  await page.getByLabel("Show").selectOption("stopped");
  await page.getByText("No workers match.").waitFor({ timeout: T });
  check((await page.getByRole("cell", { name: "op-worker", exact: true }).count()) === 0, "the stopped filter hides the live worker");

  // ---- 8. A phone (390 px): nothing overflows, the task screen shows the claim first, the graph scrolls
  phone = await browser.newContext({ viewport: { width: 390, height: 844 }, deviceScaleFactor: 2, isMobile: true, hasTouch: true });
  const p = await phone.newPage();
  p.on("pageerror", (e) => consoleErrors.push(String(e)));
  const overflow = () => p.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
  for (const [name, hash, ready] of [
    ["phone-runs", "#/runs", "[data-testid='run-counts']"],
    ["phone-run", `#/runs/${orderRun}`, "[data-testid='run-status'] .badge"],
    ["phone-schedules", "#/schedules", "h1"],
    ["phone-workers", "#/workers?show=all", "[data-testid='worker-count']"],
    ["phone-inbox", "#/tasks", "[data-testid='task-count']"],
  ]) {
    await p.goto(`${base}${hash}`);
    await p.locator(ready).first().waitFor({ timeout: T });
    await p.waitForTimeout(300);
    check((await overflow()) <= 0, `${hash} does not overflow a 390 px screen (by ${await overflow()} px)`);
    await shot(p, name);
  }
  await p.goto(`${base}#/tasks/${task}/approve`);
  await p.getByTestId("task-found").waitFor({ timeout: T });
  const foundTop = (await p.getByTestId("task-found").boundingBox()).y;
  const formTop = (await p.getByTestId("task-form").boundingBox()).y;
  check(foundTop < formTop, `the task screen shows what is being approved (y ${foundTop}) before the form (y ${formTop})`);
  check((await overflow()) <= 0, "the task screen does not overflow");
  await shot(p, "phone-task");
  await p.goto(`${base}#/workflows/wide`);
  const gs = p.locator(".graph-scroll");
  await gs.waitFor({ timeout: T });
  const g = await gs.evaluate((e) => ({ sw: e.scrollWidth, cw: e.clientWidth, ox: getComputedStyle(e).overflowX }));
  check(g.sw > g.cw && g.ox === "auto", `the wide graph scrolls inside its box (${g.sw} px in ${g.cw} px, overflow-x ${g.ox})`);
  check((await overflow()) <= 0, "the workflow page does not overflow");
  await gs.evaluate((e) => e.scrollBy(120, 0));
  check((await gs.evaluate((e) => e.scrollLeft)) > 0, "the graph scrolls sideways");
  await shot(p, "phone-workflow-graph");

  check(consoleErrors.length === 0, `no errors in the browser console (${consoleErrors.join("; ")})`);
  const expected = new Set(["400 POST /v1/runs", "400 POST /v1/schedules", "400 DELETE /v1/workflows/doomed"]);
  check(
    failedRequests.every((r) => expected.has(r)),
    `the only failed requests are the refusals the test asked for (${failedRequests.join("; ")})`,
  );
  log("all operate scenarios passed");
} catch (e) {
  try {
    await shot(page, "operate-failure");
  } catch {
    /* the page may be gone */
  }
  console.error(`[operate e2e] FAILED at ${page.url()}: ${e.stack ?? e}`);
  if (consoleErrors.length) console.error(`browser console errors: ${consoleErrors.join("\n")}`);
  process.exitCode = 1;
} finally {
  await phone?.close();
  await browser.close();
}
