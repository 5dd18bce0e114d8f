/**
 * One job: what was asked, what happened (attempts), its output (followed live
 * with StreamOutput while it runs) and the controls: kill, hold, release, delete.
 */
import { type Attempt, type Job, JobState, OutputStream } from "../../../gen/crms/v1/job_pb.js";
import { Code, codeOf, errorText, isCanceled, jobService } from "../api.js";
import { h, replace, throttle, toast } from "../dom.js";
import {
  arrayCountsText,
  conditionName,
  formatDuration,
  formatResources,
  formatUsage,
  isFinal,
  SECRET_NAME,
  shellQuote,
  stateBadge,
  stateName,
  timeEl,
  toDate,
} from "../format.js";
import { live } from "../live.js";
import { href, type Route, type View } from "../view.js";

/** Characters of output kept on screen; older output is dropped from the top. */
const OUTPUT_LIMIT = 1_000_000;

function span(a: Date | undefined, b: Date | undefined): string {
  return a && b ? formatDuration(b.getTime() - a.getTime()) : "—";
}

function chips(m: { [k: string]: string }): Node | string {
  const keys = Object.keys(m).sort();
  if (!keys.length) return "none";
  return h(
    "ul",
    { class: "chips" },
    keys.map((k) => h("li", null, h("code", null, `${k}=${m[k]}`))),
  );
}

/** The attempt's run time, ticking while it runs. */
function runningSpan(a: Attempt): HTMLElement {
  const start = toDate(a.startTime);
  const end = toDate(a.endTime);
  const running = start && !end && a.outcome === JobState.UNSPECIFIED;
  return h(
    "td",
    { class: "num", "data-running": running ? String(start.getTime()) : null },
    running ? formatDuration(Date.now() - start.getTime()) : span(start, end),
  );
}

function outcome(a: Attempt): Node | string {
  if (a.outcome === JobState.UNSPECIFIED) return toDate(a.startTime) ? "running" : "assigned";
  if (a.timedOut) return h("span", null, stateBadge(a.outcome), " timeout");
  if (a.outcome === JobState.LOST || a.outcome === JobState.PREEMPTED)
    return h("span", null, stateBadge(a.outcome), " not counted as a retry");
  return stateBadge(a.outcome);
}

/** Array membership, task counts and dependencies, when the job has any. */
function relations(job: Job): Node[] {
  const a = job.spec?.array;
  const after = job.spec?.after ?? [];
  if (!a && !job.arrayParent && !after.length) return [];
  return [
    h(
      "section",
      { "aria-labelledby": "job-relations" },
      h("h2", { id: "job-relations" }, "Array and dependencies"),
      h(
        "dl",
        { class: "kv" },
        a
          ? [
              row("Array", `${a.first}-${a.last}${a.maxRunning ? `, at most ${a.maxRunning} running` : ""}`),
              row(
                "Tasks",
                h(
                  "span",
                  { class: "array-counts" },
                  job.arrayCounts ? arrayCountsText(job.arrayCounts) : "—",
                  " ",
                  h("a", { href: href("jobs", { array: job.id }) }, "list tasks"),
                ),
              ),
            ]
          : [],
        job.arrayParent
          ? row(
              "Array task",
              h(
                "span",
                null,
                `index ${job.arrayIndex} of `,
                h("a", { href: href(`jobs/${job.arrayParent}`) }, `array ${job.arrayParent}`),
              ),
            )
          : [],
        after.length
          ? row(
              "Runs after",
              h(
                "ul",
                { class: "dependencies" },
                after.map((d) =>
                  h("li", null, h("a", { href: href(`jobs/${d.jobId}`) }, `job ${d.jobId}`), ` ${conditionName(d)}`),
                ),
              ),
            )
          : [],
      ),
    ),
  ];
}

function attemptsTable(job: Job): HTMLElement {
  if (!job.attempts.length) return h("p", { class: "muted" }, "Not run yet.");
  return h(
    "div",
    { class: "table-wrap", role: "region", "aria-label": "Attempts", tabindex: 0 },
    h(
      "table",
      null,
      h(
        "thead",
        null,
        h(
          "tr",
          null,
          ["#", "Worker", "Assigned", "Started", "Ended", "Ran for", "Outcome", "Exit", "Used", "Error"].map((c) =>
            h("th", { scope: "col" }, c),
          ),
        ),
      ),
      h(
        "tbody",
        null,
        job.attempts.map((a) =>
          h(
            "tr",
            null,
            h("td", { class: "num" }, String(a.number)),
            h("td", null, a.worker ? h("a", { href: href("workers", { q: a.worker }) }, a.worker) : "—"),
            h("td", null, timeEl(a.assignTime)),
            h("td", null, timeEl(a.startTime)),
            h("td", null, timeEl(a.endTime)),
            runningSpan(a),
            h("td", null, outcome(a)),
            h("td", { class: "num" }, a.exitCode !== undefined ? String(a.exitCode) : a.signal || "—"),
            h("td", { class: "usage" }, a.usage ? formatUsage(a.usage) : "—"),
            h("td", { class: "error-cell" }, a.error || ""),
          ),
        ),
      ),
    ),
  );
}

function row(label: string, value: Node | string | null | undefined): Node[] {
  return [h("dt", null, label), h("dd", null, value ?? "—")];
}

/** Where the job stands in fair share: queue, user, what it asks for and what it used. */
function queueSection(job: Job): HTMLElement {
  const spec = job.spec;
  const r = spec?.resources;
  // An unset cpu count is the default, 1.
  const asked = { cpus: r?.cpus || 1, memoryBytes: r?.memoryBytes ?? 0n, gpus: r?.gpus ?? 0, named: r?.named ?? {} };
  return h(
    "section",
    { "aria-labelledby": "job-queue" },
    h("h2", { id: "job-queue" }, "Queue and resources"),
    h(
      "dl",
      { class: "kv" },
      row("Queue", h("a", { href: href("queues") }, job.queue || spec?.queue || "default")),
      // On a server without tokens the owner label is who fair share counts the job against.
      row("User", job.user || spec?.labels["crms.io/owner"] || null),
      job.state === JobState.PENDING && job.queuePosition
        ? row("Queue position", `${job.queuePosition} (1 = next)`)
        : [],
      row("Requested", formatResources(asked)),
      row("Preemptible", spec?.preemptible ? "yes" : "no (unless its queue is)"),
      job.preemptions || job.preemptRequested
        ? row(
            "Preemptions",
            `${job.preemptions} (not counted as retries)${job.preemptRequested && !isFinal(job.state) ? " · stopping now" : ""}`,
          )
        : [],
      job.usage ? row("Used", formatUsage(job.usage)) : [],
    ),
  );
}

function details(job: Job): HTMLElement {
  const spec = job.spec;
  const submitted = toDate(job.submitTime);
  const started = toDate(job.startTime);
  const ended = toDate(job.endTime);
  const env = Object.keys(spec?.env ?? {}).sort();
  return h(
    "div",
    { class: "job-details" },
    h(
      "section",
      { "aria-labelledby": "job-cmd" },
      h("h2", { id: "job-cmd" }, "Command"),
      h("pre", { class: "command", tabindex: 0 }, h("code", null, shellQuote(spec?.command ?? []))),
    ),
    h(
      "div",
      { class: "columns" },
      h(
        "section",
        { "aria-labelledby": "job-status" },
        h("h2", { id: "job-status" }, "Status"),
        h(
          "dl",
          { class: "kv" },
          row(
            "State",
            h("span", null, stateBadge(job.state), job.killRequested && !isFinal(job.state) ? " kill requested" : ""),
          ),
          job.state === JobState.PENDING ? row("Waiting because", job.pendingReason) : [],
          row("Worker", job.worker ? h("a", { href: href("workers", { q: job.worker }) }, job.worker) : null),
          row("Process id", job.pid ? String(job.pid) : null),
          row("Exit code", job.exitCode !== undefined ? String(job.exitCode) : null),
          job.signal ? row("Signal", job.signal) : [],
          job.error ? row("Error", h("span", { class: "error" }, job.error)) : [],
          row("Attempt", `${job.attempt}${spec?.maxRetries ? ` of up to ${spec.maxRetries + 1}` : ""}`),
          row(
            "Failures / lost",
            // The last failed run of a job that ran out of retries is not a retry.
            `${job.failures} failed (${Math.min(job.failures, spec?.maxRetries ?? 0)} of ${spec?.maxRetries ?? 0} retries used) / ${job.lostCount} lost (${Math.min(job.lostCount, spec?.maxLostRetries || 3)} of ${spec?.maxLostRetries || 3} requeues)`,
          ),
        ),
      ),
      h(
        "section",
        { "aria-labelledby": "job-times" },
        h("h2", { id: "job-times" }, "Times"),
        h(
          "dl",
          { class: "kv" },
          row("Submitted", timeEl(job.submitTime)),
          row("Started", timeEl(job.startTime)),
          row("Ended", timeEl(job.endTime)),
          row("Waited", span(submitted, started)),
          row(
            "Ran for",
            h(
              "span",
              { "data-running": job.state === JobState.RUNNING && started ? String(started.getTime()) : null },
              job.state === JobState.RUNNING && started
                ? formatDuration(Date.now() - started.getTime())
                : span(started, ended),
            ),
          ),
        ),
      ),
      queueSection(job),
      h(
        "section",
        { "aria-labelledby": "job-spec" },
        h("h2", { id: "job-spec" }, "Placement"),
        h(
          "dl",
          { class: "kv" },
          row("Priority", String(spec?.priority ?? 0)),
          row("Target worker", spec?.targetWorker || "any"),
          row("Constraints", chips(spec?.constraints ?? {})),
          row("Labels", chips(spec?.labels ?? {})),
          row("Max retries", String(spec?.maxRetries ?? 0)),
          row("Timeout", spec?.timeoutSeconds ? `${spec.timeoutSeconds} s` : "none"),
          row("Working dir", spec?.workingDir ? h("code", null, spec.workingDir) : "worker's job directory"),
          job.requestId ? row("Request id", h("code", null, job.requestId)) : [],
        ),
      ),
    ),
    relations(job),
    h(
      "section",
      { "aria-labelledby": "job-env" },
      h("h2", { id: "job-env" }, "Environment"),
      env.length
        ? h(
            "div",
            { class: "table-wrap", role: "region", "aria-label": "Environment", tabindex: 0 },
            h(
              "table",
              { class: "env" },
              h(
                "thead",
                null,
                h("tr", null, h("th", { scope: "col" }, "Variable"), h("th", { scope: "col" }, "Value")),
              ),
              h(
                "tbody",
                null,
                env.map((k) =>
                  h("tr", null, h("td", null, h("code", null, k)), h("td", null, envValue(k, spec?.env[k] ?? ""))),
                ),
              ),
            ),
          )
        : h("p", { class: "muted" }, "Only the worker's own environment."),
    ),
    h(
      "section",
      { "aria-labelledby": "job-attempts" },
      h("h2", { id: "job-attempts" }, "Attempts"),
      attemptsTable(job),
    ),
  );
}

/** The output panel: one <pre>, stderr marked, followed while the job runs. */
class OutputPanel {
  readonly el: HTMLElement;
  private readonly pre: HTMLPreElement;
  private readonly status: HTMLElement;
  private readonly follow: HTMLInputElement;
  private ctl?: AbortController;
  private attempt = -1;
  private mode: "idle" | "streaming" | "done" = "idle";
  private chars = 0;
  private decoders = new Map<OutputStream, TextDecoder>();
  private scrollQueued = false;
  private retryTimer?: ReturnType<typeof setTimeout>;
  /** The search box, the matching lines it shows instead of the whole output, and their count. */
  private readonly search: HTMLInputElement;
  private readonly matches: HTMLPreElement;
  private readonly matchCount: HTMLElement;
  private readonly refilter = throttle(() => this.filter(), 250);
  private readonly download: HTMLAnchorElement;
  private blobUrl = "";
  private fetching = false;
  private fullReady = false;

  constructor(private readonly id: string) {
    this.pre = h("pre", { class: "output", tabindex: 0, "aria-label": `Output of job ${id}` });
    this.matches = h("pre", {
      class: "output matches",
      tabindex: 0,
      hidden: true,
      "aria-label": `Output lines of job ${id} that match the search`,
    });
    this.matchCount = h("span", { class: "small muted", role: "status", "aria-live": "polite" });
    this.search = h("input", {
      type: "search",
      id: "output-search",
      placeholder: "Find in output",
      autocomplete: "off",
      "aria-label": "Search the output",
      oninput: () => this.refilter(),
    });
    this.download = h(
      "a",
      {
        class: "button small",
        href: "#",
        download: `job-${id}.log`,
        title: "The output shown here (stdout and stderr) as a file",
        // The file is made when asked for: from the output on screen, or read again in full
        // when the screen dropped its start.
        onclick: (ev: MouseEvent) => this.prepareDownload(ev),
      },
      "Download",
    );
    this.status = h("p", { class: "status-line", role: "status", "aria-live": "polite" });
    this.follow = h("input", { type: "checkbox", id: "follow", checked: true });
    this.el = h(
      "section",
      { class: "output-panel", "aria-labelledby": "job-output" },
      h(
        "div",
        { class: "section-head" },
        h("h2", { id: "job-output" }, "Output"),
        h(
          "span",
          { class: "legend-out" },
          h("span", { class: "stdout-key" }, "stdout"),
          " ",
          h("span", { class: "stderr-key" }, "stderr"),
        ),
        h("label", { class: "check" }, this.follow, " Scroll with new output"),
      ),
      h("div", { class: "output-tools" }, this.search, this.matchCount, this.download),
      this.status,
      this.pre,
      this.matches,
    );
  }

  /** Starts, restarts or leaves the stream as the job's state asks. */
  update(job: Job): void {
    const running = job.state === JobState.RUNNING;
    const final = isFinal(job.state);
    if (running && (this.mode === "idle" || job.attempt !== this.attempt)) this.start(job, true);
    else if (final && this.mode === "idle") this.start(job, false);
    else if (!running && !final && this.mode === "idle")
      this.status.textContent =
        job.state === JobState.HELD
          ? "The job is held; output appears once it runs."
          : "Output appears once the job starts.";
  }

  private start(job: Job, follow: boolean): void {
    this.stop();
    this.ctl = new AbortController();
    this.attempt = job.attempt;
    this.mode = "streaming";
    this.pre.replaceChildren();
    this.chars = 0;
    this.decoders.clear();
    this.status.textContent = follow ? "Following live output…" : "Loading output…";
    void this.read(follow, this.ctl.signal);
  }

  private async read(follow: boolean, signal: AbortSignal): Promise<void> {
    let truncated = false;
    try {
      for await (const chunk of jobService.streamOutput({ id: this.id, follow }, { signal })) {
        truncated ||= chunk.truncated;
        this.append(chunk.stream, chunk.data);
      }
      for (const s of this.decoders.keys()) this.append(s, new Uint8Array(), true);
      this.mode = "done";
      const empty = this.chars === 0;
      this.status.textContent = `${follow ? "The job ended; output complete" : "Output complete"}${empty ? " (no output)" : ""}${
        truncated
          ? ". Only the tail kept with the job is shown: the worker that has the full output is not attached."
          : "."
      }`;
    } catch (err) {
      if (isCanceled(err) || signal.aborted) return;
      const job = current.get(this.id);
      if (!follow || !job || isFinal(job.state)) {
        // A finished job's output will not come back by asking again.
        this.mode = "done";
        this.status.textContent = `Output unavailable: ${errorText(err)}.`;
        return;
      }
      // A running job's stream can break with its worker's connection: follow again soon.
      this.mode = "idle";
      this.status.textContent = `Output interrupted: ${errorText(err)}. Retrying…`;
      this.retryTimer = setTimeout(() => {
        const latest = current.get(this.id);
        if (latest) this.update(latest);
      }, 3000);
    }
  }

  private append(stream: OutputStream, data: Uint8Array, flush = false): void {
    let dec = this.decoders.get(stream);
    if (!dec) this.decoders.set(stream, (dec = new TextDecoder()));
    const text = dec.decode(data, { stream: !flush });
    if (!text) return;
    const cls = stream === OutputStream.STDERR ? "stderr" : "stdout";
    const last = this.pre.lastElementChild as HTMLElement | null;
    if (last?.className === cls) last.append(text);
    else this.pre.append(h("span", { class: cls }, text));
    this.chars += text.length;
    while (this.chars > OUTPUT_LIMIT && this.pre.firstElementChild) {
      const first = this.pre.firstElementChild;
      if (first.classList.contains("cut")) {
        const n = first.nextElementSibling;
        if (!n) break;
        this.chars -= n.textContent?.length ?? 0;
        n.remove();
      } else {
        this.chars -= first.textContent?.length ?? 0;
        first.replaceWith(h("span", { class: "cut" }, "[earlier output not shown]\n"));
      }
    }
    if (this.search.value) this.refilter();
    if (this.follow.checked && !this.scrollQueued) {
      this.scrollQueued = true;
      requestAnimationFrame(() => {
        this.scrollQueued = false;
        this.pre.scrollTop = this.pre.scrollHeight;
      });
    }
  }

  /** Shows only the lines that contain the search text (any case), the matches marked. */
  private filter(): void {
    const needle = this.search.value.toLowerCase();
    this.pre.hidden = Boolean(needle);
    this.matches.hidden = !needle;
    if (!needle) {
      this.matches.replaceChildren();
      this.matchCount.textContent = "";
      return;
    }
    // Lines as runs of (stream, text): a line can hold both streams' text.
    const lines: { cls: string; text: string }[][] = [[]];
    for (const part of this.pre.children) {
      const pieces = (part.textContent ?? "").split("\n");
      pieces.forEach((text, i) => {
        if (i > 0) lines.push([]);
        if (text) lines[lines.length - 1]?.push({ cls: part.className, text });
      });
    }
    const shown: Node[] = [];
    let count = 0;
    for (const line of lines) {
      const whole = line.map((r) => r.text).join("");
      if (!whole.toLowerCase().includes(needle)) continue;
      count++;
      shown.push(
        h(
          "span",
          { class: "line" },
          line.map((r) => h("span", { class: r.cls }, mark(r.text, needle))),
          "\n",
        ),
      );
    }
    this.matches.replaceChildren(...shown);
    this.matchCount.textContent = `${count} matching line${count === 1 ? "" : "s"}`;
  }

  private prepareDownload(ev: MouseEvent): void {
    if (this.fullReady) {
      // The click below, once the whole output was read: the link already points at it.
      this.fullReady = false;
      return;
    }
    if (this.fetching) {
      ev.preventDefault();
      return;
    }
    if (!this.pre.querySelector(".cut")) {
      this.setFile([this.pre.textContent ?? ""]);
      return;
    }
    ev.preventDefault();
    this.fetching = true;
    const before = this.download.textContent;
    this.download.textContent = "Preparing…";
    void (async () => {
      try {
        const parts: BlobPart[] = [];
        for await (const chunk of jobService.streamOutput({ id: this.id, follow: false }, { signal: this.ctl?.signal }))
          parts.push(chunk.data as Uint8Array<ArrayBuffer>);
        this.setFile(parts);
        this.fullReady = true;
        this.download.click();
      } catch (err) {
        if (!isCanceled(err)) toast(`Download of job ${this.id}'s output failed: ${errorText(err)}`, "error");
      } finally {
        this.fetching = false;
        this.download.textContent = before;
      }
    })();
  }

  private setFile(parts: BlobPart[]): void {
    if (this.blobUrl) URL.revokeObjectURL(this.blobUrl);
    this.blobUrl = URL.createObjectURL(new Blob(parts, { type: "text/plain" }));
    this.download.href = this.blobUrl;
  }

  stop(): void {
    clearTimeout(this.retryTimer);
    this.refilter.cancel();
    this.ctl?.abort();
    this.ctl = undefined;
  }
}

/** Text with each occurrence of needle (lower case) in <mark>. */
function mark(text: string, needle: string): (Node | string)[] {
  const out: (Node | string)[] = [];
  const lower = text.toLowerCase();
  let at = 0;
  for (let i = lower.indexOf(needle); i >= 0; i = lower.indexOf(needle, at)) {
    out.push(text.slice(at, i), h("mark", null, text.slice(i, i + needle.length)));
    at = i + needle.length;
  }
  out.push(text.slice(at));
  return out;
}

/** The latest record of each open job view, for retries. */
const current = new Map<string, Job>();

export function jobView(route: Route): View {
  const id = route.path[1] ?? "";
  const ctl = new AbortController();
  const heading = h("h1", { tabindex: -1 }, `Job ${id}`);
  const subtitle = h("p", { class: "subtitle" });
  const actions = h("div", { class: "actions", role: "group", "aria-label": "Job actions" });
  const banner = h("div");
  const body = h("div", null, h("p", { class: "muted", role: "status" }, "Loading job…"));
  const output = new OutputPanel(id);
  let job: Job | undefined;
  let deleted = false;
  let busy = false;

  const el = h(
    "div",
    { class: "view job-view" },
    h(
      "nav",
      { class: "crumbs", "aria-label": "Breadcrumb" },
      h("a", { href: href("jobs") }, "Jobs"),
      " › ",
      h("span", { "aria-current": "page" }, id),
    ),
    h("div", { class: "title-row" }, h("div", null, heading, subtitle), actions),
    banner,
    body,
  );

  const act = async (label: string, fn: () => Promise<unknown>, confirmText?: string) => {
    if (busy) return;
    if (confirmText && !window.confirm(confirmText)) return;
    busy = true;
    renderActions();
    try {
      await fn();
      toast(`${label}: done.`);
    } catch (err) {
      toast(`${label} failed: ${errorText(err)}`, "error");
    } finally {
      busy = false;
      renderActions();
    }
  };

  const button = (label: string, enabled: boolean, onclick: () => void, cls = "") =>
    h("button", { type: "button", class: cls, disabled: !enabled || busy || deleted, onclick }, label);

  function renderActions(): void {
    if (!job) {
      replace(actions);
      return;
    }
    const s = job.state;
    const final = isFinal(s);
    replace(
      actions,
      button(
        job.killRequested && !final ? "Killing…" : "Kill",
        !final && !job.killRequested,
        () =>
          act(
            `Kill job ${id}`,
            async () => apply((await jobService.killJob({ id })).job),
            s === JobState.RUNNING ? `Kill job ${id}? Its process gets SIGTERM, then SIGKILL.` : undefined,
          ),
        "danger",
      ),
      button("Hold", s === JobState.PENDING, () =>
        act(`Hold job ${id}`, async () => apply((await jobService.holdJob({ id })).job)),
      ),
      job.killRequested && !final && !job.killForce
        ? button(
            "Kill now",
            true,
            () =>
              act(
                `Kill job ${id} now`,
                async () => apply((await jobService.killJob({ id, force: true })).job),
                `Kill job ${id} now with SIGKILL, without waiting for the grace period?`,
              ),
            "danger",
          )
        : null,
      button("Release", s === JobState.HELD, () =>
        act(`Release job ${id}`, async () => apply((await jobService.releaseJob({ id })).job)),
      ),
      button("Run on…", s === JobState.HELD || s === JobState.PENDING, () => {
        const worker = window.prompt(`Run job ${id} on which worker?`, job?.runOn || job?.spec?.targetWorker || "");
        if (worker?.trim())
          void act(`Run job ${id} on ${worker.trim()}`, async () =>
            apply((await jobService.runJob({ id, worker: worker.trim() })).job),
          );
      }),
      button("Requeue", final, () =>
        act(
          `Requeue job ${id}`,
          async () => apply((await jobService.requeueJob({ id })).job),
          `Run job ${id} again as a new attempt (its history is kept)?`,
        ),
      ),
      job.arrayCounts && final
        ? button("Requeue failed tasks", job.arrayCounts.succeeded < job.arrayCounts.total, () =>
            act(`Requeue the failed tasks of ${id}`, async () =>
              apply((await jobService.requeueJob({ id, failedOnly: true })).job),
            ),
          )
        : null,
      button(
        "Delete",
        final,
        () =>
          act(
            `Delete job ${id}`,
            async () => {
              await jobService.deleteJob({ id });
              markDeleted();
              location.hash = href("jobs");
            },
            `Delete job ${id} and its record? This cannot be undone.`,
          ),
        "danger",
      ),
    );
  }

  function apply(next: Job | undefined): void {
    if (!next || deleted) return;
    job = next;
    current.set(id, next);
    heading.textContent = `Job ${id}`;
    replace(subtitle, next.spec?.name ? h("span", { class: "name" }, next.spec.name) : null, stateBadge(next.state));
    document.title = `Job ${id} · ${stateName(next.state)} · crms`;
    // Only the details are redrawn: the output panel stays in place (a <pre> taken out of the
    // page loses its scroll position), and so does the page's own scroll.
    const y = window.scrollY;
    const shown = body.querySelector(":scope > .job-details");
    if (shown && output.el.parentElement === body) shown.replaceWith(details(next));
    else replace(body, details(next), output.el);
    if (window.scrollY !== y) window.scrollTo({ top: y });
    renderActions();
    output.update(next);
  }

  function markDeleted(): void {
    deleted = true;
    replace(banner, h("p", { class: "banner warn", role: "status" }, `Job ${id} was deleted.`));
    renderActions();
  }

  // The queue position is computed by GetJob only, not carried by watch events: read it again while PENDING.
  const refreshPosition = throttle(() => {
    jobService
      .getJob({ id }, { signal: ctl.signal })
      .then((res) => {
        if (res.job && job?.state === JobState.PENDING && res.job.state === JobState.PENDING) apply(res.job);
      })
      .catch(() => {});
  }, 2000);
  // Watch events applied for this job: a read answered after one came is older than what is shown.
  let events = 0;
  const offJobs = live.onJobs((batch) => {
    const next = batch.put.get(id);
    if (next) {
      events++;
      apply(next);
      if (next.state === JobState.PENDING && !next.queuePosition) refreshPosition();
    }
    if (batch.deleted.has(id)) markDeleted();
  });
  // The job watch starts after a revision read when it (re)connects: a change between this page's
  // first read and that revision comes through neither. Read the job again each time the watch
  // goes live (a job that turned RUNNING meanwhile showed ASSIGNED until its next change).
  let watchLive = live.jobState === "live";
  const offConn = live.onConnection(() => {
    const now = live.jobState === "live";
    if (now && !watchLive) {
      const at = events;
      jobService
        .getJob({ id }, { signal: ctl.signal })
        .then((res) => {
          if (res.job && events === at) apply(res.job);
        })
        .catch(() => {});
    }
    watchLive = now;
  });
  const ticker = setInterval(() => {
    for (const el of body.querySelectorAll<HTMLElement>("[data-running]")) {
      const start = Number(el.dataset.running);
      if (start) el.textContent = formatDuration(Date.now() - start);
    }
  }, 1000);

  (async () => {
    try {
      const res = await jobService.getJob({ id }, { signal: ctl.signal });
      // A watch event may have brought a newer record meanwhile.
      if (!job) apply(res.job);
    } catch (err) {
      if (isCanceled(err)) return;
      const text =
        codeOf(err) === Code.NotFound
          ? `There is no job ${id}: it was never submitted, was deleted, or expired by retention.`
          : codeOf(err) === Code.InvalidArgument
            ? `"${id}" is not a job id.`
            : `Could not load job ${id}: ${errorText(err)}`;
      replace(
        body,
        h("p", { class: "banner warn", role: "alert" }, text, " ", h("a", { href: href("jobs") }, "Back to jobs")),
      );
    }
  })();

  return {
    title: `Job ${id}`,
    el,
    dispose() {
      ctl.abort();
      offJobs();
      offConn();
      refreshPosition.cancel();
      clearInterval(ticker);
      output.stop();
      current.delete(id);
    },
  };
}

/** An environment value, masked with a Reveal button when its name looks like a credential. */
function envValue(name: string, value: string): HTMLElement {
  if (!SECRET_NAME.test(name)) return h("code", null, value);
  const cell = h("span", { class: "masked" });
  const reveal = h(
    "button",
    {
      type: "button",
      class: "link small",
      "aria-label": `Reveal ${name}`,
      onclick: () => replace(cell, h("code", null, value)),
    },
    "Reveal",
  );
  replace(cell, h("code", { title: "hidden: the name looks like a credential" }, "••••••"), " ", reveal);
  return cell;
}
