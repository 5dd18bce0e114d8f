/**
 * Jobs: one page at a time through ListJobs page tokens (the page never holds
 * every job), filtered by state, worker and label, searched by id or name; rows
 * on screen follow the job watch.
 */
import type { MessageInitShape } from "@bufbuild/protobuf";
import { type Job, JobState, type ListJobsRequestSchema } from "../../../gen/crms/v1/job_pb.js";
import { Code, codeOf, errorText, isCanceled, jobService } from "../api.js";
import { h, replace, throttle } from "../dom.js";
import {
  arrayCountsText,
  formatDuration,
  isFinal,
  JOB_STATES,
  parsePairs,
  parseState,
  shellQuote,
  stateBadge,
  stateName,
  timeEl,
  toDate,
} from "../format.js";
import { type JobBatch, live } from "../live.js";
import { href, type Route, type View } from "../view.js";
import { jobsSwitch } from "./history.js";

const PAGE_SIZES = [25, 50, 100, 200];
/** A name search reads at most this many jobs per page shown, so it stays quick at 100,000 jobs. */
const SEARCH_SCAN_LIMIT = 20_000;

interface Filters {
  /** Any of these states (none: any state). */
  states: JobState[];
  worker: string;
  label: string;
  q: string;
  size: number;
  after: string;
  /** Only the tasks of this array parent (array tasks are otherwise left out). */
  array: string;
  /** ListJobs order_by: "-id" (newest first, the default), "name", "-state"… */
  sort: string;
}

/** The sortable columns: header text -> ListJobs order key. */
const SORTABLE: Record<string, string> = { ID: "id", Name: "name", State: "state", Submitted: "submit_time" };
const SORTS = new Set(
  Object.values(SORTABLE)
    .flatMap((k) => [k, `-${k}`])
    .concat(["end_time", "-end_time"]),
);
const DEFAULT_SORT = "-id";

/** True for the orders whose page tokens are job ids (a search pages through these). */
const byId = (sort: string) => /^-?(id|submit_time)$/.test(sort);

/** The state list was open when its filter changed: it opens again in the new view. */
let statesOpen = false;
let statesFocus = "";

/** Page-start tokens seen for one filter, so Previous can go back. */
const trail = { key: "", starts: [""] };

function filtersOf(query: URLSearchParams): Filters {
  const size = Number(query.get("size"));
  return {
    states: parseStates(query.get("state") ?? ""),
    worker: query.get("worker") ?? "",
    label: query.get("label") ?? "",
    q: (query.get("q") ?? "").trim(),
    size: PAGE_SIZES.includes(size) ? size : 50,
    after: query.get("after") ?? "",
    array: query.get("array") ?? "",
    sort: SORTS.has(query.get("sort") ?? "") ? (query.get("sort") as string) : DEFAULT_SORT,
  };
}

function queryOf(f: Filters, after = ""): Record<string, string | undefined> {
  return {
    state: f.states.length ? f.states.map(stateName).join(",") : undefined,
    worker: f.worker,
    label: f.label,
    q: f.q,
    size: f.size === 50 ? undefined : String(f.size),
    after,
    array: f.array,
    sort: f.sort === DEFAULT_SORT ? undefined : f.sort,
  };
}

/** The states of "RUNNING,FAILED" (any case, in life order, unknown names left out). */
function parseStates(text: string): JobState[] {
  const chosen = new Set(text.split(",").map((s) => parseState(s.trim())));
  return JOB_STATES.filter((s) => chosen.has(s));
}

/** Compares decimal job ids as numbers. */
export function compareIds(a: string, b: string): number {
  return a.length - b.length || (a < b ? -1 : a > b ? 1 : 0);
}

function durationOf(job: Job, now = Date.now()): number | undefined {
  const start = toDate(job.startTime);
  if (!start) return undefined;
  const end = toDate(job.endTime);
  if (end) return end.getTime() - start.getTime();
  return job.state === JobState.RUNNING ? now - start.getTime() : undefined;
}

function resultOf(job: Job): string {
  if (job.exitCode !== undefined) return `exit ${job.exitCode}`;
  if (job.signal) return job.signal;
  if (job.state === JobState.PENDING && job.pendingReason) return job.pendingReason;
  return job.error || "";
}

function jobRow(job: Job): HTMLTableRowElement {
  const cmd = shellQuote(job.spec?.command ?? []);
  const d = durationOf(job);
  return h(
    "tr",
    { "data-id": job.id, class: job.killRequested && !isFinal(job.state) ? "killing" : null },
    h("td", { class: "num" }, h("a", { href: href(`jobs/${job.id}`) }, job.id)),
    h("td", { class: "name", title: job.spec?.name || null }, job.spec?.name || h("span", { class: "muted" }, "—")),
    h(
      "td",
      null,
      stateBadge(job.state),
      job.killRequested && !isFinal(job.state) ? h("span", { class: "small muted" }, " killing") : null,
      job.arrayCounts ? h("span", { class: "small muted" }, ` ${arrayCountsText(job.arrayCounts)}`) : null,
    ),
    h(
      "td",
      { class: "col-worker" },
      job.worker ? h("a", { href: href("workers", { q: job.worker }) }, job.worker) : "—",
    ),
    h("td", { class: "col-cmd" }, h("code", { title: cmd }, cmd.length > 80 ? `${cmd.slice(0, 79)}…` : cmd)),
    h("td", { class: "col-time" }, timeEl(job.submitTime)),
    h(
      "td",
      {
        class: "num col-dur",
        "data-running": job.state === JobState.RUNNING ? String(toDate(job.startTime)?.getTime() ?? "") : null,
      },
      d === undefined ? "—" : formatDuration(d),
    ),
    h("td", { class: "col-result" }, resultOf(job)),
  );
}

export function jobsView(route: Route): View {
  const f = filtersOf(route.query);
  const key = JSON.stringify({ ...f, after: undefined });
  if (trail.key !== key) {
    trail.key = key;
    trail.starts = [""];
  }
  let labels: Record<string, string> = {};
  let filterError = "";
  try {
    labels = parsePairs(f.label, "label");
  } catch (err) {
    filterError = (err as Error).message;
  }

  const ctl = new AbortController();
  const status = h("p", { class: "status-line", role: "status", "aria-live": "polite" }, "Loading jobs…");
  const tbody = h("tbody");
  const table = h(
    "table",
    { class: "jobs", "aria-busy": "true", "aria-describedby": "jobs-status" },
    h(
      "caption",
      { class: "sr-only" },
      `Jobs, ordered by ${f.sort.replace(/^-/, "")}${f.sort.startsWith("-") ? ", descending" : ""}`,
    ),
    h(
      "thead",
      null,
      h(
        "tr",
        null,
        sortableTh(f, "ID", "num"),
        sortableTh(f, "Name"),
        sortableTh(f, "State"),
        h("th", { scope: "col", class: "col-worker" }, "Worker"),
        h("th", { scope: "col", class: "col-cmd" }, "Command"),
        sortableTh(f, "Submitted", "col-time"),
        h("th", { scope: "col", class: "num col-dur" }, "Ran for"),
        h("th", { scope: "col", class: "col-result" }, "Result"),
      ),
    ),
    tbody,
  );
  status.id = "jobs-status";
  const pager = h("nav", { class: "pager", "aria-label": "Job pages" });
  const workerList = h(
    "datalist",
    { id: "jobs-workers" },
    [...live.workers.keys()].sort().map((n) => h("option", { value: n })),
  );

  // Several states at once: a dropdown of checkboxes; its summary names the choice.
  const stateChooser = h(
    "details",
    { class: "multi", id: "f-state", open: statesOpen },
    h(
      "summary",
      { "aria-labelledby": "f-state-label f-state-summary" },
      h("span", { id: "f-state-summary" }, f.states.length ? f.states.map(stateName).join(", ") : "Any state"),
    ),
    h(
      "div",
      { class: "multi-options", role: "group", "aria-label": "States" },
      JOB_STATES.map((s) =>
        h(
          "label",
          null,
          h("input", { type: "checkbox", name: "state", value: stateName(s), checked: f.states.includes(s) }),
          ` ${stateName(s)}`,
        ),
      ),
    ),
  );
  // The list closes on Escape (focus back on its summary) and on a click elsewhere.
  stateChooser.addEventListener("keydown", (ev) => {
    if (ev.key !== "Escape" || !stateChooser.open) return;
    stateChooser.open = false;
    stateChooser.querySelector("summary")?.focus();
  });
  document.addEventListener(
    "pointerdown",
    (ev) => {
      if (stateChooser.open && !stateChooser.contains(ev.target as Node)) stateChooser.open = false;
    },
    { signal: ctl.signal },
  );
  const form = h(
    "form",
    { class: "filters", role: "search", "aria-label": "Filter jobs" },
    h(
      "div",
      { class: "field" },
      h("label", { for: "f-q" }, "Search"),
      h("input", {
        id: "f-q",
        name: "q",
        type: "search",
        value: f.q,
        placeholder: "Job id or name",
        autocomplete: "off",
      }),
    ),
    h("div", { class: "field" }, h("span", { class: "label", id: "f-state-label" }, "States"), stateChooser),
    h(
      "div",
      { class: "field" },
      h("label", { for: "f-worker" }, "Worker"),
      h("input", {
        id: "f-worker",
        name: "worker",
        value: f.worker,
        list: "jobs-workers",
        autocomplete: "off",
        placeholder: "Any worker",
      }),
      workerList,
    ),
    h(
      "div",
      { class: "field" },
      h("label", { for: "f-label" }, "Labels"),
      h("input", {
        id: "f-label",
        name: "label",
        value: f.label,
        placeholder: "key=value, …",
        autocomplete: "off",
        "aria-invalid": filterError ? "true" : null,
        "aria-describedby": filterError ? "f-label-err" : null,
      }),
      filterError ? h("span", { id: "f-label-err", class: "error small" }, filterError) : null,
    ),
    h(
      "div",
      { class: "field narrow" },
      h("label", { for: "f-size" }, "Per page"),
      h(
        "select",
        { id: "f-size", name: "size" },
        PAGE_SIZES.map((n) => h("option", { value: String(n), selected: n === f.size }, String(n))),
      ),
    ),
    h(
      "div",
      { class: "field actions" },
      h("button", { type: "submit", class: "primary" }, "Apply"),
      h("a", { class: "button", href: href("jobs") }, "Clear"),
    ),
  );
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const data = new FormData(form);
    const next: Filters = {
      states: parseStates(data.getAll("state").map(String).join(",")),
      worker: String(data.get("worker") ?? "").trim(),
      label: String(data.get("label") ?? "").trim(),
      q: String(data.get("q") ?? "").trim(),
      size: Number(data.get("size")) || 50,
      after: "",
      array: f.array,
      sort: f.sort,
    };
    location.hash = href("jobs", queryOf(next));
  });
  // A changed select applies at once; text fields apply on Enter or Apply.
  for (const sel of form.querySelectorAll("select")) sel.addEventListener("change", () => form.requestSubmit());
  // A ticked state applies at once too, and the list stays open for the next one.
  for (const box of stateChooser.querySelectorAll("input"))
    box.addEventListener("change", () => {
      statesOpen = true;
      const focus = box.value;
      form.requestSubmit();
      statesFocus = focus;
    });
  if (statesOpen) {
    const again = statesFocus;
    queueMicrotask(() => stateChooser.querySelector<HTMLInputElement>(`input[value="${again}"]`)?.focus());
  }
  statesOpen = false;
  statesFocus = "";

  const el = h(
    "div",
    { class: "view jobs-view" },
    h("h1", { tabindex: -1 }, f.array ? `Tasks of array ${f.array}` : "Jobs"),
    f.array ? null : jobsSwitch("live"),
    form,
    status,
    h("div", { class: "table-wrap", role: "region", "aria-label": "Jobs table", tabindex: 0 }, table),
    pager,
  );

  const rows = new Map<string, Job>();
  /** The status line; rows that arrive live update it too (not "No jobs" above them). */
  let showStatus = () => {};
  let next = "";
  let lastId = "";

  const request = (
    pageToken: string,
    pageSize: number,
    orderBy = f.sort,
  ): MessageInitShape<typeof ListJobsRequestSchema> => ({
    states: f.states,
    worker: f.worker,
    labels,
    pageSize,
    pageToken,
    arrayParent: f.array,
    // A search finds array tasks by name too ("render[13]").
    includeTasks: Boolean(f.q),
    orderBy,
  });
  let total = 0;

  const needle = f.q.toLowerCase();
  const matchesText = (job: Job) =>
    !needle ||
    (job.spec?.name ?? "").toLowerCase().includes(needle) ||
    (job.spec?.command ?? []).join(" ").toLowerCase().includes(needle);

  const matches = (job: Job) =>
    (f.array ? job.arrayParent === f.array : !job.arrayParent || Boolean(f.worker) || Boolean(f.q)) &&
    (!f.states.length || f.states.includes(job.state)) &&
    (!f.worker || job.worker === f.worker) &&
    Object.entries(labels).every(([k, v]) => job.spec?.labels[k] === v) &&
    matchesText(job);

  async function load(): Promise<void> {
    if (filterError) {
      status.textContent = "Fix the label filter to list jobs.";
      table.setAttribute("aria-busy", "false");
      return;
    }
    const signal = ctl.signal;
    try {
      const jobs: Job[] = [];
      let note = "";
      if (f.q && /^[1-9][0-9]{0,15}$/.test(f.q) && !f.after) {
        try {
          const { job } = await jobService.getJob({ id: f.q }, { signal });
          if (job) {
            jobs.push(job);
            note = `Job ${job.id} found by id. `;
          }
        } catch (err) {
          if (codeOf(err) !== Code.NotFound) throw err;
        }
      }
      if (!jobs.length && f.q) {
        // No name index on the server: scan pages, bounded, and let the user go further.
        let token = f.after;
        let scanned = 0;
        for (;;) {
          status.textContent = `Searching… ${scanned.toLocaleString("en-US")} jobs read`;
          // A search pages by id (newest first unless an id order was picked).
          const res = await jobService.listJobs(request(token, 1000, byId(f.sort) ? f.sort : DEFAULT_SORT), {
            signal,
          });
          let stopAt = "";
          for (const job of res.jobs) {
            scanned++;
            token = job.id;
            if (matchesText(job)) {
              jobs.push(job);
              if (jobs.length >= f.size) {
                stopAt = job.id;
                break;
              }
            }
          }
          if (stopAt) {
            next = res.jobs.at(-1)?.id === stopAt && !res.nextPageToken ? "" : stopAt;
            break;
          }
          if (!res.nextPageToken) {
            next = "";
            break;
          }
          if (scanned >= SEARCH_SCAN_LIMIT) {
            next = token;
            note = `Read ${scanned.toLocaleString("en-US")} jobs up to id ${token}; more may match further on. `;
            break;
          }
        }
      } else if (!jobs.length) {
        const res = await jobService.listJobs(request(f.after, f.size), { signal });
        jobs.push(...res.jobs);
        next = res.nextPageToken;
        total = res.totalSize;
      }
      rows.clear();
      for (const j of jobs) rows.set(j.id, j);
      lastId = jobs.at(-1)?.id ?? f.after;
      replace(tbody, jobs.length ? jobs.map(jobRow) : emptyRow(f));
      const idx = trail.starts.indexOf(f.after);
      const offset = /^p(\d+)$/.exec(f.after);
      const pageNo = offset ? Math.floor(Number(offset[1]) / f.size) + 1 : idx >= 0 ? idx + 1 : undefined;
      if (next) {
        if (idx >= 0) trail.starts.splice(idx + 1, Infinity, next);
      }
      showStatus = () => {
        const shown = rows.size;
        const of = !f.q && total ? ` of ${total.toLocaleString("en-US")}` : "";
        status.textContent = `${note}${shown ? `Showing ${shown}${of} job${(total || shown) === 1 ? "" : "s"}` : "No jobs"}${
          pageNo ? ` on page ${pageNo}` : ""
        }${next ? "; more on the next page." : "."}`;
      };
      showStatus();
      renderPager(idx);
    } catch (err) {
      if (isCanceled(err)) return;
      status.textContent = `Could not list jobs: ${errorText(err)}`;
      status.classList.add("error");
    } finally {
      table.setAttribute("aria-busy", "false");
    }
  }

  function renderPager(idx: number): void {
    const links: Node[] = [];
    if (f.after) {
      links.push(h("a", { class: "button", href: href("jobs", queryOf(f)) }, "First page"));
      if (idx > 0)
        links.push(
          h("a", { class: "button", href: href("jobs", queryOf(f, trail.starts[idx - 1])), rel: "prev" }, "Previous"),
        );
    }
    if (next) links.push(h("a", { class: "button", href: href("jobs", queryOf(f, next)), rel: "next" }, "Next page"));
    // The last page by offset ("p<N>" tokens work with every order).
    const lastStart = total > f.size ? Math.floor((total - 1) / f.size) * f.size : 0;
    if (next && !f.q && lastStart > 0)
      links.push(h("a", { class: "button", href: href("jobs", queryOf(f, `p${lastStart}`)) }, "Last page"));
    replace(pager, links);
  }

  const onBatch = (batch: JobBatch) => {
    const before = rows.size;
    for (const [id, job] of batch.put) {
      const row = tbody.querySelector(`tr[data-id="${id}"]`);
      if (row) {
        rows.set(id, job);
        row.replaceWith(jobRow(job));
      } else if (f.sort === DEFAULT_SORT && !f.after && !f.q && matches(job) && !rows.has(id)) {
        // Newest first: a new job appears at the top of the first page.
        if (rows.size && compareIds(id, [...rows.keys()][0] as string) < 0) continue;
        if (!rows.size) tbody.replaceChildren();
        rows.set(id, job);
        tbody.prepend(jobRow(job));
        total++;
        if (rows.size > f.size) {
          const lastRow = tbody.lastElementChild;
          const dropped = lastRow?.getAttribute("data-id");
          lastRow?.remove();
          if (dropped) rows.delete(dropped);
          next = tbody.lastElementChild?.getAttribute("data-id") ?? next;
          renderPager(trail.starts.indexOf(f.after));
        }
      } else if (f.sort === "id" && !next && !f.q && matches(job) && (!lastId || compareIds(id, lastId) > 0)) {
        // New jobs sort last: on the last page they appear here, else the next page grows.
        if (rows.size < f.size) {
          if (!rows.size) tbody.replaceChildren();
          rows.set(id, job);
          lastId = id;
          tbody.appendChild(jobRow(job));
        } else {
          next = lastId;
          renderPager(trail.starts.indexOf(f.after));
        }
      }
    }
    if (rows.size !== before) showStatus();
    for (const id of batch.deleted) {
      const row = tbody.querySelector(`tr[data-id="${id}"]`);
      if (row) {
        row.classList.add("deleted");
        row.setAttribute("aria-label", `job ${id} (deleted)`);
      }
    }
  };
  const offJobs = live.onJobs(onBatch);
  const refreshWorkers = throttle(
    () =>
      replace(
        workerList,
        [...live.workers.keys()].sort().map((n) => h("option", { value: n })),
      ),
    5000,
  );
  const offWorkers = live.onWorkers(refreshWorkers);
  // Running rows' durations tick locally.
  const ticker = setInterval(() => {
    const now = Date.now();
    for (const td of tbody.querySelectorAll<HTMLElement>("td[data-running]")) {
      const start = Number(td.dataset.running);
      if (start) td.textContent = formatDuration(now - start);
    }
  }, 1000);
  void load();

  return {
    title: "Jobs",
    el,
    dispose() {
      ctl.abort();
      offJobs();
      offWorkers();
      refreshWorkers.cancel();
      clearInterval(ticker);
    },
  };
}

/** A column header that sorts by its column: a link to the same list ordered by it (again: reversed). */
function sortableTh(f: Filters, label: string, cls?: string): HTMLElement {
  const key = SORTABLE[label] as string;
  const current = f.sort.replace(/^-/, "") === key ? (f.sort.startsWith("-") ? "descending" : "ascending") : "none";
  const nextSort =
    current === "ascending" ? `-${key}` : current === "descending" ? key : key === "name" ? key : `-${key}`;
  const arrow = current === "ascending" ? " ▲" : current === "descending" ? " ▼" : "";
  return h(
    "th",
    { scope: "col", class: cls ?? null, "aria-sort": current },
    h(
      "a",
      { href: href("jobs", queryOf({ ...f, sort: nextSort })), title: `Sort by ${label.toLowerCase()}` },
      label,
      arrow,
    ),
  );
}

function emptyRow(f: Filters): HTMLElement {
  const filtered = f.states.length || f.worker || f.label || f.q;
  return h(
    "tr",
    null,
    h(
      "td",
      { colspan: 8, class: "empty" },
      filtered ? "No job matches these filters. " : "No jobs yet. ",
      h("a", { href: href("submit") }, "Submit a job"),
    ),
  );
}
