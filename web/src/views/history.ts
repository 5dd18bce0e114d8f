/**
 * History: finished jobs from the history database (ListHistory), newest end
 * first, a page at a time, filtered by time, state, worker, name and labels.
 * Jobs stay here after etcd retention deleted them; a row links to the job.
 */
import { type Job, JobState } from "../../../gen/crms/v1/job_pb.js";
import { Code, codeOf, errorText, isCanceled, jobService } from "../api.js";
import { h, replace } from "../dom.js";
import {
  formatDuration,
  parsePairs,
  parseState,
  shellQuote,
  stateBadge,
  stateName,
  timeEl,
  toDate,
} from "../format.js";
import { href, type Route, type View } from "../view.js";

const FINAL = [JobState.SUCCEEDED, JobState.FAILED, JobState.KILLED, JobState.LOST];
const SINCE: Array<[string, string, number]> = [
  ["1h", "Last hour", 3600],
  ["1d", "Last day", 86400],
  ["7d", "Last 7 days", 7 * 86400],
  ["30d", "Last 30 days", 30 * 86400],
  ["all", "All time", 0],
];

/** Page-start tokens seen for one filter, so Previous can go back. */
const trail = { key: "", starts: [""] };

/** The switch between the live job list and the history, shown on both. */
export function jobsSwitch(current: "live" | "history"): HTMLElement {
  const link = (which: "live" | "history", text: string, to: string) =>
    h("a", { href: href(to), "aria-current": current === which ? "page" : null, class: "button" }, text);
  return h(
    "p",
    { class: "jobs-switch", role: "navigation", "aria-label": "Live jobs or history" },
    link("live", "Live (etcd)", "jobs"),
    " ",
    link("history", "History", "history"),
  );
}

function row(job: Job): HTMLTableRowElement {
  const cmd = shellQuote(job.spec?.command ?? []);
  const start = toDate(job.startTime);
  const end = toDate(job.endTime);
  return h(
    "tr",
    { "data-id": job.id },
    h("td", { class: "num" }, h("a", { href: href(`jobs/${job.id}`) }, job.id)),
    h("td", { class: "name" }, job.spec?.name || h("span", { class: "muted" }, "—")),
    h("td", null, stateBadge(job.state)),
    h("td", { class: "col-worker" }, job.worker || "—"),
    h("td", { class: "col-cmd" }, h("code", { title: cmd }, cmd.length > 80 ? `${cmd.slice(0, 79)}…` : cmd)),
    h("td", { class: "col-time" }, timeEl(job.endTime)),
    h("td", { class: "num col-dur" }, start && end ? formatDuration(end.getTime() - start.getTime()) : "—"),
    h(
      "td",
      { class: "col-result" },
      job.exitCode !== undefined ? `exit ${job.exitCode}` : job.signal || job.error || "",
    ),
  );
}

export function historyView(route: Route): View {
  const q = route.query;
  const since = SINCE.find(([k]) => k === q.get("since"))?.[0] ?? "7d";
  const state = parseState(q.get("state") ?? "");
  const worker = q.get("worker") ?? "";
  const name = q.get("name") ?? "";
  const label = q.get("label") ?? "";
  const after = q.get("after") ?? "";
  const query = (extra: Record<string, string> = {}) => ({
    since: since === "7d" ? undefined : since,
    state: state ? stateName(state) : undefined,
    worker,
    name,
    label,
    ...extra,
  });
  const key = JSON.stringify(query());
  if (trail.key !== key) {
    trail.key = key;
    trail.starts = [""];
  }
  let labels: Record<string, string> = {};
  let filterError = "";
  try {
    labels = parsePairs(label, "label");
  } catch (err) {
    filterError = (err as Error).message;
  }

  const ctl = new AbortController();
  const status = h("p", { class: "status-line", role: "status", "aria-live": "polite" }, "Loading history…");
  const tbody = h("tbody");
  const pager = h("nav", { class: "pager", "aria-label": "History pages" });
  const field = (id: string, text: string, input: HTMLElement) =>
    h("div", { class: "field" }, h("label", { for: id }, text), input);
  const form = h(
    "form",
    { class: "filters", role: "search", "aria-label": "Filter history" },
    field(
      "h-since",
      "Ended",
      h(
        "select",
        { id: "h-since", name: "since" },
        SINCE.map(([k, text]) => h("option", { value: k, selected: k === since }, text)),
      ),
    ),
    field(
      "h-state",
      "State",
      h(
        "select",
        { id: "h-state", name: "state" },
        h("option", { value: "" }, "Any state"),
        FINAL.map((s) => h("option", { value: stateName(s), selected: s === state }, stateName(s))),
      ),
    ),
    field(
      "h-worker",
      "Worker",
      h("input", { id: "h-worker", name: "worker", value: worker, placeholder: "Any worker" }),
    ),
    field("h-name", "Name", h("input", { id: "h-name", name: "name", value: name, placeholder: "glob: build-*" })),
    field("h-label", "Labels", h("input", { id: "h-label", name: "label", value: label, placeholder: "key=value, …" })),
    h(
      "div",
      { class: "field actions" },
      h("button", { type: "submit", class: "primary" }, "Apply"),
      h("a", { class: "button", href: href("history") }, "Clear"),
    ),
  );
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const data = new FormData(form);
    const get = (k: string) => String(data.get(k) ?? "").trim();
    location.hash = href("history", {
      since: get("since") === "7d" ? undefined : get("since"),
      state: get("state"),
      worker: get("worker"),
      name: get("name"),
      label: get("label"),
    });
  });
  for (const sel of form.querySelectorAll("select")) sel.addEventListener("change", () => form.requestSubmit());

  const el = h(
    "div",
    { class: "view jobs-view history-view" },
    h("h1", { tabindex: -1 }, "Job history"),
    jobsSwitch("history"),
    form,
    status,
    h(
      "div",
      { class: "table-wrap", role: "region", "aria-label": "History table", tabindex: 0 },
      h(
        "table",
        { class: "jobs" },
        h("caption", { class: "sr-only" }, "Finished jobs, newest end first"),
        h(
          "thead",
          null,
          h(
            "tr",
            null,
            ["ID", "Name", "State", "Worker", "Command", "Ended", "Ran for", "Result"].map((t) =>
              h("th", { scope: "col" }, t),
            ),
          ),
        ),
        tbody,
      ),
    ),
    pager,
  );

  (async () => {
    if (filterError) {
      status.textContent = `Fix the label filter: ${filterError}`;
      return;
    }
    const seconds = SINCE.find(([k]) => k === since)?.[2] ?? 0;
    try {
      const res = await jobService.listHistory(
        {
          since: seconds ? { seconds: BigInt(Math.floor(Date.now() / 1000 - seconds)), nanos: 0 } : undefined,
          states: state ? [state] : [],
          worker,
          nameGlob: name,
          labels,
          pageSize: 50,
          pageToken: after,
        },
        { signal: ctl.signal },
      );
      replace(tbody, res.jobs.map(row));
      status.textContent = res.jobs.length
        ? `${res.jobs.length} finished jobs on this page, newest end first.`
        : "No finished job in the history matches.";
      const at = trail.starts.indexOf(after);
      if (res.nextPageToken && !trail.starts.includes(res.nextPageToken)) trail.starts.push(res.nextPageToken);
      replace(
        pager,
        at > 0
          ? h("a", { class: "button", href: href("history", query({ after: trail.starts[at - 1] ?? "" })) }, "Previous")
          : null,
        res.nextPageToken
          ? h("a", { class: "button", href: href("history", query({ after: res.nextPageToken })) }, "Next")
          : null,
      );
    } catch (err) {
      if (isCanceled(err)) return;
      status.textContent =
        codeOf(err) === Code.FailedPrecondition
          ? "This control plane keeps no job history (started with --no-history)."
          : `Could not load the history: ${errorText(err)}`;
    }
  })();

  return {
    title: "Job history",
    el,
    dispose() {
      ctl.abort();
    },
  };
}
