/**
 * The crms dashboard: hash routes (#/, #/jobs, #/jobs/ID, #/history, #/queues, #/workers, #/submit),
 * one view at a time, over the live state every view shares.
 */
import { h, replace } from "./dom.js";
import { live } from "./live.js";
import type { Route, View } from "./view.js";
import { historyView } from "./views/history.js";
import { jobView } from "./views/job.js";
import { jobsView } from "./views/jobs.js";
import { overviewView } from "./views/overview.js";
import { queuesView } from "./views/queues.js";
import { submitView } from "./views/submit.js";
import { workersView } from "./views/workers.js";

function parseHash(hash: string): Route {
  const raw = hash.replace(/^#\/?/, "");
  const [path = "", query = ""] = raw.split("?", 2);
  return { path: path.split("/").filter(Boolean).map(decodeURIComponent), query: new URLSearchParams(query) };
}

function viewFor(route: Route): { view: View; section: string } {
  const [first, second] = route.path;
  switch (first) {
    case undefined:
    case "overview":
      return { view: overviewView(), section: "overview" };
    case "jobs":
      return second ? { view: jobView(route), section: "jobs" } : { view: jobsView(route), section: "jobs" };
    case "history":
      return { view: historyView(route), section: "history" };
    case "queues":
      return { view: queuesView(), section: "queues" };
    case "workers":
      return { view: workersView(route), section: "workers" };
    case "submit":
      return { view: submitView(), section: "submit" };
    default: {
      const el = h(
        "div",
        { class: "view" },
        h("h1", { tabindex: -1 }, "Not found"),
        h("p", null, "There is no page here. ", h("a", { href: "#/" }, "Go to the overview")),
      );
      return { view: { title: "Not found", el }, section: "" };
    }
  }
}

let current: View | undefined;
let currentPath = "";

function route(): void {
  const main = document.getElementById("main") as HTMLElement;
  const r = parseHash(location.hash);
  const path = r.path.join("/");
  // Same view, other query (workers filter typing): views that care handle it themselves.
  current?.dispose?.();
  const { view, section } = viewFor(r);
  current = view;
  replace(main, view.el);
  document.title = `${view.title} · crms`;
  for (const a of document.querySelectorAll<HTMLAnchorElement>("nav a[data-route]")) {
    if (a.dataset.route === section) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  // Move focus to the new heading so screen readers announce the page, except on first load.
  if (currentPath !== "" || path !== "") view.el.querySelector<HTMLElement>("h1")?.focus({ preventScroll: true });
  window.scrollTo(0, 0);
  currentPath = path || "/";
}

function renderConnection(): void {
  const box = document.getElementById("conn");
  if (!box) return;
  const ok = live.jobState === "live" && live.workerState === "live";
  const connecting = live.jobState === "connecting" || live.workerState === "connecting";
  box.className = `conn ${ok ? "ok" : connecting ? "wait" : "bad"}`;
  const text = box.querySelector(".text");
  if (text) text.textContent = ok ? "Live" : connecting ? "Connecting…" : "Reconnecting…";
  box.title = ok ? "Streaming updates from the control plane" : live.lastError;
}

document.querySelector<HTMLAnchorElement>("a.skip")?.addEventListener("click", (ev) => {
  ev.preventDefault();
  document.getElementById("main")?.focus();
});
window.addEventListener("hashchange", route);
live.onConnection(renderConnection);
live.start();
route();
