/**
 * The page's job list switches between live jobs and the history: a job that
 * etcd retention deleted is listed under History and opens in full, with its
 * kept output. Real cluster (embedded history), real Chromium.
 */
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import anyTest, { type TestFn } from "ava";
import { type BrowserContext, chromium } from "playwright-core";
import { JobState } from "../gen/crms/v1/job_pb.js";
import { type HttpEndpoint, startHttp } from "../src/web/http.js";
import { TestCluster } from "./helpers/cluster.js";

const CHROMIUM = "/usr/bin/chromium";
const test = anyTest as TestFn<{ cluster: TestCluster; http: HttpEndpoint; context: BrowserContext; dir: string }>;

test.before(async (t) => {
  if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: apt-get install chromium`);
  const dataDir = mkdtempSync(join(tmpdir(), "crms-cp-"));
  const cluster = await TestCluster.start({ dataDir, retentionIntervalSeconds: 0, retentionAgeSeconds: 1 });
  await cluster.startWorker("web-hist", 1);
  const http = await startHttp(cluster.server, "127.0.0.1:0");
  const dir = mkdtempSync(join(tmpdir(), "crms-chromium-"));
  const context = await chromium.launchPersistentContext(dir, {
    executablePath: CHROMIUM,
    headless: true,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"],
  });
  t.context = { cluster, http, context, dir };
});

test.after.always(async (t) => {
  await t.context.context?.close();
  await t.context.http?.close();
  await t.context.cluster?.stop();
  if (t.context.dir) rmSync(t.context.dir, { recursive: true, force: true });
});

test("a job deleted from etcd is listed under History and opens with its output", async (t) => {
  const { cluster, http, context } = t.context;
  const c = cluster.client();
  const job = await c.submit({ name: "web-hist-job", command: ["sh", "-c", "echo kept-line; exit 4"] });
  t.is((await c.wait(job.id, { timeoutMs: 30_000 })).state, JobState.FAILED);
  const history = cluster.server.history;
  if (!history) throw new Error("no history");
  await cluster.waitFor(async () => (await history.readLog(job.id, 1)).length > 0, 20_000, "the output to be kept");
  await cluster.waitFor(
    async () => {
      await c.runRetention();
      return (await cluster.server.store.fetchJob(job.id)) === undefined;
    },
    30_000,
    "retention to delete the job",
  );

  const page = await context.newPage();
  const errors: string[] = [];
  page.on("pageerror", (err) => errors.push(String(err)));
  await page.goto(`${http.url}#/jobs`);
  await page.getByRole("heading", { level: 1, name: "Jobs" }).waitFor();
  await page.getByRole("link", { name: "History", exact: true }).first().click();
  await page.getByRole("heading", { level: 1, name: "Job history" }).waitFor();
  const row = page.locator(`tr[data-id='${job.id}']`);
  await row.waitFor({ timeout: 15_000 });
  t.regex((await row.textContent()) ?? "", /web-hist-job.*FAILED.*exit 4/);
  await row.getByRole("link", { name: job.id }).click();
  await page.getByRole("heading", { level: 1, name: new RegExp(`Job ${job.id}`) }).waitFor();
  await page.getByText("kept-line").first().waitFor({ timeout: 15_000 });
  t.deepEqual(errors, []);
});
