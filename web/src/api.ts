/** The page's clients: the crms services over Connect, from the origin that served the page. */
import { Code, ConnectError, createClient, type Interceptor } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-web";
import { AdminService } from "../../gen/crms/v1/admin_pb.js";
import { JobService } from "../../gen/crms/v1/job_pb.js";
import { QueueService } from "../../gen/crms/v1/queue_pb.js";
import { WorkerService } from "../../gen/crms/v1/worker_pb.js";

/** Where the page keeps the API token: this tab's session only, never a cookie. */
const TOKEN_KEY = "crms.token";
let asked = false;

/**
 * Sends the session's token as "authorization: Bearer"; when the control plane
 * answers UNAUTHENTICATED, asks for a token once, keeps it for the session and reloads.
 */
const withToken: Interceptor = (next) => async (req) => {
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (token) req.header.set("authorization", `Bearer ${token}`);
  try {
    return await next(req);
  } catch (err) {
    if (ConnectError.from(err).code === Code.Unauthenticated && !asked) {
      asked = true;
      const entered = window.prompt(
        token ? "The crms API token was refused. Token:" : "This crms control plane needs an API token. Token:",
      );
      if (entered?.trim()) {
        sessionStorage.setItem(TOKEN_KEY, entered.trim());
        location.reload();
      }
    }
    throw err;
  }
};

// Relative to the page, so the dashboard also works behind a proxy under a path prefix.
const transport = createConnectTransport({
  baseUrl: new URL(".", location.href).href.replace(/\/$/, ""),
  useBinaryFormat: true,
  interceptors: [withToken],
});

export const jobService = createClient(JobService, transport);
export const workerService = createClient(WorkerService, transport);
export const adminService = createClient(AdminService, transport);
export const queueService = createClient(QueueService, transport);

export { Code, ConnectError };

/** The Connect code of any error (UNKNOWN for non-RPC errors). */
export function codeOf(err: unknown): Code {
  return ConnectError.from(err).code;
}

/** True when a call ended because we aborted it (view closed, stream replaced). */
export function isCanceled(err: unknown): boolean {
  return (err instanceof DOMException && err.name === "AbortError") || ConnectError.from(err).code === Code.Canceled;
}

/** An error in words for the user: "not found: job 7 not found". */
export function errorText(err: unknown): string {
  const e = ConnectError.from(err);
  const code = (Code[e.code] ?? "unknown").replace(/([a-z])([A-Z])/g, "$1 $2").toLowerCase();
  if (e.code === Code.Unavailable || e.code === Code.Unknown) {
    if (/fetch|network/i.test(e.rawMessage)) return "cannot reach the control plane";
  }
  return `${code}: ${e.rawMessage}`;
}

/** One minute of the control plane's last hour (src/web/activity.ts). */
export interface ActivityMinute {
  minute: number;
  started: number;
  finished: number;
  queued: number;
  slotsUsed: number;
  slotsTotal: number;
}

/** The control plane's last hour per minute, for the overview chart (GET activity, with the session's token). */
export async function fetchActivity(signal?: AbortSignal): Promise<{ since: number; minutes: ActivityMinute[] }> {
  const token = sessionStorage.getItem(TOKEN_KEY);
  const res = await fetch(new URL("activity", new URL(".", location.href)), {
    headers: token ? { authorization: `Bearer ${token}` } : {},
    signal,
  });
  if (!res.ok) throw new Error(`activity: ${res.status} ${(await res.text()).trim()}`);
  return res.json();
}
