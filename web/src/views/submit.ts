/** Submit: a form for a JobSpec. A retried submit of the same form reuses its request id, so it makes one job. */
import type { MessageInitShape } from "@bufbuild/protobuf";
import type { JobSpecSchema } from "../../../gen/crms/v1/job_pb.js";
import { parseAfter } from "../../../src/scheduler/dependencies.js";
import { errorText, jobService } from "../api.js";
import { h, replace, toast } from "../dom.js";
import { parsePairs } from "../format.js";
import { live } from "../live.js";
import { href, type View } from "../view.js";

function newRequestId(): string {
  // crypto.randomUUID needs a secure context; a dashboard on http://host:port is not one.
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return `web-${[...bytes].map((b) => b.toString(16).padStart(2, "0")).join("")}`;
}

function field(id: string, label: string, control: HTMLElement, help?: string): HTMLElement {
  if (help) control.setAttribute("aria-describedby", `${id}-help`);
  return h(
    "div",
    { class: "field" },
    h("label", { for: id }, label),
    control,
    help ? h("span", { id: `${id}-help`, class: "help" }, help) : null,
  );
}

function numberInput(id: string, min: number, max: number): HTMLInputElement {
  return h("input", { id, name: id, type: "number", inputmode: "numeric", min, max, step: 1, value: "0" });
}

/** Turns the form into a JobSpec; throws an Error naming the field at fault. */
export function specFromForm(data: FormData): MessageInitShape<typeof JobSpecSchema> {
  const text = String(data.get("command") ?? "");
  const mode = String(data.get("mode") ?? "shell");
  const lines = text.split(/\r?\n/);
  while (lines.length && lines.at(-1) === "") lines.pop();
  while (lines.length && lines[0] === "") lines.shift();
  const command = mode === "argv" ? lines : ["sh", "-c", text];
  if (!text.trim()) throw new Error("Command: enter a command to run.");
  const num = (name: string, label: string) => {
    const v = Number(data.get(name) ?? 0);
    if (!Number.isInteger(v) || v < 0) throw new Error(`${label}: a whole number of 0 or more.`);
    return v;
  };
  const priority = Number(data.get("priority") ?? 0);
  if (!Number.isInteger(priority)) throw new Error("Priority: a whole number.");
  // As the CLI's --array FIRST-LAST[%MAX] and --after ID[:succeeded|failed|finished].
  const arrayText = String(data.get("array") ?? "").trim();
  const m = /^(\d+)(?:-(\d+))?(?:%(\d+))?$/.exec(arrayText);
  if (arrayText && !m) throw new Error("Array: FIRST-LAST or FIRST-LAST%MAX, e.g. 1-100%10.");
  const array = m ? { first: Number(m[1]), last: Number(m[2] ?? m[1]), maxRunning: Number(m[3] ?? 0) } : undefined;
  const after = String(data.get("after") ?? "")
    .split(/[\s,]+/)
    .filter(Boolean)
    .map((item) => {
      try {
        return parseAfter(item);
      } catch {
        throw new Error(`After: ${JSON.stringify(item)} is not ID or ID:succeeded|failed|finished.`);
      }
    });
  return {
    ...(array ? { array } : {}),
    after,
    command,
    name: String(data.get("name") ?? "").trim(),
    env: parsePairs(String(data.get("env") ?? ""), "Environment", true),
    labels: parsePairs(String(data.get("labels") ?? ""), "Labels"),
    constraints: parsePairs(String(data.get("constraints") ?? ""), "Constraints"),
    targetWorker: String(data.get("target") ?? "").trim(),
    workingDir: String(data.get("workdir") ?? "").trim(),
    priority,
    maxRetries: num("retries", "Max retries"),
    timeoutSeconds: num("timeout", "Timeout"),
    hold: data.get("hold") === "on",
  };
}

export function submitView(): View {
  let requestId = newRequestId();
  const error = h("div", { class: "form-error", role: "alert" });
  const submitButton = h("button", { type: "submit", class: "primary" }, "Submit job");
  const workers = h(
    "datalist",
    { id: "submit-workers" },
    [...live.workers.keys()].sort().map((n) => h("option", { value: n })),
  );
  const command = h("textarea", {
    id: "command",
    name: "command",
    rows: 4,
    required: true,
    spellcheck: "false",
    autocapitalize: "off",
    placeholder: "echo hello from crms",
  });

  const form = h(
    "form",
    { class: "submit-form", "aria-labelledby": "submit-title", novalidate: true },
    field("command", "Command", command, "What to run. See “Run as” for how it is split into arguments."),
    h(
      "fieldset",
      { class: "radios" },
      h("legend", null, "Run as"),
      h(
        "label",
        null,
        h("input", { type: "radio", name: "mode", value: "shell", checked: true }),
        " Shell command (",
        h("code", null, "sh -c"),
        ")",
      ),
      h(
        "label",
        null,
        h("input", { type: "radio", name: "mode", value: "argv" }),
        " Arguments, one per line (no shell)",
      ),
    ),
    field(
      "name",
      "Name",
      h("input", { id: "name", name: "name", maxlength: 256, autocomplete: "off" }),
      "Optional, free text.",
    ),
    h(
      "details",
      { class: "more" },
      h("summary", null, "More options"),
      h(
        "div",
        { class: "grid" },
        field(
          "env",
          "Environment",
          h("textarea", { id: "env", name: "env", rows: 3, spellcheck: "false", placeholder: "KEY=value" }),
          "One KEY=value per line, added to the worker's environment.",
        ),
        field(
          "labels",
          "Labels",
          h("textarea", { id: "labels", name: "labels", rows: 3, spellcheck: "false", placeholder: "team=data" }),
          "key=value pairs to filter jobs by.",
        ),
        field(
          "constraints",
          "Constraints",
          h("textarea", {
            id: "constraints",
            name: "constraints",
            rows: 3,
            spellcheck: "false",
            placeholder: "zone=a",
          }),
          "Runs only on workers with all these labels.",
        ),
        h(
          "div",
          { class: "field" },
          h("label", { for: "target" }, "Target worker"),
          h("input", { id: "target", name: "target", list: "submit-workers", autocomplete: "off", placeholder: "any" }),
          workers,
        ),
        field(
          "workdir",
          "Working directory",
          h("input", { id: "workdir", name: "workdir", autocomplete: "off" }),
          "Empty: the worker's job directory.",
        ),
        field("priority", "Priority", numberInput("priority", -2147483648, 2147483647), "Higher runs first."),
        field("retries", "Max retries", numberInput("retries", 0, 1000), "Reruns after a failure of its own."),
        field("timeout", "Timeout (seconds)", numberInput("timeout", 0, 4294967295), "0: no limit."),
        field(
          "array",
          "Array",
          h("input", { id: "array", name: "array", autocomplete: "off", placeholder: "1-100%10" }),
          "FIRST-LAST[%MAX]: one task per index ($CRMS_ARRAY_INDEX), at most MAX running. Empty: one job.",
        ),
        field(
          "after",
          "After",
          h("input", { id: "after", name: "after", autocomplete: "off", placeholder: "12 13:finished" }),
          "Job ids it waits for, each ID or ID:succeeded|failed|finished (succeeded when left out).",
        ),
        h(
          "label",
          { class: "check" },
          h("input", { type: "checkbox", name: "hold" }),
          " Submit on hold (runs after Release)",
        ),
      ),
    ),
    error,
    h("div", { class: "actions" }, submitButton),
  );
  // An edited form is a new submission; an unchanged one, retried, is the same.
  form.addEventListener("input", () => {
    requestId = newRequestId();
    replace(error);
    command.removeAttribute("aria-invalid");
  });
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    replace(error);
    let spec: MessageInitShape<typeof JobSpecSchema>;
    try {
      spec = specFromForm(new FormData(form));
    } catch (err) {
      replace(error, h("p", null, (err as Error).message));
      if ((err as Error).message.startsWith("Command")) {
        command.setAttribute("aria-invalid", "true");
        command.focus();
      }
      return;
    }
    submitButton.disabled = true;
    submitButton.textContent = "Submitting…";
    try {
      const res = await jobService.submitJob({ spec, requestId });
      const id = res.job?.id ?? "";
      toast(res.existing ? `Job ${id} was already submitted.` : `Job ${id} submitted.`);
      requestId = newRequestId();
      location.hash = href(`jobs/${id}`);
    } catch (err) {
      replace(error, h("p", null, `Not submitted: ${errorText(err)}`));
    } finally {
      submitButton.disabled = false;
      submitButton.textContent = "Submit job";
    }
  });

  const el = h(
    "div",
    { class: "view submit-view" },
    h("h1", { id: "submit-title", tabindex: -1 }, "Submit a job"),
    form,
  );
  return { title: "Submit", el };
}
