// Browser test of run search (issue 20), run by tests/tests/console.rs against a coordinator with
// the archive on, once its runs are archived in PostgreSQL: the runs page's filter (the search
// language, kept in the URL) lists the matching runs and counts their statuses over every matching
// run, not the page; a filter that does not parse shows the coordinator's error naming `query`
// and the column; an archived run's page opens from the list.
//
// Environment: CONSOLE_URL, SCREENSHOT_DIR, CHROMIUM (see harness.mjs), RUNS: the JSON object
// the test made, {"c42_ok": [ids], "c42_failed": [ids], "c7_ok": [ids]}.
import { T, base, launch, reporter } from "./harness.mjs";

const { log, check, shot } = reporter("search");
const made = JSON.parse(process.env.RUNS ?? "{}");
if (!made.c42_ok || !made.c42_failed || !made.c7_ok) throw new Error("RUNS is not set");

const { browser, page, consoleErrors, failedRequests } = await launch({ viewport: { width: 1366, height: 850 } });

/** The run ids listed on the page now, sorted. */
async function listed() {
  const ids = await page.locator("tbody a.mono").allTextContents();
  return ids.map((s) => s.trim()).sort();
}

async function filter(text) {
  await page.getByLabel("Filter", { exact: true }).fill(text);
  await page.getByRole("button", { name: "Filter", exact: true }).click();
}

try {
  await page.goto(`${base}#/runs?children=1`);
  await page.locator("[data-testid='run-counts']", { hasText: "matching" }).waitFor({ timeout: T });

  // 1. A field of the input: the customer's runs, both workflows, both outcomes.
  await filter('input.customer = "c-42"');
  const c42 = [...made.c42_ok, ...made.c42_failed].sort();
  await page.locator("[data-testid='run-counts']", { hasText: `${c42.length} matching` }).waitFor({ timeout: T });
  check(JSON.stringify(await listed()) === JSON.stringify(c42), `the filter lists the ${c42.length} runs of customer c-42`);
  check(new URL(page.url()).hash.includes("query="), "the filter is kept in the URL");
  const counts = (await page.locator("[data-testid='run-counts']").textContent()).replace(/\s+/g, " ");
  check(counts.includes(`succeeded ${made.c42_ok.length}`) && counts.includes(`failed ${made.c42_failed.length}`), `counts by status over the matching runs (${counts})`);
  await shot(page, "search-input-field");

  // 2. AND with a status; and the page is smaller than the count: the counts are over every match.
  await filter('input.customer = "c-42" AND status = "failed"');
  await page.locator("[data-testid='run-counts']", { hasText: `${made.c42_failed.length} matching` }).waitFor({ timeout: T });
  check(JSON.stringify(await listed()) === JSON.stringify([...made.c42_failed].sort()), "AND narrows to the failed ones");
  await filter('NOT (input.customer = "c-42") AND workflow = "search-ok"');
  await page.locator("[data-testid='run-counts']", { hasText: `${made.c7_ok.length} matching` }).waitFor({ timeout: T });
  check(JSON.stringify(await listed()) === JSON.stringify([...made.c7_ok].sort()), "NOT and parentheses");

  // 3. A filter that does not parse: the coordinator's error, naming the field and the column.
  await filter('status = ');
  const err = page.locator("p.error[role='alert']");
  await err.waitFor({ timeout: T });
  const text = await err.textContent();
  check(/query: column \d+/.test(text), `the error names query and the column (${text})`);
  await shot(page, "search-error");

  // 4. An archived run's page, from the list.
  await page.getByRole("button", { name: "Clear filter" }).click();
  await filter(`id = "${made.c42_failed[0]}"`);
  await page.locator("[data-testid='run-counts']", { hasText: "1 matching" }).waitFor({ timeout: T });
  await page.locator(`tbody a[href="#/runs/${made.c42_failed[0]}"]`).click();
  await page.locator("[data-testid='run-status'] .badge", { hasText: "failed" }).waitFor({ timeout: T });
  check(true, "the archived run's page shows it failed");
  await shot(page, "search-archived-run");

  check(consoleErrors.length === 0, `no errors in the browser console (${consoleErrors.join("; ")})`);
  check(
    failedRequests.every((r) => r.startsWith("400 GET /v1/runs")),
    `the only failed requests are the refused filter (${failedRequests.join("; ")})`,
  );
  log("all search scenarios passed");
} catch (e) {
  await shot(page, "search-failure").catch(() => {});
  if (consoleErrors.length) console.error(`browser console errors: ${consoleErrors.join("\n")}`);
  throw e;
} finally {
  await browser.close();
}
