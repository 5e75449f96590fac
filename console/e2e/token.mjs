// The token prompt, run by tests/tests/console.rs against a coordinator with auth on: the API's
// 401 opens the prompt; a wrong token is asked again; the right one (a viewer's) loads the runs
// and stays in the tab's sessionStorage only.
//
// Environment: CONSOLE_URL, TOKEN (a valid viewer token), SCREENSHOT_DIR, CHROMIUM.
import { join } from "node:path";
import { T, base, launch, reporter, shots } from "./harness.mjs";

const token = process.env.TOKEN ?? "";
if (!token) throw new Error("TOKEN must be set");
const { log, check } = reporter("token");
const { browser, page } = await launch({ viewport: { width: 1280, height: 800 } });
try {
  await page.goto(`${base}#/runs`);
  const prompt = page.getByRole("dialog", { name: "Sign in with a token" });
  await prompt.waitFor({ timeout: T });
  check(true, "without a token, the API's 401 opens the token prompt");
  await page.screenshot({ path: join(shots, "token-prompt.png") });
  log(`screenshot: ${join(shots, "token-prompt.png")}`);

  await prompt.getByLabel("Token").fill("not-a-token-at-all");
  await prompt.getByRole("button", { name: "Use this token" }).click();
  await page.waitForLoadState("load");
  await page.getByRole("dialog", { name: "Sign in with a token" }).waitFor({ timeout: T });
  check(true, "a wrong token is refused and the prompt comes back");

  const again = page.getByRole("dialog", { name: "Sign in with a token" });
  await again.waitFor({ timeout: T });
  await again.getByLabel("Token").fill(token);
  await again.getByRole("button", { name: "Use this token" }).click();
  await page.waitForLoadState("load");
  await page.locator("[data-testid='run-counts']", { hasText: "0 runs on this page" }).waitFor({ timeout: T });
  check((await page.getByRole("dialog", { name: "Sign in with a token" }).count()) === 0, "with the viewer token the runs load and no prompt shows");
  check((await page.locator(".error").count()) === 0, "no error on the page");
  const stored = await page.evaluate(() => [sessionStorage.getItem("baton.token"), localStorage.getItem("baton.token")]);
  check(stored[0] === token && stored[1] === null, "the token is in sessionStorage, not localStorage");

  await page.getByRole("button", { name: "Forget token" }).click();
  await page.getByRole("dialog", { name: "Sign in with a token" }).waitFor({ timeout: T });
  check((await page.evaluate(() => sessionStorage.getItem("baton.token"))) === null, "Forget token drops it, and the prompt comes back");
  log("all token scenarios passed");
} catch (e) {
  await page.screenshot({ path: join(shots, "token-failure.png") }).catch(() => {});
  console.error(`[token e2e] FAILED at ${page.url()}: ${e.stack ?? e}`);
  process.exitCode = 1;
} finally {
  await browser.close();
}
