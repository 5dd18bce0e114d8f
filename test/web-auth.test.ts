/**
 * The dashboard with authentication on: the page asks for a token when the API
 * answers UNAUTHENTICATED, keeps it in the tab's session storage and sends it
 * as a bearer header on its Connect calls (real Chromium via playwright-core).
 */
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import test from "ava";
import { chromium } from "playwright-core";
import { CrmsClient } from "../clients/typescript/src/client.js";
import { startHttp } from "../src/web/http.js";
import { TestCluster } from "./helpers/cluster.js";

const CHROMIUM = "/usr/bin/chromium";

test("the page asks for a token, stores it for the session and works with it", async (t) => {
  if (!existsSync(CHROMIUM)) return t.fail(`${CHROMIUM} is missing: apt-get install chromium`);
  const dir = mkdtempSync(join(tmpdir(), "crms-web-auth-"));
  const tokenFile = join(dir, "admin.token");
  const cluster = await TestCluster.start({ adminTokenFile: tokenFile });
  const http = await startHttp(cluster.server, "127.0.0.1:0");
  const context = await chromium.launchPersistentContext(join(dir, "chromium"), {
    executablePath: CHROMIUM,
    headless: true,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"],
  });
  t.teardown(async () => {
    await context.close();
    await http.close();
    await cluster.stop();
    rmSync(dir, { recursive: true, force: true });
  });
  const admin = new CrmsClient(cluster.address, undefined, {
    authorization: `Bearer ${readFileSync(tokenFile, "utf8").trim()}`,
  });
  t.teardown(() => admin.close());
  const reader = (await admin.createToken("webreader", "reader")).secret;

  const page = await context.newPage();
  const prompts: string[] = [];
  page.on("dialog", (d) => {
    prompts.push(d.message());
    void d.accept(reader);
  });
  await page.goto(http.url);
  await page.locator("#conn.ok").waitFor({ timeout: 30_000 });
  t.true(prompts.length >= 1, "the page asked for a token");
  t.regex(prompts[0] ?? "", /needs an API token/);
  t.is(await page.evaluate('sessionStorage.getItem("crms.token")'), reader);
  // The stored token goes with every call: the overview shows cluster figures.
  await page.getByText(/quota/).first().waitFor({ timeout: 15_000 });
});
