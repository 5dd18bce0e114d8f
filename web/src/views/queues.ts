/**
 * Queues: every queue with its weight, limits, load and fair share
 * (ListQueues, polled: a queue's status is computed when read, not watched),
 * each user's standing in it, and each queue's share against its target over
 * the last minutes, sampled by this tab as it polls.
 */
import type { Queue } from "../../../gen/crms/v1/queue_pb.js";
import { errorText, isCanceled, queueService } from "../api.js";
import { sparkline } from "../chart.js";
import { h, replace, throttle } from "../dom.js";
import { formatCount, formatPercent, formatTime } from "../format.js";
import { live } from "../live.js";
import type { View } from "../view.js";

const POLL_MS = 3000;
/** How much share history the tab keeps per queue. */
const HISTORY_MS = 10 * 60_000;

interface Sample {
  t: number;
  share: number;
  target: number;
}

/** Share samples per queue, kept for the tab's life so that leaving the view and coming back keeps the chart. */
const history = new Map<string, Sample[]>();

function record(queues: Queue[], now: number): void {
  const names = new Set(queues.map((q) => q.name));
  for (const name of history.keys()) if (!names.has(name)) history.delete(name);
  for (const q of queues) {
    let samples = history.get(q.name);
    if (!samples) history.set(q.name, (samples = []));
    samples.push({ t: now, share: q.status?.share ?? 0, target: q.status?.targetShare ?? 0 });
    const cut = samples.findIndex((s) => s.t >= now - HISTORY_MS);
    if (cut > 0) samples.splice(0, cut);
  }
}

/** The queue's limits in words: "4 running · 8 cpus · preemptible", or "none". */
function limits(q: Queue): string {
  const parts: string[] = [];
  if (q.maxRunning) parts.push(`${q.maxRunning} running`);
  if (q.maxCpus) parts.push(`${q.maxCpus} cpus`);
  if (q.maxGpus) parts.push(`${q.maxGpus} gpus`);
  if (q.preemptible) parts.push("preemptible");
  return parts.join(" · ") || "none";
}

/** Share against target as a bar with a mark at the target; the figures as text beside it. */
function shareCell(share: number, target: number): HTMLElement {
  const fill = h("span", { class: `bar-fill ${share > target + 0.05 ? "warn" : ""}` });
  fill.style.width = `${Math.min(100, share * 100).toFixed(1)}%`;
  const mark = h("span", { class: "target-mark" });
  mark.style.left = `${Math.min(100, target * 100).toFixed(1)}%`;
  return h(
    "td",
    { class: "share" },
    h("span", null, `${formatPercent(share)} of ${formatPercent(target)}`),
    h("span", { class: "bar small share-bar", "aria-hidden": "true" }, fill, mark),
  );
}

function shareChart(name: string, now: number): SVGElement {
  const samples = history.get(name) ?? [];
  const max = Math.max(0.1, ...samples.flatMap((s) => [s.share, s.target])) * 1.1;
  const last = samples.at(-1);
  // From the first sample (at least a minute back), so that a young history is not a sliver at the edge.
  const from = Math.max(now - HISTORY_MS, Math.min(samples[0]?.t ?? now, now - 60_000));
  const minutes = Math.max(1, Math.round((now - from) / 60_000));
  const summary = last
    ? `Queue ${name}: share ${formatPercent(last.share)} against a target of ${formatPercent(last.target)}; ${samples.length} samples over the last ${minutes} min`
    : `Queue ${name}: no samples yet`;
  return sparkline(
    [
      { cls: "target", points: samples.map((s) => [s.t, s.target]) },
      { cls: "share", points: samples.map((s) => [s.t, s.share]) },
    ],
    from,
    now,
    max,
    summary,
  );
}

function queueRow(q: Queue, now: number): HTMLElement {
  const s = q.status;
  return h(
    "tr",
    { "data-queue": q.name },
    h("th", { scope: "row" }, q.name),
    h("td", { class: "num weight" }, String(q.weight)),
    h("td", { class: "limits" }, limits(q)),
    h("td", { class: "num running" }, formatCount(s?.running ?? 0)),
    h("td", { class: "num pending" }, formatCount(s?.pending ?? 0n)),
    h("td", { class: "num" }, `${s?.cpus ?? 0}${s?.gpus ? ` / ${s.gpus}` : ""}`),
    shareCell(s?.share ?? 0, s?.targetShare ?? 0),
    h("td", { class: "spark" }, shareChart(q.name, now)),
  );
}

function userRows(q: Queue): HTMLElement[] {
  return (q.status?.users ?? []).map((u) =>
    h(
      "tr",
      { "data-queue": q.name, "data-user": u.user },
      h("td", null, q.name),
      h("th", { scope: "row" }, u.user || h("span", { class: "muted" }, "(none)")),
      h("td", { class: "num running" }, formatCount(u.running)),
      h("td", { class: "num pending" }, formatCount(u.pending)),
      h("td", { class: "num" }, formatPercent(u.share)),
      h("td", { class: "num" }, formatPercent(u.targetShare)),
      h(
        "td",
        { class: "num", title: "cost-seconds, decayed with the fair-share half-life" },
        u.decayedUsage.toFixed(1),
      ),
    ),
  );
}

/** A scrollable table: its region label, class, caption for screen readers, columns ([name, numeric]) and body. */
function table(label: string, cls: string, caption: string, cols: Array<[string, boolean?]>, body: HTMLElement) {
  return h(
    "div",
    { class: "table-wrap", role: "region", "aria-label": label, tabindex: 0 },
    h(
      "table",
      { class: cls },
      h("caption", { class: "sr-only" }, caption),
      h(
        "thead",
        null,
        h(
          "tr",
          null,
          cols.map(([c, num]) => h("th", { scope: "col", class: num ? "num" : null }, c)),
        ),
      ),
      body,
    ),
  );
}

export function queuesView(): View {
  const ctl = new AbortController();
  const status = h("p", { class: "status-line", role: "status", "aria-live": "polite" }, "Loading queues…");
  const queuesBody = h("tbody");
  const usersBody = h("tbody");
  const el = h(
    "div",
    { class: "view queues-view" },
    h("h1", { tabindex: -1 }, "Queues"),
    status,
    table(
      "Queues table",
      "queues",
      "Queues, default first, then by name",
      [
        ["Queue"],
        ["Weight", true],
        ["Limits"],
        ["Running", true],
        ["Pending", true],
        ["Cpus / gpus", true],
        ["Share / target"],
        [`Share over time (up to ${HISTORY_MS / 60_000} min)`],
      ],
      queuesBody,
    ),
    h(
      "p",
      { class: "rates small" },
      h("span", { class: "legend l-share" }, "share"),
      h("span", { class: "legend l-target" }, "target share"),
    ),
    h("h2", null, "Users"),
    table(
      "Users table",
      "queue-users",
      "Users with running or pending jobs, per queue",
      [
        ["Queue"],
        ["User"],
        ["Running", true],
        ["Pending", true],
        ["Share", true],
        ["Target", true],
        ["Decayed usage", true],
      ],
      usersBody,
    ),
  );

  let timer: ReturnType<typeof setTimeout> | undefined;
  let inFlight = false;

  const render = (queues: Queue[], now: number) => {
    replace(
      queuesBody,
      queues.map((q) => queueRow(q, now)),
    );
    const users = queues.flatMap(userRows);
    replace(
      usersBody,
      users.length
        ? users
        : h("tr", null, h("td", { colspan: 7, class: "empty" }, "No user has jobs waiting or running.")),
    );
    status.classList.remove("error");
    status.textContent = `${formatCount(queues.length)} queue${queues.length === 1 ? "" : "s"}, updated ${formatTime(new Date(now))}.`;
  };

  const poll = async () => {
    if (inFlight || ctl.signal.aborted) return;
    clearTimeout(timer);
    inFlight = true;
    try {
      const res = await queueService.listQueues({}, { signal: ctl.signal, timeoutMs: 10_000 });
      const now = Date.now();
      record(res.queues, now);
      render(res.queues, now);
    } catch (err) {
      if (isCanceled(err) || ctl.signal.aborted) return;
      status.classList.add("error");
      status.textContent = `Cannot load queues: ${errorText(err)}`;
    } finally {
      inFlight = false;
    }
    if (!ctl.signal.aborted && !document.hidden) timer = setTimeout(() => void poll(), POLL_MS);
  };

  // Job changes move counts: poll sooner, at most once a second.
  const soon = throttle(() => void poll(), 1000);
  const offJobs = live.onJobs(soon);
  const onVisible = () => {
    if (!document.hidden) void poll();
  };
  document.addEventListener("visibilitychange", onVisible);
  void poll();

  return {
    title: "Queues",
    el,
    dispose() {
      ctl.abort();
      clearTimeout(timer);
      soon.cancel();
      offJobs();
      document.removeEventListener("visibilitychange", onVisible);
    },
  };
}
