/** Overview: workers, slots, jobs by state, job rates, and etcd's size against its quota. */
import type { EtcdMember } from "../../../gen/crms/v1/admin_pb.js";
import { WorkerState } from "../../../gen/crms/v1/worker_pb.js";
import { type ActivityMinute, errorText, fetchActivity } from "../api.js";
import { rateChart } from "../chart.js";
import { h, replace, throttleFrame } from "../dom.js";
import { formatBytes, formatCount, formatTime, JOB_STATES, stateBadge, stateName } from "../format.js";
import { live } from "../live.js";
import { href, type View } from "../view.js";

const WINDOW_S = 3600;
/** How often the chart asks the control plane for its last hour. */
const ACTIVITY_EVERY_MS = 15_000;

function meter(value: number, max: number, label: string, warnAt = 0.7, badAt = 0.9): HTMLElement {
  const frac = max > 0 ? Math.min(1, value / max) : 0;
  const bar = h("span", { class: `bar-fill ${frac >= badAt ? "bad" : frac >= warnAt ? "warn" : ""}` });
  bar.style.width = `${(frac * 100).toFixed(1)}%`;
  return h(
    "span",
    {
      class: "bar",
      role: "meter",
      "aria-label": label,
      "aria-valuemin": 0,
      "aria-valuemax": max,
      "aria-valuenow": value,
      "aria-valuetext": `${(frac * 100).toFixed(1)} %`,
    },
    bar,
  );
}

function stat(label: string, value: string | number, extra?: Node | string): HTMLElement {
  return h("div", { class: "stat" }, h("dt", null, label), h("dd", null, String(value), extra ?? null));
}

export function overviewView(): View {
  const alarms = h("div", { class: "alarms" });
  const workersCard = h("dl", { class: "stats" });
  const slotsCard = h("div");
  const etcdCard = h("div");
  const jobsCard = h("div");
  const chartBox = h("div", { class: "chart-box" });
  const rates = h("p", { class: "rates" });
  const members = h("div", { class: "table-wrap", role: "region", "aria-label": "etcd members", tabindex: 0 });

  const el = h(
    "div",
    { class: "view overview" },
    h("h1", { tabindex: -1 }, "Overview"),
    alarms,
    h(
      "div",
      { class: "cards" },
      h(
        "section",
        { class: "card", "aria-labelledby": "ov-workers" },
        h("h2", { id: "ov-workers" }, "Workers"),
        workersCard,
      ),
      h("section", { class: "card", "aria-labelledby": "ov-slots" }, h("h2", { id: "ov-slots" }, "Slots"), slotsCard),
      h("section", { class: "card", "aria-labelledby": "ov-etcd" }, h("h2", { id: "ov-etcd" }, "etcd"), etcdCard),
    ),
    h(
      "section",
      { class: "card", "aria-labelledby": "ov-jobs" },
      h("h2", { id: "ov-jobs" }, "Jobs by state"),
      jobsCard,
    ),
    h(
      "section",
      { class: "card", "aria-labelledby": "ov-rate" },
      h("h2", { id: "ov-rate" }, "Last hour, per minute"),
      rates,
      chartBox,
    ),
    h(
      "section",
      { class: "card", "aria-labelledby": "ov-members" },
      h("h2", { id: "ov-members" }, "etcd members"),
      members,
    ),
  );

  const renderWorkers = () => {
    let up = 0;
    let draining = 0;
    let down = 0;
    let slots = 0;
    let used = 0;
    // Free slots take new jobs: only an UP worker's count (a DRAINING one takes none).
    let free = 0;
    for (const w of live.workers.values()) {
      if (w.state === WorkerState.UP) up++;
      else if (w.state === WorkerState.DRAINING) draining++;
      else down++;
      if (w.state === WorkerState.UP || w.state === WorkerState.DRAINING) {
        slots += w.slots;
        used += Math.min(w.slots, live.usedSlots(w));
      }
      if (w.state === WorkerState.UP) free += Math.max(0, w.slots - live.usedSlots(w));
    }
    if (!live.workersSynced) {
      replace(workersCard, h("p", { class: "muted" }, "Loading…"));
      replace(slotsCard, h("p", { class: "muted" }, "Loading…"));
      return;
    }
    replace(
      workersCard,
      stat("Up", up),
      stat("Draining", draining),
      stat("Down", down, h("span", { class: "muted small" }, " (disconnected or down)")),
      h(
        "p",
        { class: "card-link" },
        h("a", { href: href("workers") }, `All workers (${formatCount(live.workers.size)})`),
      ),
    );
    replace(
      slotsCard,
      h("p", { class: "big" }, `${formatCount(used)} `, h("span", { class: "muted" }, `of ${formatCount(slots)} used`)),
      meter(used, slots, "Slots in use", 0.9, 1.01),
      h(
        "p",
        { class: "muted" },
        `${formatCount(free)} free for new jobs${draining ? " (draining workers take none)" : ""}`,
      ),
    );
  };

  const renderStatus = () => {
    const st = live.status;
    if (!st) {
      replace(etcdCard, h("p", { class: live.statusError ? "error" : "muted" }, live.statusError || "Loading…"));
      replace(jobsCard, h("p", { class: "muted" }, live.statusError ? "Unavailable" : "Loading…"));
      return;
    }
    // The quota applies to each member: the largest one is the one that fills first.
    const db = Math.max(0, ...st.members.map((m) => Number(m.dbSize)));
    const inUse = Math.max(0, ...st.members.map((m) => Number(m.dbSizeInUse)));
    const quota = Number(st.quotaBytes);
    replace(
      alarms,
      st.alarms.length
        ? h(
            "div",
            { class: "banner bad", role: "alert" },
            h("strong", null, `etcd alarm: ${st.alarms.join(", ")}. `),
            st.alarms.includes("NOSPACE")
              ? "etcd refuses writes until space is freed: run `crms admin recover`."
              : "See the members below.",
          )
        : null,
      live.statusError ? h("p", { class: "banner warn" }, `Status may be stale: ${live.statusError}`) : null,
    );
    replace(
      etcdCard,
      h("p", { class: "big" }, `${formatBytes(db)} `, h("span", { class: "muted" }, `of ${formatBytes(quota)} quota`)),
      meter(Number(db), quota, "etcd database size against quota"),
      h(
        "dl",
        { class: "kv compact" },
        h("dt", null, "In use"),
        h("dd", null, formatBytes(inUse)),
        h("dt", null, "Alarms"),
        h("dd", { class: st.alarms.length ? "error" : "" }, st.alarms.length ? st.alarms.join(", ") : "none"),
        h("dt", null, "Revision"),
        h("dd", null, formatCount(st.revision)),
      ),
    );
    const counts = new Map(st.jobs.map((c) => [c.state, c.count]));
    const total = st.jobs.reduce((a, c) => a + c.count, 0n);
    replace(
      jobsCard,
      h(
        "ul",
        { class: "state-counts" },
        JOB_STATES.map((s) =>
          h(
            "li",
            null,
            h(
              "a",
              {
                href: href("jobs", { state: stateName(s) }),
                "aria-label": `${stateName(s)}: ${formatCount(counts.get(s) ?? 0n)} jobs`,
              },
              stateBadge(s),
              h("span", { class: "count" }, formatCount(counts.get(s) ?? 0n)),
            ),
          ),
        ),
      ),
      h(
        "p",
        { class: "muted" },
        `${formatCount(total)} jobs kept in etcd. `,
        h("a", { href: href("jobs") }, "All jobs"),
      ),
    );
    replace(members, membersTable(st.members, st.schedulerLeader, st.replica));
  };

  let activity: { since: number; minutes: ActivityMinute[] } | undefined;
  let activityError = "";
  const stopActivity = new AbortController();
  const renderChart = () => {
    if (!activity) {
      replace(rates, h("span", { class: activityError ? "error" : "muted" }, activityError || "Loading…"));
      return;
    }
    const { minutes, since } = activity;
    // Minutes before the control plane began counting are unknown, not zero: the lines start there.
    const pad = Array<number>(Math.max(0, 60 - minutes.length)).fill(Number.NaN);
    const of = (k: keyof ActivityMinute) => [...pad, ...minutes.map((m) => m[k])];
    const sum = (k: keyof ActivityMinute) => minutes.reduce((a, m) => a + m[k], 0);
    const last = minutes.at(-1);
    const summary =
      `In the last hour ${sum("started")} jobs started and ${sum("finished")} finished; ` +
      `now ${last?.queued ?? 0} queued and ${last?.slotsUsed ?? 0} of ${last?.slotsTotal ?? 0} slots used.`;
    replace(
      rates,
      h("span", { class: "legend l-started" }, "started ", h("strong", null, formatCount(sum("started")))),
      h("span", { class: "legend l-finished" }, "finished ", h("strong", null, formatCount(sum("finished")))),
      h("span", { class: "legend l-queued" }, "queued ", h("strong", null, formatCount(last?.queued ?? 0))),
      h(
        "span",
        { class: "legend l-slots" },
        "slots used ",
        h("strong", null, `${formatCount(last?.slotsUsed ?? 0)}/${formatCount(last?.slotsTotal ?? 0)}`),
      ),
      h(
        "span",
        { class: "muted small" },
        `from the control plane${since > (minutes[0]?.minute ?? 0) ? `, counting since ${formatTime(new Date(since))}` : ""}`,
      ),
    );
    replace(
      chartBox,
      rateChart(
        [
          { label: "started", cls: "started", values: of("started") },
          { label: "finished", cls: "finished", values: of("finished") },
          { label: "queued", cls: "queued", values: of("queued") },
          { label: "slots used", cls: "slots", values: of("slotsUsed") },
        ],
        WINDOW_S,
        summary,
        chartBox.clientWidth || 600,
      ),
    );
  };
  const loadActivity = async () => {
    try {
      activity = await fetchActivity(stopActivity.signal);
      activityError = "";
    } catch (err) {
      if (stopActivity.signal.aborted) return;
      activityError = `Cannot load the last hour: ${err instanceof Error ? err.message : errorText(err)}`;
    }
    renderChart();
  };

  renderWorkers();
  renderStatus();
  renderChart();
  const offWorkers = live.onWorkers(throttleFrame(renderWorkers));
  const offStatus = live.onStatus(renderStatus);
  // The chart comes from the control plane when the page opens, then every 15 s.
  void loadActivity();
  const timer = setInterval(() => void loadActivity(), ACTIVITY_EVERY_MS);
  return {
    title: "Overview",
    el,
    dispose() {
      offWorkers();
      offStatus();
      clearInterval(timer);
      stopActivity.abort();
    },
  };
}

function membersTable(members: EtcdMember[], leader: string, replica: string): HTMLElement {
  return h(
    "div",
    null,
    h(
      "table",
      null,
      h(
        "thead",
        null,
        h(
          "tr",
          null,
          ["Endpoint", "Name", "Version", "DB size", "In use", "Raft leader", "Alarms"].map((c) =>
            h("th", { scope: "col", class: c === "DB size" || c === "In use" ? "num" : null }, c),
          ),
        ),
      ),
      h(
        "tbody",
        null,
        members.map((m) =>
          h(
            "tr",
            null,
            h("td", null, h("code", null, m.endpoint)),
            h("td", null, m.name || "—"),
            h("td", null, m.error ? h("span", { class: "error" }, m.error) : m.version),
            h("td", { class: "num" }, m.error ? "—" : formatBytes(m.dbSize)),
            h("td", { class: "num" }, m.error ? "—" : formatBytes(m.dbSizeInUse)),
            h("td", null, m.leader ? "yes" : "no"),
            h("td", { class: m.alarms.length ? "error" : "" }, m.alarms.join(", ") || "none"),
          ),
        ),
      ),
    ),
    h("p", { class: "muted small" }, `Answered by replica ${replica}; scheduler leader ${leader || "unknown"}.`),
  );
}
