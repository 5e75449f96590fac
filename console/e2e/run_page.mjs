// Browser test of a run's page (issue 19), run by tests/tests/console.rs against a real cluster
// with the workflows `longerrors` and `fanout18` registered. Drives Debian's Chromium through
// playwright-core.
//
// 1. At 1400 px (and on a 390 px phone), a step whose attempts failed with long errors keeps its
//    attempts table inside the step card and the page: no horizontal overflow.
// 2. A fan-out node never shows an event's status beside the counts of an older fetch
//    ("succeeded · 9/18 items" after the join ran): the page is served a GetRun answer taken while
//    the fan-out ran, while the event stream says it succeeded.
//
// Environment: CONSOLE_URL (e.g. http://127.0.0.1:8080/), SCREENSHOT_DIR (created),
// CHROMIUM (default /usr/bin/chromium). Exits 0 when every scenario passed; prints each step.
import { T, apiText as api, base, launch, reporter, waitRun, word } from "./harness.mjs";

const { log, check, shot } = reporter("run page");

/** How far the page, the step card and the attempts table reach past where they should end (px). */
async function overflow(page) {
  return page.evaluate(() => {
    const card = document.querySelector(".detail");
    const table = document.querySelector("[data-testid='step-detail'] table.attempts");
    const scroller = table?.closest(".table-scroll") ?? table;
    const cardBox = card.getBoundingClientRect();
    const boxOf = (e) => e.getBoundingClientRect();
    return {
      page: document.documentElement.scrollWidth - window.innerWidth,
      card: card.scrollWidth - card.clientWidth,
      table: scroller ? boxOf(scroller).right - cardBox.right : NaN,
      tableWidth: table ? boxOf(table).width : NaN,
      cardWidth: cardBox.width,
    };
  });
}

const { browser, page, consoleErrors } = await launch({ viewport: { width: 1400, height: 900 } });

try {
  // ---- 1. Long attempt errors stay in their card ------------------------------------------------
  const { json: sub } = await api("POST", "v1/runs", { workflow: "longerrors", input: {} });
  const longId = sub.run_id;
  log(`submitted longerrors run ${longId}`);
  await waitRun(longId, "success", (r) => word(r.status) === "succeeded");
  await page.goto(`${base}#/runs/${longId}?step=charge`);
  const rows = page.locator("[data-testid='step-detail'] table.attempts tbody tr");
  await rows.nth(2).waitFor({ timeout: T });
  check((await rows.count()) === 3, "the step shows its three attempts");
  check(
    (await rows.nth(0).textContent()).includes("attempt 1 fails on purposeéé"),
    "the first attempt's long error is shown",
  );
  let o = await overflow(page);
  log(`at 1400 px: ${JSON.stringify(o)}`);
  check(o.page <= 0, `the page does not scroll sideways at 1400 px (over by ${o.page} px)`);
  check(o.card <= 0 && o.table <= 1, `the attempts table stays inside the step card at 1400 px (card ${o.card}, table ${o.table})`);
  check(o.tableWidth <= o.cardWidth, `the table is no wider than its card (${o.tableWidth} <= ${o.cardWidth})`);
  await shot(page, "run-long-errors");

  await page.setViewportSize({ width: 390, height: 844 });
  await page.waitForTimeout(200);
  o = await overflow(page);
  log(`at 390 px: ${JSON.stringify(o)}`);
  check(o.card <= 0 && o.table <= 1, `on a 390 px phone the attempts table stays inside the step card (card ${o.card}, table ${o.table})`);
  await shot(page, "run-long-errors-phone");
  await page.setViewportSize({ width: 1400, height: 900 });

  // ---- 2. One source per graph node -----------------------------------------------------------
  const items = Array.from({ length: 18 }, (_, i) => ({ n: i, ms: 300 }));
  const { json: fan } = await api("POST", "v1/runs", { workflow: "fanout18", input: { items } });
  const fanId = fan.run_id;
  log(`submitted fanout18 run ${fanId}`);
  const squaresOf = (r) => r.steps.find((s) => s.id === "squares");
  const { text: stale, run: staleRun } = await waitRun(fanId, "a fan-out part done", (r) => {
    const s = squaresOf(r);
    return word(s?.status) === "running" && s.items && s.items.succeeded >= 2 && s.items.succeeded < 18;
  });
  const staleItems = squaresOf(staleRun).items;
  log(`kept a GetRun answer with squares running, ${staleItems.succeeded}/${staleItems.total} done`);
  await waitRun(fanId, "success", (r) => word(r.status) === "succeeded");

  // The page gets the old answer from GetRun; its event stream (history, then live) is real.
  const runUrl = new URL(`v1/runs/${fanId}`, base).href;
  await page.route(runUrl, (route) => route.fulfill({ status: 200, contentType: "application/json", body: stale }));
  await page.goto(`${base}#/runs/${fanId}`);
  const node = page.locator(".graph .node[data-step='squares']");
  await page.locator(".graph .node[data-step='squares'][data-status='succeeded']").waitFor({ timeout: T });
  await page.locator(".graph .node[data-step='total'][data-status='succeeded']").waitFor({ timeout: T });
  await page.waitForTimeout(1000);
  const text = (await node.textContent()) ?? "";
  log(`squares node with an old GetRun answer and the live events: "${text}"`);
  check(!/\d+\/18 items/.test(text) || text.includes("18/18 items"), `no succeeded node beside old counts ("${text}")`);
  check(text.includes("succeeded"), "the node shows the status of the events");
  await shot(page, "run-fanout-stale-fetch");

  await page.unroute(runUrl);
  await page.reload();
  await page.locator(".graph .node[data-step='squares'][data-status='succeeded']", { hasText: "18/18 items" }).waitFor({ timeout: T });
  check(true, "with a current GetRun answer the node reads succeeded · 18/18 items");

  check(consoleErrors.length === 0, `no errors in the browser console (${consoleErrors.join("; ")})`);
  log("all run page scenarios passed");
} catch (e) {
  try {
    await shot(page, "run-page-failure");
  } catch {
    /* the page may be gone */
  }
  console.error(`[run page e2e] FAILED at ${page.url()}: ${e.stack ?? e}`);
  if (consoleErrors.length) console.error(`browser console errors: ${consoleErrors.join("\n")}`);
  process.exitCode = 1;
} finally {
  await browser.close();
}
