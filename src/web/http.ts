/**
 * The control plane's HTTP/1.1 face: the dashboard page and, on the same
 * server, the crms services over the Connect protocol for the page (and for
 * curl: `curl -H 'Content-Type: application/json' -d '{"id":"1"}' URL/crms.v1.JobService/GetJob`).
 * The handlers are the replica's own, so both transports answer alike.
 */
import { readFileSync } from "node:fs";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { createServer as createHttpsServer } from "node:https";
import type { AddressInfo } from "node:net";
import { createMetrics, type Metrics } from "../server/metrics.js";
import type { ControlPlane } from "../server/server.js";
import { Activity } from "./activity.js";
import { createConnectHandler } from "./connect.js";
import { createStaticHandler, ensureBundle } from "./static.js";

/** A running HTTP endpoint. */
export interface HttpEndpoint {
  /** Where the page is, e.g. http://127.0.0.1:8080/ */
  url: string;
  /** Stops listening and ends open streams. */
  close(): Promise<void>;
}

/** Splits "HOST:PORT" (or "[::1]:PORT"); an empty host means every interface. */
export function parseListen(listen: string): { host: string; port: number } {
  const i = listen.lastIndexOf(":");
  if (i < 0) throw new Error(`--http wants HOST:PORT, got ${JSON.stringify(listen)}`);
  const host = listen.slice(0, i).replace(/^\[(.*)\]$/, "$1");
  const port = Number(listen.slice(i + 1));
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new Error(`bad port in ${JSON.stringify(listen)}`);
  return { host, port };
}

const LOOPBACK = /^(localhost|127(\.\d{1,3}){3}|\[::1\])(:\d+)?$/i;

/** Options of startHttp. */
export interface HttpOptions {
  /**
   * Host names (without port) also accepted when listening on loopback, e.g.
   * the name a reverse proxy forwards as Host.
   */
  allowedHosts?: string[];
}

/**
 * On a loopback address, only requests that name a loopback host (or an
 * allowed one) are served: a web site whose name an attacker points at
 * 127.0.0.1 (DNS rebinding) must not reach the API from a victim's browser.
 */
export function hostAllowed(listenHost: string, hostHeader: string | undefined, allowed: string[] = []): boolean {
  const loopback = listenHost === "localhost" || listenHost === "::1" || listenHost.startsWith("127.");
  if (!loopback) return true;
  const header = hostHeader ?? "";
  if (LOOPBACK.test(header)) return true;
  const name = header.replace(/:\d+$/, "").toLowerCase();
  return allowed.some((a) => a.toLowerCase() === name);
}

function urlOf(address: AddressInfo, scheme = "http"): string {
  const host =
    address.address === "0.0.0.0" || address.address === "::"
      ? "localhost"
      : address.family === "IPv6"
        ? `[${address.address}]`
        : address.address;
  return `${scheme}://${host}:${address.port}/`;
}

/**
 * Serves the dashboard and the Connect routes of a started control plane on
 * listen (HOST:PORT, port 0 picks one). Builds the page first if web/dist is
 * missing or stale; without a page the API is still served. It uses the
 * control plane's TLS options (HTTPS, client certificates with --client-ca) and
 * its authorization: the page sends the bearer token entered by the user.
 */
export async function startHttp(cp: ControlPlane, listen: string, options: HttpOptions = {}): Promise<HttpEndpoint> {
  const { host, port } = parseListen(listen);
  await ensureBundle(cp.log);
  const serveStatic = createStaticHandler();
  // An HTTP/1.1 server: Connect's request type also covers HTTP/2, which this never is.
  const handler = createConnectHandler(
    cp.handlers,
    cp.log,
    (req, res) => serveStatic(req as IncomingMessage, res as ServerResponse),
    cp.authorize,
    cp.streams,
  );
  // Created at the first scrape, so an endpoint never scraped adds no cache listeners.
  let metrics: Metrics | undefined;
  // The overview chart's last hour, counted from the start so a new tab has it at once.
  const activity = new Activity(cp.store);
  const serve = (req: IncomingMessage, res: ServerResponse) => {
    if (!hostAllowed(host, req.headers.host, options.allowedHosts)) {
      res.writeHead(421, { "Content-Type": "text/plain; charset=utf-8" }).end("misdirected request: unknown host\n");
      return;
    }
    const path = req.url?.split("?")[0];
    if (path === "/metrics" || path === "/activity") {
      try {
        cp.authorize?.("AdminService.GetClusterStatus", { authorization: req.headers.authorization ?? "" });
      } catch (err) {
        res.writeHead(401, { "Content-Type": "text/plain; charset=utf-8" }).end(`${(err as Error).message}\n`);
        return;
      }
      if (path === "/activity") {
        res
          .writeHead(200, { "Content-Type": "application/json", "Cache-Control": "no-store" })
          .end(JSON.stringify(activity.snapshot()));
        return;
      }
      return void (metrics ??= createMetrics(cp)).handle(req, res);
    }
    handler(req, res);
  };
  const o = cp.options;
  const server: Server = o.tlsCert
    ? (createHttpsServer(
        {
          cert: readFileSync(o.tlsCert),
          key: readFileSync(o.tlsKey as string),
          ...(o.clientCa ? { ca: readFileSync(o.clientCa), requestCert: true, rejectUnauthorized: true } : {}),
        },
        serve,
      ) as unknown as Server)
    : createServer(serve);
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen({ host: host || undefined, port }, () => {
      server.off("error", reject);
      resolve();
    });
  });
  const url = urlOf(server.address() as AddressInfo, o.tlsCert ? "https" : "http");
  cp.log.info("web page serving", { url });
  let closed: Promise<void> | undefined;
  return {
    url,
    close() {
      metrics?.close();
      activity.close();
      closed ??= new Promise<void>((resolve) => {
        server.close(() => resolve());
        // Open watch streams would keep close() waiting forever: end them.
        server.closeAllConnections();
      });
      return closed;
    },
  };
}
