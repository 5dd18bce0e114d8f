/**
 * The dashboard against a live cluster: real etcd, control plane, `crms worker`
 * process, the HTTP endpoint on port 0, and Debian's Chromium driven by
 * playwright-core. Screenshots of each view go to test-results/screenshots/.
 */
import { execFile } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { request } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import anyTest, { type TestFn } from "ava";
import { type Browser, type BrowserContext, chromium, type Page } from "playwright-core";
import type { CrmsClient } from "../clients/typescript/src/client.js";
import { JobState, OutputStream } from "../gen/crms/v1/job_pb.js";
import { QueueService } from "../gen/crms/v1/queue_pb.js";
import type { HttpEndpoint } from "../src/web/http.js";
import { startHttp } from "../src/web/http.js";
import { CREDENTIAL_NAME } from "../src/worker/runner.js";
import { CRMS_BIN, TestCluster } from "./helpers/cluster.js";

const CHROMIUM = "/usr/bin/chromium";
const run = promisify(execFile);
const SHOTS = join(process.cwd(), "test-results", "screenshots");

interface Context {
  cluster: TestCluster;
  http: HttpEndpoint;
  browser: Browser;
  context: BrowserContext;
  userDataDir: string;
  /** Watch listeners on the caches before any page opened. */
  baseline: { jobs: number; workers: number };
}

const test = anyTest as TestFn<Context>;
test.before(async (t) => {
  if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: apt-get install chromium`);
  const cluster = await TestCluster.start();
  await cluster.startWorker("web-alpha", 3, { zone: "a" });
  const { store } = cluster.server;
  const http = await startHttp(cluster.server, "127.0.0.1:0");
  // After the endpoint started: its activity ring (the overview chart) listens from the start.
  const baseline = { jobs: store.jobs.listenerCount("put"), workers: store.workers.listenerCount("put") };
  const userDataDir = mkdtempSync(join(tmpdir(), "crms-chromium-"));
  // A persistent context is how playwright takes a fresh user data dir of our own.
  const context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: CHROMIUM,
    headless: true,
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-background-networking",
      "--disable-component-update",
      "--no-first-run",
    ],
    viewport: { width: 1280, height: 900 },
  });
  const browser = context.browser() as Browser;
  mkdirSync(SHOTS, { recursive: true });
  t.context = { cluster, http, browser, context, userDataDir, baseline };
});

test.after.always(async (t) => {
  const { context, http, cluster, userDataDir } = t.context ?? {};
  await context?.close();
  await http?.close();
  await cluster?.stop();
  if (userDataDir) rmSync(userDataDir, { recursive: true, force: true });
});

/** A fresh tab that fails the test on any page error and accepts confirm() dialogs. */
async function open(t: { context: Context }, hash: string, width = 1280): Promise<{ page: Page; errors: string[] }> {
  const page = await t.context.context.newPage();
  await page.setViewportSize({ width, height: 900 });
  const errors: string[] = [];
  page.on("pageerror", (err) => errors.push(String(err)));
  page.on("console", (msg) => {
    if (msg.type() === "error") errors.push(msg.text());
  });
  page.on("dialog", (d) => void d.accept());
  await page.goto(`${t.context.http.url}${hash}`);
  return { page, errors };
}

const shot = (page: Page, name: string) => page.screenshot({ path: join(SHOTS, `${name}.png`), fullPage: true });

test.serial("the page loads against the live cluster and shows the worker", async (t) => {
  const { page, errors } = await open(t, "#/");
  await page.getByRole("heading", { level: 1, name: "Overview" }).waitFor();
  await page.locator("#conn.ok").waitFor({ timeout: 15_000 });
  // Workers card: one up.
  await page.locator(".stat", { hasText: "Up" }).locator("dd", { hasText: /^1/ }).waitFor();
  await page.getByText(/of 3 used/).waitFor();
  await page.getByText(/quota/).first().waitFor();
  await shot(page, "overview");

  await page.getByRole("link", { name: "Workers", exact: true }).click();
  await page.getByRole("heading", { level: 1, name: "Workers" }).waitFor();
  const row = page.locator("tr[data-name='web-alpha']");
  await row.waitFor();
  t.regex((await row.textContent()) ?? "", /UP/);
  t.regex((await row.textContent()) ?? "", /zone=a/);
  t.regex((await row.textContent()) ?? "", /0 \/ 3/);
  await shot(page, "workers");

  // The same page at phone width reads without a horizontal page scroll.
  await page.setViewportSize({ width: 390, height: 844 });
  await page.goto(`${t.context.http.url}#/`);
  await page.locator("#conn.ok").waitFor();
  await page.getByText(/of 3 used/).waitFor();
  const overflow = await page.evaluate<number>("document.documentElement.scrollWidth - window.innerWidth");
  t.true(overflow <= 0, `page is ${overflow}px wider than a phone`);
  await shot(page, "overview-phone");
  t.deepEqual(errors, []);
  await page.close();
});

test.serial("a job submitted from the form turns SUCCEEDED and its output shows", async (t) => {
  const { page, errors } = await open(t, "#/submit");
  await page.getByRole("heading", { level: 1, name: "Submit a job" }).waitFor();
  await page.locator("#conn.ok").waitFor();
  await page.getByLabel("Command", { exact: true }).fill("echo hello from the web; echo oops >&2");
  await page.getByLabel("Name", { exact: true }).fill("web greeting");
  await page.getByText("More options").click();
  await page.getByLabel("Labels", { exact: true }).fill("team=web");
  await shot(page, "submit");
  await page.getByRole("button", { name: "Submit job" }).click();

  await page.waitForURL(/#\/jobs\/\d+$/);
  const id = page.url().split("/").at(-1) as string;
  await page.locator(".subtitle .badge", { hasText: "SUCCEEDED" }).waitFor({ timeout: 20_000 });
  const output = page.getByLabel(`Output of job ${id}`);
  await output.getByText("hello from the web").waitFor();
  await output.locator(".stderr", { hasText: "oops" }).waitFor();
  await page.getByText(/output complete/i).waitFor();
  t.is(t.context.cluster.server.store.job(id)?.state, JobState.SUCCEEDED);
  t.regex((await page.locator(".job-details").textContent()) ?? "", /team=web/);
  await shot(page, "job");
  await page.setViewportSize({ width: 390, height: 844 });
  t.true((await page.evaluate<number>("document.documentElement.scrollWidth - window.innerWidth")) <= 0);
  await shot(page, "job-phone");
  await page.setViewportSize({ width: 1280, height: 900 });

  // The jobs list finds it by name, with its state.
  await page.goto(`${t.context.http.url}#/jobs?q=greeting`);
  const row = page.locator(`tr[data-id='${id}']`);
  await row.waitFor();
  t.regex((await row.textContent()) ?? "", /SUCCEEDED/);
  await page.goto(`${t.context.http.url}#/jobs`);
  await page.locator(`tr[data-id='${id}']`).waitFor();
  await shot(page, "jobs");
  t.deepEqual(errors, []);
  await page.close();
});

/** Waits for the job page's RUNNING badge; on a timeout, says what the server and the page showed. */
async function runningBadge(page: Page, c: CrmsClient, id: string): Promise<void> {
  try {
    await page.locator(".subtitle .badge", { hasText: "RUNNING" }).waitFor({ timeout: 20_000 });
  } catch (err) {
    const job = await c.getJob(id);
    const badge = await page.locator(".subtitle .badge").allTextContents();
    throw new Error(
      `${(err as Error).message.split("\n")[0]}; the server has job ${id} ${JobState[job.state]} on ${job.worker || "no worker"} (${job.pendingReason || job.error || "-"}); the page shows ${JSON.stringify(badge)}`,
    );
  }
}

test.serial("a running sleep 60 is killed from the page and turns KILLED", async (t) => {
  const { cluster } = t.context;
  const c = cluster.client();
  const job = await c.submit({ command: ["sleep", "60"], name: "long nap" });
  const { page, errors } = await open(t, `#/jobs/${job.id}`);
  await runningBadge(page, c, job.id);
  await page.getByText("Following live output…").waitFor();
  await shot(page, "job-running");
  await page.getByRole("button", { name: "Kill" }).click();
  await page.locator(".subtitle .badge", { hasText: "KILLED" }).waitFor({ timeout: 15_000 });
  t.is(cluster.server.store.job(job.id)?.state, JobState.KILLED);
  // Kill is no longer offered; Delete is.
  t.true(await page.getByRole("button", { name: "Kill" }).isDisabled());
  t.false(await page.getByRole("button", { name: "Delete" }).isDisabled());
  t.deepEqual(errors, []);
  await page.close();
});

test.serial(
  "the output search shows only matching lines, marked, and Download saves the whole output as job-ID.log (past the screen's cut too)",
  async (t) => {
    const { cluster } = t.context;
    const c = cluster.client();
    const job = await c.submit({
      command: ["sh", "-c", "printf 'alpha one\\nbeta two\\nthe Alpha three\\n'; sleep 0.2; echo ALPHA on stderr >&2"],
      name: "searchable",
    });
    const { page, errors } = await open(t, `#/jobs/${job.id}`);
    await page.getByText(/output complete/i).waitFor({ timeout: 20_000 });
    const output = page.getByLabel(`Output of job ${job.id}`, { exact: true });
    await output.locator(".stderr", { hasText: "ALPHA on stderr" }).waitFor();

    await page.getByLabel("Search the output").fill("alpha");
    const matches = page.getByLabel(`Output lines of job ${job.id} that match the search`);
    await page.getByText("3 matching lines").waitFor();
    t.true(await output.isHidden());
    t.deepEqual(
      (await matches.locator(".line").allTextContents()).map((l) => l.trim()),
      ["alpha one", "the Alpha three", "ALPHA on stderr"],
    );
    t.deepEqual(await matches.locator("mark").allTextContents(), ["alpha", "Alpha", "ALPHA"]);
    await matches.locator(".stderr mark", { hasText: "ALPHA" }).waitFor();
    await page.getByLabel("Search the output").fill("nothing like this");
    await page.getByText("0 matching lines").waitFor();
    await page.getByLabel("Search the output").fill("");
    await output.waitFor({ state: "visible" });
    t.true(await matches.isHidden());

    const [download] = await Promise.all([
      page.waitForEvent("download"),
      page.getByRole("link", { name: "Download" }).click(),
    ]);
    t.is(download.suggestedFilename(), `job-${job.id}.log`);
    const path = await download.path();
    t.is(readFileSync(path, "utf8"), "alpha one\nbeta two\nthe Alpha three\nALPHA on stderr\n");
    t.deepEqual(errors, []);
    await page.close();

    // Past what the screen keeps (1,000,000 characters), Download reads the whole output again.
    const big = await c.submit({ command: ["seq", "1", "200000"], name: "big output" });
    const second = await open(t, `#/jobs/${big.id}`);
    await second.page.getByText(/output complete/i).waitFor({ timeout: 20_000 });
    await second.page.getByText("[earlier output not shown]").waitFor();
    const [full] = await Promise.all([
      second.page.waitForEvent("download"),
      second.page.getByRole("link", { name: "Download" }).click(),
    ]);
    t.is(full.suggestedFilename(), `job-${big.id}.log`);
    const expected = `${Array.from({ length: 200000 }, (_, i) => i + 1).join("\n")}\n`;
    t.true(readFileSync(await full.path(), "utf8") === expected, "the downloaded file is seq 1 200000 in full");
    t.deepEqual(second.errors, []);
    await second.page.close();
  },
);

test.serial(
  "a finished job's output streams, and shows, stdout and stderr interleaved in the order written",
  async (t) => {
    const c = t.context.cluster.client();
    // Each write waits until the one before reached its file in the run directory (the job's cwd):
    // the run shim keeps the order it read in.
    const job = await c.submit({
      command: [
        "sh",
        "-c",
        "w() { while [ $(cat stdout stderr | wc -c) -lt $1 ]; do sleep 0.01; done; }; echo a; w 2; echo b >&2; w 4; echo c; w 6; echo d >&2",
      ],
      name: "interleaved",
    });
    t.is((await c.wait(job.id)).state, JobState.SUCCEEDED);
    const chunks: [OutputStream, string, bigint][] = [];
    for await (const ch of c.output(job.id)) chunks.push([ch.stream, Buffer.from(ch.data).toString(), ch.offset]);
    const { STDOUT, STDERR } = OutputStream;
    t.deepEqual(chunks, [
      [STDOUT, "a\n", 0n],
      [STDERR, "b\n", 0n],
      [STDOUT, "c\n", 2n],
      [STDERR, "d\n", 2n],
    ]);
    const { page, errors } = await open(t, `#/jobs/${job.id}`);
    await page.getByText("Output complete.").waitFor({ timeout: 20_000 });
    const parts = page.getByLabel(`Output of job ${job.id}`, { exact: true }).locator("span");
    t.deepEqual(await parts.evaluateAll((spans) => spans.map((s) => `${s.className}:${s.textContent}`)), [
      "stdout:a\n",
      "stderr:b\n",
      "stdout:c\n",
      "stderr:d\n",
    ]);
    t.deepEqual(errors, []);
    await page.close();
  },
);

test.serial("killing a job from its page keeps the scroll position of the page and of its output", async (t) => {
  const { cluster } = t.context;
  const c = cluster.client();
  const job = await c.submit({ command: ["sh", "-c", "seq 1 300; exec sleep 60"], name: "scrolled" });
  const { page, errors } = await open(t, `#/jobs/${job.id}`);
  await page.setViewportSize({ width: 1280, height: 500 });
  await runningBadge(page, c, job.id);
  await page.getByLabel(`Output of job ${job.id}`, { exact: true }).getByText("300").waitFor();
  await page.evaluate("window.scrollTo(0, document.documentElement.scrollHeight)");
  const before = await page.evaluate<number>("window.scrollY");
  t.true(before > 200, `page scrolled only ${before}px`);
  // The output scrolled back to somewhere in the middle, as someone reading it would.
  const pre = page.getByLabel(`Output of job ${job.id}`, { exact: true });
  await pre.evaluate((el) => {
    el.scrollTop = 1000;
  });
  const preBefore = await pre.evaluate((el) => el.scrollTop);
  t.true(preBefore > 500, `output scrolled only ${preBefore}px`);
  // Clicked where it is, as a keyboard user would (playwright's click would scroll it into view).
  await page.getByRole("button", { name: "Kill", exact: true }).dispatchEvent("click");
  await page.locator(".subtitle .badge", { hasText: "KILLED" }).waitFor({ timeout: 15_000 });
  await page.getByText(/Kill job \d+: done/).waitFor();
  await page.getByText(/output complete/i).waitFor();
  await page.evaluate("new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)))");
  t.is(await page.evaluate<number>("window.scrollY"), before);
  t.is(await pre.evaluate((el) => el.scrollTop), preBefore);
  t.deepEqual(errors, []);
  await page.close();
});

test.serial("the jobs list pages with ListJobs tokens and filters by state and label", async (t) => {
  const c = t.context.cluster.client();
  const ids: string[] = [];
  for (let i = 0; i < 30; i++)
    ids.push(
      (await c.submit({ command: ["echo", String(i)], name: `batch ${i}`, hold: true, labels: { batch: "pg" } })).id,
    );
  // An overview tab stays open meanwhile: its chart counts the jobs that run.
  const overview = await open(t, "#/");
  await overview.page.locator("#conn.ok").waitFor();
  const { page, errors } = await open(t, "#/jobs?state=HELD&label=batch%3Dpg&size=25");
  // Newest first, with the total for the filter.
  await page.getByText("Showing 25 of 30 jobs on page 1; more on the next page.").waitFor();
  t.is(await page.locator("tbody tr").count(), 25);
  t.is(await page.locator("tbody tr").first().getAttribute("data-id"), ids[29] as string);
  t.is(await page.locator("#f-state-summary").textContent(), "HELD");
  await shot(page, "jobs");
  const rowIds = () => page.locator("tbody tr").evaluateAll((rows) => rows.map((r) => r.getAttribute("data-id")));
  await page.getByRole("link", { name: "Next page" }).click();
  await page.getByText("Showing 5 of 30 jobs on page 2.").waitFor();
  t.deepEqual(await rowIds(), ids.slice(0, 5).reverse());
  await page.getByRole("link", { name: "Previous" }).click();
  await page.getByText("Showing 25 of 30 jobs on page 1; more on the next page.").waitFor();
  // Last page straight from the first (by offset), then First page back.
  await page.getByRole("link", { name: "Last page" }).click();
  await page.getByText("Showing 5 of 30 jobs on page 2.").waitFor();
  t.deepEqual(await rowIds(), ids.slice(0, 5).reverse());
  await page.getByRole("link", { name: "First page" }).click();
  await page.getByText("Showing 25 of 30 jobs on page 1; more on the next page.").waitFor();
  // A column header sorts by its column: by name ("batch 0", "batch 1", "batch 10", ...), again for descending.
  await page.getByRole("link", { name: "Name", exact: true }).click();
  await page.locator("th[aria-sort='ascending']", { hasText: "Name" }).waitFor();
  await page.getByText("Showing 25 of 30 jobs on page 1; more on the next page.").waitFor();
  t.deepEqual((await rowIds()).slice(0, 3), [ids[0], ids[1], ids[10]]);
  await page.getByRole("link", { name: "Name ▲" }).click();
  await page.locator("th[aria-sort='descending']", { hasText: "Name" }).waitFor();
  await page.getByText("Showing 25 of 30 jobs on page 1; more on the next page.").waitFor();
  t.deepEqual((await rowIds()).slice(0, 2), [ids[9], ids[8]]);
  await page.goto(`${t.context.http.url}#/jobs?state=HELD&label=batch%3Dpg&size=25`);
  await page.getByText("Showing 25 of 30 jobs on page 1; more on the next page.").waitFor();
  // A row on screen follows the watch: release a job elsewhere, and its row leaves HELD.
  await c.release(ids[29] as string);
  await page.locator(`tr[data-id='${ids[29]}'] .badge`, { hasNotText: "HELD" }).waitFor({ timeout: 15_000 });
  // Search by id goes straight to the job.
  await page.getByLabel("Search").fill(ids[3] as string);
  await page.locator("#f-state summary").click();
  await page.getByRole("checkbox", { name: "HELD" }).uncheck();
  await page.getByText(`Job ${ids[3]} found by id.`, { exact: false }).waitFor();
  t.is(await page.locator("tbody tr").count(), 1);
  await page.setViewportSize({ width: 390, height: 844 });
  await page.goto(`${t.context.http.url}#/jobs?label=batch%3Dpg`);
  await page.locator("tbody tr").first().waitFor();
  t.true((await page.evaluate<number>("document.documentElement.scrollWidth - window.innerWidth")) <= 0);
  await shot(page, "jobs-phone");
  for (const id of ids.slice(0, 29)) await c.release(id);
  await t.context.cluster.waitFor(
    () => ids.every((id) => t.context.cluster.server.store.job(id)?.state === JobState.SUCCEEDED),
    20_000,
    "released jobs to succeed",
  );
  await overview.page
    .locator(".state-counts a", { hasText: "SUCCEEDED" })
    .getByText(/^3[0-9]$/)
    .waitFor();
  await overview.page.waitForTimeout(1500);
  await shot(overview.page, "overview-live");
  t.deepEqual(errors, []);
  t.deepEqual(overview.errors, []);
  await page.close();
  await overview.page.close();
});

test.serial(
  "the jobs list filters by several states at once: RUNNING+FAILED shows both and nothing else",
  async (t) => {
    const { cluster } = t.context;
    const c = cluster.client();
    const running = await c.submit({ command: ["sleep", "60"], name: "multi running" });
    const failed = await c.submit({ command: ["false"], name: "multi failed" });
    const succeeded = await c.submit({ command: ["true"], name: "multi succeeded" });
    const held = await c.submit({ command: ["true"], name: "multi held", hold: true });
    await cluster.waitFor(
      () =>
        cluster.server.store.job(running.id)?.state === JobState.RUNNING &&
        cluster.server.store.job(failed.id)?.state === JobState.FAILED &&
        cluster.server.store.job(succeeded.id)?.state === JobState.SUCCEEDED,
      20_000,
      "the jobs to run, fail and succeed",
    );
    const { page, errors } = await open(t, "#/jobs");
    await page.locator(`tr[data-id='${held.id}']`).waitFor();
    // Tick RUNNING, then FAILED: the list stays open between the two.
    await page.locator("#f-state summary").click();
    await page.getByRole("checkbox", { name: "RUNNING" }).check();
    await page.waitForURL(/state=RUNNING(&|$)/);
    await page.getByRole("checkbox", { name: "FAILED" }).check();
    await page.waitForURL(/state=RUNNING(%2C|,)FAILED/);
    const shown = async () => {
      await page.locator(`tr[data-id='${running.id}']`).waitFor();
      await page.locator(`tr[data-id='${failed.id}']`).waitFor();
      await page.locator(`tr[data-id='${held.id}']`).waitFor({ state: "detached" });
      const states = await page.locator("tbody tr .badge").allTextContents();
      t.true(states.length >= 2);
      t.deepEqual([...new Set(states.map((s) => s.trim()))].sort(), ["FAILED", "RUNNING"]);
      t.is(await page.locator(`tr[data-id='${succeeded.id}']`).count(), 0);
    };
    await shown();
    t.is(await page.locator("#f-state-summary").textContent(), "RUNNING, FAILED");
    // The choice is in the URL: a fresh load keeps it.
    await page.reload();
    await shown();
    await page.locator("#f-state summary").click();
    t.true(await page.getByRole("checkbox", { name: "RUNNING" }).isChecked());
    t.true(await page.getByRole("checkbox", { name: "FAILED" }).isChecked());
    t.false(await page.getByRole("checkbox", { name: "SUCCEEDED" }).isChecked());
    // Escape closes the list, and so does a click elsewhere.
    const isOpen = () => page.locator("#f-state").evaluate((el) => el.hasAttribute("open"));
    await page.getByRole("checkbox", { name: "FAILED" }).focus();
    await page.keyboard.press("Escape");
    t.false(await isOpen());
    await page.locator("#f-state summary").click();
    t.true(await isOpen());
    await page.getByRole("heading", { level: 1, name: "Jobs" }).click();
    t.false(await isOpen());
    await c.kill(running.id);
    await c.release(held.id);
    t.deepEqual(errors, []);
    await page.close();
  },
);

test.serial("a Connect call with a bad id returns the right code", async (t) => {
  const base = t.context.http.url;
  const call = (method: string, body: unknown) =>
    fetch(`${base}crms.v1.JobService/${method}`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
    });
  const missing = await call("GetJob", { id: "987654321" });
  t.is(missing.status, 404);
  t.is(((await missing.json()) as { code: string }).code, "not_found");
  const malformed = await call("GetJob", { id: "not-a-number" });
  t.is(malformed.status, 400);
  t.is(((await malformed.json()) as { code: string }).code, "invalid_argument");
  const running = await call("DeleteJob", { id: "987654321" });
  t.is(((await running.json()) as { code: string }).code, "not_found");
  // And through the page's own client, as a user would see it.
  const { page } = await open(t, "#/jobs/987654321");
  await page
    .getByRole("alert")
    .getByText(/There is no job 987654321/)
    .waitFor();
  await page.close();
});

test.serial("only the page's own files are served", async (t) => {
  const base = t.context.http.url;
  const index = await fetch(base);
  t.is(index.status, 200);
  t.regex(index.headers.get("content-security-policy") ?? "", /default-src 'none'/);
  t.is((await fetch(`${base}../package.json`)).status, 404);
  t.is((await fetch(`${base}app.js`)).headers.get("content-type"), "text/javascript; charset=utf-8");
  // A loopback server answers only to loopback host names (no DNS rebinding).
  const { port } = new URL(base);
  const status = (host: string) =>
    new Promise<number>((resolve, reject) =>
      request({ host: "127.0.0.1", port, path: "/", headers: { host } }, (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      })
        .on("error", reject)
        .end(),
    );
  t.is(await status(`localhost:${port}`), 200);
  t.is(await status(`evil.example:${port}`), 421);
});

test.serial("closed pages end their watch streams on the server", async (t) => {
  const { cluster, baseline } = t.context;
  const { store } = cluster.server;
  const { page } = await open(t, "#/workers");
  await page.locator("#conn.ok").waitFor();
  t.true(store.jobs.listenerCount("put") > baseline.jobs);
  t.true(store.workers.listenerCount("put") > baseline.workers);
  await page.close();
  await cluster.waitFor(
    () => store.jobs.listenerCount("put") === baseline.jobs && store.workers.listenerCount("put") === baseline.workers,
    10_000,
    "watch listeners to be removed",
  );
  t.pass();
});

test.serial(
  "a fresh tab's overview chart shows the control plane's last hour, with jobs that finished before the tab opened",
  async (t) => {
    const { cluster } = t.context;
    const c = cluster.client();
    const before = (await (await fetch(`${t.context.http.url}activity`)).json()) as { minutes: unknown[] };
    const finishedBefore = (before.minutes as Array<{ finished: number }>).reduce((a, m) => a + m.finished, 0);
    for (const id of await Promise.all([1, 2, 3].map(async () => (await c.submit({ command: ["true"] })).id))) {
      await c.wait(id);
    }
    const { page, errors } = await open(t, "#/");
    const finished = page.locator(".legend.l-finished strong");
    await finished.waitFor();
    await cluster.waitFor(
      async () => Number((await finished.textContent())?.replace(/\D/g, "")) >= finishedBefore + 3,
      15_000,
      "the chart's finished count",
    );
    // Drawn from the server's minutes, not from this page's own counting (which saw nothing).
    const points = await page.locator(".chart polyline.finished").getAttribute("points");
    t.truthy(points?.trim(), "the finished line is drawn");
    t.regex((await page.locator(".rates").textContent()) ?? "", /from the control plane/);
    t.regex((await page.locator(".l-slots").textContent()) ?? "", /slots used \d+\/3/);
    await shot(page, "overview-chart");
    t.deepEqual(errors, []);
    await page.close();
  },
);

test.serial(
  "env values whose names look like credentials are masked until Reveal; free slots count UP workers only",
  async (t) => {
    const { cluster } = t.context;
    const c = cluster.client();
    // The page's pattern is the worker's own.
    t.true(readFileSync(join(process.cwd(), "web", "src", "format.ts"), "utf8").includes(String(CREDENTIAL_NAME)));
    const job = await c.submit({ command: ["true"], hold: true, env: { API_TOKEN: "hunter2", GREETING: "visible" } });
    const { page, errors } = await open(t, `#/jobs/${job.id}`);
    const env = page.locator("table.env");
    await env.getByText("visible").waitFor();
    t.false(((await env.textContent()) ?? "").includes("hunter2"));
    await page.getByRole("button", { name: "Reveal API_TOKEN" }).click();
    await env.getByText("hunter2").waitFor();
    await c.kill(job.id);
    // Draining the only worker leaves no free slot for new jobs.
    await c.drain("web-alpha");
    await page.goto(`${t.context.http.url}#/`);
    await page.getByText(/^0 free for new jobs \(draining workers take none\)/).waitFor();
    await c.resume("web-alpha");
    await page.getByText(/^3 free for new jobs$/).waitFor();
    t.deepEqual(errors, []);
    await page.close();
  },
);

test.serial("the submit form takes an array and dependencies (--array, --after)", async (t) => {
  const { cluster } = t.context;
  const c = cluster.client();
  const first = await c.submit({ command: ["true"] });
  await c.wait(first.id);
  const { page, errors } = await open(t, "#/submit");
  await page.locator("#conn.ok").waitFor();
  await page.getByLabel("Command", { exact: true }).fill("echo task $CRMS_ARRAY_INDEX");
  await page.getByText("More options").click();
  await page.getByLabel("Array", { exact: true }).fill("nonsense");
  await page.getByRole("button", { name: "Submit job" }).click();
  await page
    .getByRole("alert")
    .getByText(/Array: FIRST-LAST/)
    .waitFor();
  await page.getByLabel("Array", { exact: true }).fill("1-3%2");
  await page.getByLabel("After", { exact: true }).fill(`${first.id}:finished`);
  await page.getByRole("button", { name: "Submit job" }).click();
  await page.waitForURL(/#\/jobs\/\d+$/);
  const id = page.url().split("/").at(-1) as string;
  const spec = cluster.server.store.job(id)?.spec;
  t.deepEqual([spec?.array?.first, spec?.array?.last, spec?.array?.maxRunning], [1, 3, 2]);
  t.is(spec?.after[0]?.jobId, first.id);
  const done = await c.wait(id);
  t.is(done.arrayCounts?.succeeded, 3);
  t.deepEqual(errors, []);
  await page.close();
});

test.serial(
  "the jobs search finds array tasks by name, and rows that arrive live update the status line",
  async (t) => {
    const { cluster } = t.context;
    const c = cluster.client();
    const array = await c.submit({ command: ["true"], name: "render", array: { first: 1, last: 3 } });
    await c.wait(array.id);
    const { page, errors } = await open(t, "#/jobs?q=render%5B2%5D");
    await page.locator("tr[data-id]", { hasText: "render[2]" }).waitFor();
    t.regex((await page.locator("tbody").textContent()) ?? "", /render\[2\]/);
    await page.goto(`${t.context.http.url}#/jobs?label=suite%3Dlive-status`);
    await page.getByText(/^No jobs( on page 1)?\./).waitFor();
    const job = await c.submit({ command: ["true"], labels: { suite: "live-status" } });
    await page.locator(`tr[data-id='${job.id}']`).waitFor();
    await page.getByText(/^Showing 1 of 1 job( on page 1)?\./).waitFor();
    t.deepEqual(errors, []);
    await page.close();
  },
);

test.serial(
  "ten tabs load and stay live at once: the leading tab's two watch streams serve them all, and another tab takes over when it closes",
  async (t) => {
    t.timeout(180_000);
    const { cluster, baseline } = t.context;
    const { store } = cluster.server;
    const c = cluster.client();
    const tabs: Array<{ page: Page; errors: string[] }> = [];
    for (let i = 0; i < 10; i++) {
      const tab = await open(t, "#/jobs");
      // Each tab is live before the next opens: an eleventh stream would stall behind six connections.
      await tab.page.locator("#conn.ok").waitFor({ timeout: 30_000 });
      tabs.push(tab);
    }
    // Two watches on the server (jobs, workers) for ten tabs, not twenty.
    t.is(store.jobs.listenerCount("put") - baseline.jobs, 1);
    t.is(store.workers.listenerCount("put") - baseline.workers, 1);
    const seenByAll = async (name: string) => {
      const job = await c.submit({ command: ["true"], name });
      for (const { page } of tabs) {
        await page.locator(`tr[data-id='${job.id}']`, { hasText: "SUCCEEDED" }).waitFor({ timeout: 30_000 });
      }
    };
    await seenByAll("ten-tabs");
    // The leader (the first tab) closes: another tab takes the lock and opens the streams.
    await (tabs.shift() as { page: Page }).page.close();
    await seenByAll("nine-tabs");
    t.is(store.jobs.listenerCount("put") - baseline.jobs, 1);
    for (const { page, errors } of tabs) {
      t.deepEqual(errors, []);
      await page.close();
    }
  },
);

test.serial("job pages show an array's task counts, its tasks, dependencies and attempts", async (t) => {
  const c = t.context.cluster.client();
  const arr = await c.submit({ command: ["true"], name: "web array", array: { first: 1, last: 4, maxRunning: 2 } });
  const after = await c.submit({ command: ["true"], name: "web after", after: [{ jobId: arr.id }] });
  await c.wait(after.id, { timeoutMs: 30_000 });
  const { page, errors } = await open(t, `#/jobs/${arr.id}`);
  await page.locator(".array-counts", { hasText: "4 succeeded / 4" }).waitFor({ timeout: 15_000 });
  t.regex((await page.locator(".job-details").textContent()) ?? "", /1-4, at most 2 running/);
  await page.locator(".array-counts a", { hasText: "list tasks" }).click();
  await page.getByRole("heading", { name: `Tasks of array ${arr.id}` }).waitFor();
  await page.locator("tbody tr").nth(3).waitFor();
  t.is(await page.locator("tbody tr").count(), 4);
  await shot(page, "array-tasks");
  await page.goto(`${t.context.http.url}#/jobs/${after.id}`);
  await page.locator(".dependencies li", { hasText: `job ${arr.id} succeeded` }).waitFor({ timeout: 15_000 });
  t.is(await page.locator("section[aria-labelledby='job-attempts'] tbody tr").count(), 1);
  await shot(page, "job-dependencies");
  t.deepEqual(errors, []);
  await page.close();
});

test.serial("a worker is drained from the workers page", async (t) => {
  const { page, errors } = await open(t, "#/workers");
  const row = page.locator("tr[data-name='web-alpha']");
  await row.getByRole("button", { name: "Drain web-alpha" }).click();
  await row.locator(".badge", { hasText: "DRAINING" }).waitFor({ timeout: 10_000 });
  t.true(await row.getByRole("button", { name: "Drain web-alpha" }).isDisabled());
  await page.getByText("Drain web-alpha: done.").waitFor();
  // Resume undoes it.
  await row.getByRole("button", { name: "Resume web-alpha" }).click();
  await row.locator(".badge", { hasText: "UP" }).waitFor({ timeout: 10_000 });
  await page.getByText("Resume web-alpha: done.").waitFor();
  t.true(await row.getByRole("button", { name: "Resume web-alpha" }).isDisabled());
  t.deepEqual(errors, []);
  await page.close();
});

test.serial(
  "an etcd NOSPACE alarm shows on the page and in `crms admin status` with the recovery command",
  async (t) => {
    const etcd = t.context.cluster.etcdClient();
    // Raise the real alarm on the member (etcd refuses writes until it is disarmed).
    const member = (await etcd.maintenance.status({})).header.member_id;
    await etcd.maintenance.alarm({ action: "Activate", alarm: "Nospace", memberID: member });
    try {
      const { page, errors } = await open(t, "#/");
      const banner = page.getByRole("alert");
      await banner.getByText("etcd alarm: NOSPACE").waitFor({ timeout: 20_000 });
      t.regex((await banner.textContent()) ?? "", /crms admin recover/);
      await shot(page, "overview-nospace");
      const status = await run(process.execPath, [CRMS_BIN, "admin", "status", "--server", t.context.cluster.address]);
      t.regex(status.stdout, /Alarms: +NOSPACE — run `crms admin recover`/);
      t.regex(status.stdout, /NOSPACE\s*$/m);
      t.deepEqual(errors, []);
      await page.close();
    } finally {
      await etcd.maintenance.alarm({ action: "Deactivate", alarm: "Nospace", memberID: member });
    }
  },
);

test.serial(
  "a finished job is requeued from its page; a stopped worker shows DOWN and is forgotten from the page",
  async (t) => {
    const { cluster } = t.context;
    const { store } = cluster.server;
    const c = cluster.client();
    const job = await c.submit({ command: ["true"], name: "again" });
    await c.wait(job.id, { timeoutMs: 20_000 });
    const { page, errors } = await open(t, `#/jobs/${job.id}`);
    await page.getByRole("button", { name: "Requeue", exact: true }).click();
    await page.getByText(`Requeue job ${job.id}: done.`).waitFor();
    await cluster.waitFor(
      () => store.job(job.id)?.attempts.length === 2 && store.job(job.id)?.state === JobState.SUCCEEDED,
      20_000,
      "the requeued job to run again",
    );

    await cluster.startWorker("web-gone", 1);
    await c.stopWorker("web-gone");
    await cluster.waitFor(() => store.worker("web-gone")?.state === 4, 20_000, "web-gone to be DOWN");
    await page.goto(`${t.context.http.url}#/workers`);
    const row = page.locator("tr[data-name='web-gone']");
    await row.locator(".badge", { hasText: "DOWN" }).waitFor({ timeout: 10_000 });
    t.regex((await row.textContent()) ?? "", /stopped by an operator/);
    await page.getByText(/1 down\./).waitFor();
    await row.getByRole("button", { name: "Forget web-gone" }).click();
    await row.waitFor({ state: "detached", timeout: 10_000 });
    t.is(store.worker("web-gone"), undefined);
    t.deepEqual(errors, []);
    await page.close();
  },
);

test.serial(
  "the Queues view lists each queue's weight, limits, running and pending jobs and users; a job's page shows its queue and resources",
  async (t) => {
    const { cluster, http } = t.context;
    const c = cluster.client();
    // Through the Connect routes the page itself calls.
    const queues = createClient(QueueService, createConnectTransport({ baseUrl: http.url, httpVersion: "1.1" }));
    await queues.createQueue({ queue: { name: "web-gold", weight: 3 } });
    await queues.createQueue({ queue: { name: "web-bronze", weight: 1, maxRunning: 2, preemptible: true } });
    const owner = (user: string) => ({ "crms.io/owner": user });
    // A job that no worker matches stays PENDING whatever the queue's limits.
    const nowhere = { zone: "nowhere" };
    const sleeps = [
      await c.submit({ command: ["sleep", "60"], queue: "web-gold", labels: owner("alice") }),
      await c.submit({ command: ["sleep", "60"], queue: "web-bronze", labels: owner("bob") }),
    ];
    const gold = await c.submit({
      command: ["true"],
      name: "gold waiting",
      queue: "web-gold",
      labels: owner("alice"),
      constraints: nowhere,
      resources: { cpus: 1, memoryBytes: 64n * 1024n * 1024n },
    });
    const waiting = [gold];
    for (let i = 0; i < 2; i++)
      waiting.push(
        await c.submit({ command: ["true"], queue: "web-bronze", labels: owner("bob"), constraints: nowhere }),
      );
    for (const job of sleeps) await c.waitUntil(job.id, (j) => j.state === JobState.RUNNING, { timeoutMs: 20_000 });

    const { page, errors } = await open(t, "#/");
    await page.getByRole("link", { name: "Queues", exact: true }).click();
    await page.getByRole("heading", { level: 1, name: "Queues" }).waitFor();
    const row = (name: string) => page.locator(`table.queues tr[data-queue='${name}']`);
    const cell = (name: string, cls: string) => row(name).locator(`td.${cls}`);
    await row("default").waitFor();
    await cell("web-gold", "running").getByText("1", { exact: true }).waitFor({ timeout: 15_000 });
    await cell("web-gold", "pending").getByText("1", { exact: true }).waitFor();
    await cell("web-bronze", "running").getByText("1", { exact: true }).waitFor();
    await cell("web-bronze", "pending").getByText("2", { exact: true }).waitFor();
    t.is(await cell("web-gold", "weight").textContent(), "3");
    t.is(await cell("web-bronze", "weight").textContent(), "1");
    t.is(await cell("web-bronze", "limits").textContent(), "2 running · preemptible");
    t.is(await cell("web-gold", "limits").textContent(), "none");
    t.regex((await cell("web-gold", "share").textContent()) ?? "", /^\d+(\.\d)? % of \d+(\.\d)? %$/);
    // Per user, within each queue.
    const user = (queue: string, name: string) =>
      page.locator(`table.queue-users tr[data-queue='${queue}'][data-user='${name}']`);
    await user("web-gold", "alice").locator("td.pending", { hasText: "1" }).waitFor();
    await user("web-bronze", "bob").locator("td.pending", { hasText: "2" }).waitFor();
    t.is(await user("web-bronze", "bob").locator("td.running").textContent(), "1");
    // Share over time: one more sample after the next poll, drawn as a line.
    const chart = row("web-gold").locator("svg.sparkline");
    await chart.locator("polyline.share").waitFor({ state: "attached" });
    t.regex((await chart.getAttribute("aria-label")) ?? "", /share \d.* against a target of \d/);
    await cluster.waitFor(
      async () => ((await chart.locator("polyline.share").getAttribute("points")) ?? "").split(" ").length >= 2,
      15_000,
      "a second share sample",
    );
    await shot(page, "queues");
    // At phone width the tables scroll in their boxes, not the page.
    await page.setViewportSize({ width: 390, height: 844 });
    t.true((await page.evaluate<number>("document.documentElement.scrollWidth - window.innerWidth")) <= 0);
    await shot(page, "queues-phone");
    await page.setViewportSize({ width: 1280, height: 900 });

    // The job's page: its queue, its user and what it asked for.
    await page.goto(`${http.url}#/jobs/${gold.id}`);
    const section = page.locator("section[aria-labelledby='job-queue']");
    await section.getByText("web-gold").waitFor({ timeout: 15_000 });
    const text = (await section.textContent()) ?? "";
    t.regex(text, /Useralice/);
    t.regex(text, /Requested1 cpu · 64\.0 MiB/);
    // The only job waiting in its queue is next.
    t.regex(text, /Queue position1 \(1 = next\)/);
    await shot(page, "job-queue");

    // The worker running the two sleeps (1 cpu each, the default) shows them reserved, refreshed by ListWorkers.
    await page.goto(`${http.url}#/workers`);
    await page
      .locator("tr[data-name='web-alpha'] td.col-resources", { hasText: /^2\/\d+ cpus/ })
      .waitFor({ timeout: 15_000 });
    t.deepEqual(errors, []);
    await page.close();
    for (const job of [...sleeps, ...waiting]) await c.kill(job.id);
  },
);
