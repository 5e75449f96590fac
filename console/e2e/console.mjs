// Browser tests of the web console, run by tests/tests/console.rs against a real cluster
// (coordinator with its HTTP API, test workers, Redis, RabbitMQ) with the workflows `expense`,
// `fanout`, `longrun` and `flaky` registered. Drives Debian's Chromium through playwright-core.
//
// Environment: CONSOLE_URL (e.g. http://127.0.0.1:8080/), SCREENSHOT_DIR (created),
// CHROMIUM (default /usr/bin/chromium). Exits 0 when every scenario passed; prints each step.
import { T, api, base, launch, reporter } from "./harness.mjs";

const { log, check, shot } = reporter("console");

const { browser, page, consoleErrors, failedRequests } = await launch({ viewport: { width: 1366, height: 850 } });

try {
  // ---- 1. The expense approval: submit (API) → manager's form (browser) → process --------------
  const submitted = await api("POST", "v1/runs", {
    workflow: "expense",
    input: { employee: "Ada", amount: 84.5, currency: "EUR", reason: "Taxi from the airport to the client" },
  });
  const runId = submitted.run_id;
  log(`submitted expense run ${runId}`);

  await page.goto(`${base}#/tasks?assignee=managers`);
  const taskLink = page.locator(`tr:has(a[href="#/runs/${runId}"]) a`, { hasText: "Approve an expense claim" });
  await taskLink.waitFor({ timeout: T });
  check(true, "the inbox lists the open task of the run for assignee managers");
  await taskLink.click();
  await page.getByRole("heading", { name: "Approve an expense claim" }).waitFor({ timeout: T });
  check(
    (await page.locator("pre[aria-label='Output of submit']").textContent()).includes("Taxi from the airport"),
    "the task screen shows the claim (the output of submit)",
  );
  check(await page.getByText("Check the claim").isVisible(), "the task screen shows the description");

  // Invalid in the page: nothing chosen, a text where a number goes.
  await page.getByLabel("Amount approved").fill("eighty");
  await page.getByLabel("Completing as").fill("mia");
  await page.getByRole("button", { name: "Submit" }).click();
  const approveErr = page.locator("[data-field='approved'] .field-error");
  await approveErr.waitFor({ timeout: T });
  check((await approveErr.textContent()) === "Choose a value.", "page check: the required Approve field says 'Choose a value.'");
  check(
    (await page.locator("[data-field='amount_approved'] .field-error").textContent()) === "Enter a number.",
    "page check: 'eighty' in Amount approved says 'Enter a number.'",
  );
  check((await page.locator("[data-field='category'] .field-error").textContent()) === "Choose a value.", "page check: Category is required");

  // Valid for the page, refused by the coordinator: a rejection with a comment under 10 characters.
  await page.locator("[data-field='approved']").getByLabel("No").check();
  await page.getByLabel("Category").selectOption({ label: "travel" });
  await page.getByLabel("Amount approved").fill("");
  await page.getByLabel("Comment").fill("no");
  await page.getByRole("button", { name: "Submit" }).click();
  const commentErr = page.locator("[data-field='comment'] .field-error");
  await commentErr.waitFor({ timeout: T });
  const commentText = await commentErr.textContent();
  check(/shorter than 10/.test(commentText), `coordinator check: the error next to Comment reads "${commentText}"`);
  check((await page.locator("[data-field='approved'] .field-error").count()) === 0, "the fixed fields show no error any more");
  await shot(page, "task-screen-field-error");

  // Correct: approve 80.
  await page.locator("[data-field='approved']").getByLabel("Yes").check();
  await page.getByLabel("Amount approved").fill("80");
  await page.getByLabel("Comment").fill("Receipt checked");
  check((await page.locator("[data-field='comment'] .field-error").count()) === 0, "editing Comment clears the coordinator's error on it");
  await shot(page, "task-screen");
  await page.getByRole("button", { name: "Submit" }).click();
  await page.waitForURL(`**/#/runs/${runId}`, { timeout: T });
  check(true, "submitting goes to the run page");
  for (const [step, status] of [
    ["submit", "succeeded"],
    ["approve", "succeeded"],
    ["process", "succeeded"],
    ["reject", "skipped"],
  ]) {
    await page.locator(`.graph .node[data-step='${step}'][data-status='${status}']`).waitFor({ timeout: T });
    check(true, `the graph shows step ${step} ${status}`);
  }
  await page.locator("[data-testid='run-status'] .badge[data-status='succeeded']").waitFor({ timeout: T });
  check(true, "the run status turns succeeded");
  const green = await page.locator(".graph .node[data-step='process']").evaluate((e) => getComputedStyle(e).backgroundColor);
  check(green === "rgb(187, 247, 208)", `step process is drawn green (${green})`);
  await page.locator(".graph .node[data-step='approve']").click();
  await page.locator("[data-testid='step-detail']").getByText("Completed by").waitFor({ timeout: T });
  check((await page.locator("[data-testid='step-detail']").textContent()).includes("mia"), "the approve step says who completed it");
  await page.locator(".graph .node[data-step='process']").click();
  const processOut = await page.locator("pre[aria-label='Output of process']").textContent();
  check(processOut.includes('"amount": 80') && processOut.includes('"category": "travel"'), "process got the approved amount and category");
  await shot(page, "run-expense");

  // Rerun from the selected step (process): it runs again, the page follows it live.
  check((await page.locator("[data-testid='step-detail'] tbody tr").count()) === 1, "process has one attempt");
  await page.getByRole("button", { name: "Rerun from a step" }).click();
  const rerun = page.getByRole("dialog", { name: "Rerun from a step" });
  check((await rerun.getByLabel("From step").inputValue()) === "process", "the rerun dialog starts from the selected step");
  await rerun.getByRole("button", { name: "Rerun", exact: true }).click();
  await page.locator("[data-testid='step-detail'] tbody tr:nth-child(2)").waitFor({ timeout: T });
  await page.locator("[data-testid='run-status'] .badge[data-status='succeeded']").waitFor({ timeout: T });
  await page.locator(".graph .node[data-step='process'][data-status='succeeded']").waitFor({ timeout: T });
  check(true, "after the rerun, process shows a second attempt and the run succeeded again");
  check((await page.locator(".graph .node[data-step='submit'][data-status='succeeded']").count()) === 1, "submit kept its result");

  // ---- 2. A fan-out's progress ----------------------------------------------------------------
  const fan = await api("POST", "v1/runs", { workflow: "fanout", input: { items: Array.from({ length: 20 }, (_, i) => ({ n: i, ms: 500 })) } });
  log(`submitted fanout run ${fan.run_id}`);
  await page.goto(`${base}#/runs/${fan.run_id}?step=squares`);
  const fanText = page.locator("[data-testid='fanout']");
  await fanText.waitFor({ timeout: T });
  const seen = new Set();
  const deadline = Date.now() + 60_000;
  let last = "";
  while (Date.now() < deadline) {
    last = (await fanText.textContent()) ?? "";
    seen.add(last);
    if (last.startsWith("20 succeeded")) break;
    await page.waitForTimeout(100);
  }
  log(`fan-out texts seen: ${[...seen].join(" | ")}`);
  check(last === "20 succeeded, 0 failed, 0 in flight, 20 in all", "the fan-out ends with 20 of 20 elements succeeded");
  check(
    [...seen].some((t) => /^(\d+) succeeded/.test(t) && Number(/^(\d+)/.exec(t)[1]) < 20 && /in flight/.test(t)),
    "the fan-out's progress was shown while it ran (fewer than 20 succeeded)",
  );
  await page.locator(".graph .node[data-step='squares'][data-status='succeeded']").waitFor({ timeout: T });
  check((await page.locator("[role=progressbar]").first().getAttribute("aria-valuenow")) === "20", "the progress bar is full");
  await shot(page, "run-fanout");

  // ---- 3. Cancel a running run from its page ---------------------------------------------------
  const long = await api("POST", "v1/runs", { workflow: "longrun", input: { ticks: 600, ms: 100 } });
  log(`submitted longrun run ${long.run_id}`);
  await page.goto(`${base}#/runs/${long.run_id}`);
  await page.locator(".graph .node[data-step='wait'][data-status='running']").waitFor({ timeout: T });
  check(true, "the long step shows running");
  // From here the cancel's answer, GetRun's and a new event stream's arrive 1 s late, as from a
  // loaded coordinator, while the stream already open goes on: the cancel's events come first.
  // What the page shows meanwhile must come from the events it has (a page that dropped them when
  // the answer came showed the run running again; so did a stream replayed from the start).
  const late = new Set(["cancel", "events", ""].map((p) => `/v1/runs/${long.run_id}${p ? `/${p}` : ""}`));
  const isLate = (url) => late.has(url.pathname);
  const slow = async (route) => {
    const answer = await route.fetch();
    await new Promise((r) => setTimeout(r, 1000));
    await route.fulfill({ response: answer });
  };
  await page.route(isLate, slow);
  await page.getByRole("button", { name: "Cancel run" }).click();
  const dialog = page.getByRole("dialog", { name: "Cancel run" });
  await dialog.waitFor({ timeout: T });
  await dialog.getByLabel("Reason (optional)").fill("not needed any more");
  await dialog.getByRole("button", { name: "Cancel the run" }).click();
  await page.locator("[data-testid='run-status'] .badge[data-status='cancelled']").waitFor({ timeout: T });
  check(true, "after confirming, the run shows cancelled");
  await page.locator(".graph .node[data-step='wait']:not([data-status='running'])").waitFor({ timeout: T });
  check(true, `the running step left running (${await page.locator(".graph .node[data-step='wait']").getAttribute("data-status")})`);
  // For 3 s (the late answers and the stream opened again after the action) the page must not go
  // back to the running it showed before.
  const shown = new Set();
  for (const until = Date.now() + 3_000; Date.now() < until; await page.waitForTimeout(50)) {
    const run = await page.locator("[data-testid='run-status'] .badge").getAttribute("data-status");
    const wait = await page.locator(".graph .node[data-step='wait']").getAttribute("data-status");
    shown.add(`run ${run}, wait ${wait}`);
  }
  check(![...shown].some((t) => /running/.test(t)), `the cancelled run stays cancelled (shown: ${[...shown].join(" | ")})`);
  await page.unroute(isLate, slow);
  check((await page.getByRole("button", { name: "Cancel run" }).isDisabled()) === true, "Cancel run is disabled on a finished run");
  await shot(page, "run-cancelled");

  // ---- 3b. Retry a failed run from its page ------------------------------------------------------
  const flaky = await api("POST", "v1/runs", { workflow: "flaky", input: {} });
  log(`submitted flaky run ${flaky.run_id}`);
  await page.goto(`${base}#/runs/${flaky.run_id}?step=charge`);
  await page.locator("[data-testid='run-status'] .badge[data-status='failed']").waitFor({ timeout: T });
  await page.locator("[data-testid='step-detail']").getByText("attempt 1 fails on purpose").first().waitFor({ timeout: T });
  check(true, "the failed run shows its step's error");
  await page.getByRole("button", { name: "Retry run" }).click();
  await page.getByRole("dialog", { name: "Retry run" }).getByRole("button", { name: "Retry run" }).click();
  await page.locator("[data-testid='run-status'] .badge[data-status='succeeded']").waitFor({ timeout: T });
  await page.locator(".graph .node[data-step='charge'][data-status='succeeded']").waitFor({ timeout: T });
  check(true, "after Retry run, the run and its step succeed");

  // ---- 4. The lists -----------------------------------------------------------------------------
  await page.goto(`${base}#/runs`);
  for (const id of [runId, fan.run_id, long.run_id, flaky.run_id]) await page.locator(`a[href="#/runs/${id}"]`).waitFor({ timeout: T });
  check(true, "the runs list shows the four runs");
  await page.getByLabel("Status").selectOption("cancelled");
  await page.locator("[data-testid='run-counts']", { hasText: "1 run on this page" }).waitFor({ timeout: T });
  check(
    (await page.locator(`a[href="#/runs/${long.run_id}"]`).count()) === 1 && (await page.locator("tbody tr").count()) === 1,
    "filtering by status cancelled lists only the cancelled run",
  );
  check(page.url().includes("status=cancelled"), "the filter is in the URL (a deep link)");
  await shot(page, "runs");
  // Keyboard: the first Tab reaches the skip link, drawn with a visible focus ring; the next ones
  // walk the navigation links.
  await page.reload();
  await page.locator("[data-testid='run-counts']", { hasText: "run" }).waitFor({ timeout: T });
  await page.keyboard.press("Tab");
  const focus1 = await page.evaluate(() => [document.activeElement?.textContent, getComputedStyle(document.activeElement).outlineStyle]);
  check(focus1[0] === "Skip to content" && focus1[1] === "solid", `Tab reaches the skip link with a focus ring (${focus1})`);
  await page.keyboard.press("Tab");
  await page.keyboard.press("Tab");
  const focus2 = await page.evaluate(() => document.activeElement?.textContent);
  check(focus2 === "Runs", `the next Tabs walk the navigation (${focus2})`);
  await page.goto(`${base}#/workflows/expense`);
  await page.locator(".graph .node[data-step='approve']").waitFor({ timeout: T });
  check((await page.locator(".graph .node").count()) === 4, "the expense definition's graph has its 4 steps");
  await shot(page, "workflow-expense");

  // ---- 5. A schedule's ledger: trigger it from its page ---------------------------------------
  await api("POST", "v1/schedules", { id: "console-nightly", workflow: "longrun", cron: "0 3 * * *", input: { ticks: 1, ms: 10 } });
  await page.goto(`${base}#/schedules/console-nightly`);
  await page.getByRole("heading", { name: "Ticks of console-nightly" }).waitFor({ timeout: T });
  await page.getByText("No ticks yet.").waitFor({ timeout: T });
  await page.getByRole("group", { name: "Schedule actions" }).getByRole("button", { name: "Trigger now" }).click();
  const trig = page.getByRole("dialog", { name: "Trigger now" });
  await trig.getByRole("button", { name: "Trigger now" }).click();
  const tickRow = page.locator("tr", { hasText: "triggered" });
  await tickRow.waitFor({ timeout: T });
  check((await tickRow.locator("a[href^='#/runs/']").count()) === 1, "triggering adds a 'triggered' tick with a link to its run");
  await shot(page, "schedules");

  await page.goto(`${base}#/workers`);
  await page.getByRole("cell", { name: "console-worker", exact: true }).waitFor({ timeout: T });
  check(true, "the workers page lists the test worker");
  check(consoleErrors.length === 0, `no errors in the browser console (${consoleErrors.join("; ")})`);
  const expected = `400 POST /v1/tasks/${runId}/approve/complete`;
  check(
    failedRequests.length === 1 && failedRequests[0] === expected,
    `the only failed request is the refused form (${failedRequests.join("; ")})`,
  );
  log("all console scenarios passed");
} catch (e) {
  try {
    await shot(page, "failure");
  } catch {
    /* the page may be gone */
  }
  console.error(`[console e2e] FAILED at ${page.url()}: ${e.stack ?? e}`);
  if (consoleErrors.length) console.error(`browser console errors: ${consoleErrors.join("\n")}`);
  process.exitCode = 1;
} finally {
  await browser.close();
}
