/**
 * Workers: every worker the control plane knows, from the worker watch, with
 * slots in use kept current by job events. Heartbeats and allocated resources
 * are not written to etcd, so the rows on screen are refreshed with ListWorkers
 * every few seconds.
 */
import type { Resources } from "../../../gen/crms/v1/job_pb.js";
import { type Worker, WorkerState } from "../../../gen/crms/v1/worker_pb.js";
import { errorText, workerService } from "../api.js";
import { h, replace, throttle, toast } from "../dom.js";
import { formatAgo, formatCount, formatMap, formatResources, formatTime, toDate, workerBadge } from "../format.js";
import { live } from "../live.js";
import { href, type Route, type View } from "../view.js";

const PAGE = 100;
const HEARTBEAT_REFRESH_MS = 5000;

function slotsCell(used: number, slots: number): HTMLElement {
  const fill = h("span", { class: `bar-fill ${used >= slots ? "warn" : ""}` });
  fill.style.width = `${slots ? Math.min(100, (used / slots) * 100) : 0}%`;
  return h(
    "div",
    { class: "slots" },
    h("span", null, `${used} / ${slots}`),
    h("span", { class: "bar small", "aria-hidden": "true" }, fill),
  );
}

function runningCell(ids: string[]): Node | string {
  if (!ids.length) return h("span", { class: "muted" }, "none");
  const shown = ids.slice(0, 5);
  return h(
    "span",
    { class: "job-links" },
    shown.map((id, i) => [i ? ", " : "", h("a", { href: href(`jobs/${id}`) }, id)]),
    ids.length > shown.length ? ` and ${ids.length - shown.length} more` : "",
  );
}

export function workersView(route: Route): View {
  let q = route.query.get("q") ?? "";
  let page = Math.max(0, Number(route.query.get("page")) || 0);
  /** Fresher heartbeats than the watch carries, by worker name. */
  const heartbeats = new Map<string, Date>();
  /** The same for resources allocated: job changes do not bring worker events. */
  const allocated = new Map<string, Resources | undefined>();
  const busy = new Set<string>();

  const status = h("p", { class: "status-line", role: "status", "aria-live": "polite" });
  const tbody = h("tbody");
  const pager = h("nav", { class: "pager", "aria-label": "Worker pages" });
  const search = h("input", {
    id: "w-q",
    type: "search",
    value: q,
    placeholder: "Name, host or label",
    autocomplete: "off",
  });
  search.addEventListener("input", () => {
    q = search.value.trim();
    page = 0;
    history.replaceState(null, "", href("workers", { q }));
    render();
  });

  const el = h(
    "div",
    { class: "view workers-view" },
    h("h1", { tabindex: -1 }, "Workers"),
    h(
      "form",
      { class: "filters", role: "search", "aria-label": "Filter workers", onsubmit: (e: Event) => e.preventDefault() },
      h("div", { class: "field wide" }, h("label", { for: "w-q" }, "Filter"), search),
    ),
    status,
    h(
      "div",
      { class: "table-wrap", role: "region", "aria-label": "Workers table", tabindex: 0 },
      h(
        "table",
        { class: "workers" },
        h("caption", { class: "sr-only" }, "Workers, ordered by name"),
        h(
          "thead",
          null,
          h(
            "tr",
            null,
            h("th", { scope: "col" }, "Name"),
            h("th", { scope: "col" }, "State"),
            h("th", { scope: "col" }, "Slots used"),
            h("th", { scope: "col", class: "col-resources" }, "Resources allocated"),
            h("th", { scope: "col", class: "col-labels" }, "Labels"),
            h("th", { scope: "col" }, "Running jobs"),
            h("th", { scope: "col" }, "Last heartbeat"),
            h("th", { scope: "col", class: "col-host" }, "Host"),
            h("th", { scope: "col" }, h("span", { class: "sr-only" }, "Actions")),
          ),
        ),
        tbody,
      ),
    ),
    pager,
  );

  const matching = (): Worker[] => {
    const needle = q.toLowerCase();
    const all = [...live.workers.values()].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    if (!needle) return all;
    return all.filter(
      (w) =>
        w.name.toLowerCase().includes(needle) ||
        w.hostname.toLowerCase().includes(needle) ||
        formatMap(w.labels).toLowerCase().includes(needle),
    );
  };

  let visible: Worker[] = [];

  const act = async (w: Worker, label: string, fn: () => Promise<unknown>, confirmText: string) => {
    if (!window.confirm(confirmText)) return;
    busy.add(w.name);
    render();
    try {
      await fn();
      toast(`${label}: done.`);
    } catch (err) {
      toast(`${label} failed: ${errorText(err)}`, "error");
    } finally {
      busy.delete(w.name);
      render();
    }
  };

  const workerRow = (w: Worker): HTMLElement => {
    const attached = w.state === WorkerState.UP || w.state === WorkerState.DRAINING;
    const hb = heartbeats.get(w.name) ?? toDate(w.lastHeartbeat);
    const running = [...(live.active.get(w.name) ?? w.runningJobs)].sort(
      (a, b) => a.length - b.length || (a < b ? -1 : 1),
    );
    const isBusy = busy.has(w.name);
    return h(
      "tr",
      { "data-name": w.name },
      h("th", { scope: "row" }, h("a", { href: href("jobs", { worker: w.name }), title: `Jobs on ${w.name}` }, w.name)),
      h(
        "td",
        null,
        workerBadge(w.state, w.stopRequested),
        !attached && w.downReason ? h("span", { class: "muted small" }, ` ${w.downReason}`) : null,
        w.state === WorkerState.DOWN && w.lastJobs.length
          ? h("span", { class: "muted small", title: w.lastJobs.join(", ") }, ` · had ${w.lastJobs.length} job(s)`)
          : null,
      ),
      h("td", null, attached ? slotsCell(running.length, w.slots) : `— / ${w.slots}`),
      h(
        "td",
        { class: "col-resources" },
        w.capacity
          ? formatResources(allocated.has(w.name) ? allocated.get(w.name) : w.allocated, w.capacity)
          : h("span", { class: "muted" }, "not reported"),
      ),
      h(
        "td",
        { class: "col-labels" },
        Object.keys(w.labels).length ? h("code", null, formatMap(w.labels)) : h("span", { class: "muted" }, "none"),
      ),
      h("td", null, runningCell(running)),
      h(
        "td",
        null,
        hb
          ? h(
              "time",
              { datetime: hb.toISOString(), title: formatTime(hb), "data-hb": String(hb.getTime()) },
              formatAgo(hb),
            )
          : "never",
      ),
      h(
        "td",
        { class: "col-host" },
        w.hostname || "—",
        w.version ? h("span", { class: "muted small" }, ` v${w.version}`) : null,
      ),
      h(
        "td",
        null,
        h(
          "div",
          { class: "row-actions" },
          h(
            "button",
            {
              type: "button",
              disabled: isBusy || w.state !== WorkerState.UP,
              "aria-label": `Drain ${w.name}`,
              onclick: () =>
                act(
                  w,
                  `Drain ${w.name}`,
                  () => workerService.drainWorker({ name: w.name }),
                  `Drain ${w.name}? It finishes its running jobs and takes no new ones.`,
                ),
            },
            "Drain",
          ),
          h(
            "button",
            {
              type: "button",
              disabled: isBusy || w.state !== WorkerState.DRAINING || w.stopRequested,
              "aria-label": `Resume ${w.name}`,
              onclick: () =>
                act(
                  w,
                  `Resume ${w.name}`,
                  () => workerService.resumeWorker({ name: w.name }),
                  `Resume ${w.name}? It takes new jobs again.`,
                ),
            },
            "Resume",
          ),
          h(
            "button",
            {
              type: "button",
              class: "danger",
              disabled: isBusy || w.stopRequested || !attached,
              "aria-label": `Stop ${w.name}`,
              onclick: () =>
                act(
                  w,
                  `Stop ${w.name}`,
                  () => workerService.stopWorker({ name: w.name }),
                  `Stop ${w.name}? The worker exits and its running jobs are killed.`,
                ),
            },
            "Stop",
          ),
          w.state === WorkerState.DOWN
            ? h(
                "button",
                {
                  type: "button",
                  disabled: isBusy,
                  "aria-label": `Forget ${w.name}`,
                  onclick: () =>
                    act(
                      w,
                      `Forget ${w.name}`,
                      () => workerService.forgetWorker({ name: w.name }),
                      `Forget ${w.name}? Its DOWN record is removed; it comes back if it attaches again.`,
                    ),
                },
                "Forget",
              )
            : null,
        ),
      ),
    );
  };

  function render(): void {
    if (!live.workersSynced) {
      status.textContent =
        live.workerState === "retrying" ? `Cannot load workers: ${live.lastError}` : "Loading workers…";
      return;
    }
    // Keep focus on a row's button across re-renders (keyboard users).
    const focused = document.activeElement;
    const focusName = focused instanceof HTMLElement ? focused.closest("tr")?.getAttribute("data-name") : null;
    const focusLabel = focused?.getAttribute("aria-label");
    const all = matching();
    const pages = Math.max(1, Math.ceil(all.length / PAGE));
    if (page >= pages) page = pages - 1;
    visible = all.slice(page * PAGE, page * PAGE + PAGE);
    replace(
      tbody,
      visible.length
        ? visible.map(workerRow)
        : h(
            "tr",
            null,
            h(
              "td",
              { colspan: 9, class: "empty" },
              q
                ? "No worker matches."
                : "No worker has attached yet. Start one with `crms worker --name NAME --slots N`.",
            ),
          ),
    );
    if (focusName && focusLabel) {
      const again = tbody.querySelector<HTMLElement>(
        `tr[data-name="${CSS.escape(focusName)}"] [aria-label="${CSS.escape(focusLabel)}"]`,
      );
      again?.focus();
    }
    const up = all.filter((w) => w.state === WorkerState.UP).length;
    const down = all.filter((w) => w.state === WorkerState.DOWN).length;
    status.textContent = `${formatCount(all.length)} worker${all.length === 1 ? "" : "s"}${q ? " match" : ""}, ${formatCount(up)} up${down ? `, ${formatCount(down)} down` : ""}.${
      pages > 1 ? ` Page ${page + 1} of ${pages}.` : ""
    }`;
    const go = (p: number, label: string, rel?: string) =>
      h(
        "button",
        {
          type: "button",
          rel: rel ?? null,
          onclick: () => {
            page = p;
            render();
          },
        },
        label,
      );
    replace(
      pager,
      pages > 1
        ? [
            page > 0 ? go(page - 1, "Previous", "prev") : null,
            page < pages - 1 ? go(page + 1, "Next page", "next") : null,
          ]
        : [],
    );
  }

  /** Re-reads the rows on screen: heartbeats live in the replica's memory, not in etcd. */
  const refresh = async () => {
    if (document.hidden || !visible.length) return;
    const names = [...live.workers.keys()].sort();
    const i0 = names.indexOf(visible[0]?.name ?? "");
    const i1 = names.indexOf(visible.at(-1)?.name ?? "");
    if (i0 < 0 || i1 < i0) return;
    try {
      const res = await workerService.listWorkers({
        pageToken: i0 > 0 ? names[i0 - 1] : "",
        pageSize: Math.min(1000, i1 - i0 + 1),
      });
      for (const w of res.workers) {
        const hb = toDate(w.lastHeartbeat);
        if (hb) heartbeats.set(w.name, hb);
        allocated.set(w.name, w.allocated);
      }
      render();
    } catch {
      // The watch still shows states; the next refresh tries again.
    }
  };

  const tick = setInterval(() => {
    const now = Date.now();
    for (const t of tbody.querySelectorAll<HTMLElement>("time[data-hb]"))
      t.textContent = formatAgo(new Date(Number(t.dataset.hb)), now);
  }, 1000);
  const poll = setInterval(() => void refresh(), HEARTBEAT_REFRESH_MS);
  // Sorting every worker is the cost here: at most twice a second.
  const renderSoon = throttle(render, 500);
  const off = live.onWorkers(renderSoon);
  const offConn = live.onConnection(render);
  render();
  setTimeout(() => void refresh(), 0);

  return {
    title: "Workers",
    el,
    dispose() {
      off();
      offConn();
      renderSoon.cancel();
      clearInterval(tick);
      clearInterval(poll);
    },
  };
}
