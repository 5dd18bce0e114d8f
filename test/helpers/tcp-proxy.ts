/** A TCP proxy (node net) that can stop passing data without closing its connections: a half-open link. */
import { createConnection, createServer, type Server, type Socket } from "node:net";

export class TcpProxy {
  private frozen = false;
  private readonly sockets = new Set<Socket>();

  private constructor(
    readonly server: Server,
    readonly address: string,
  ) {}

  static async start(upstream: string): Promise<TcpProxy> {
    const [host, port] = [upstream.slice(0, upstream.lastIndexOf(":")), Number(upstream.split(":").pop())];
    let proxy: TcpProxy | undefined;
    const server = createServer((down) => {
      if (!proxy || proxy.isFrozen) {
        proxy?.track(down); // accepted but never answered, like a dead path (thaw and close drop it)
        return;
      }
      const up = createConnection({ host, port });
      for (const [from, to] of [
        [down, up],
        [up, down],
      ] as const) {
        proxy.track(from);
        from.on("data", (d) => {
          if (!proxy?.isFrozen) to.write(d);
        });
        from.on("error", () => to.destroy());
        from.on("close", () => {
          proxy?.untrack(from);
          if (!proxy?.isFrozen) to.destroy();
        });
      }
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    const addr = server.address();
    if (!addr || typeof addr !== "object") throw new Error("proxy has no address");
    proxy = new TcpProxy(server, `127.0.0.1:${addr.port}`);
    return proxy;
  }

  get isFrozen(): boolean {
    return this.frozen;
  }

  /** Stops passing bytes in both directions; connections stay open. */
  freeze(): void {
    this.frozen = true;
  }

  track(s: Socket): void {
    this.sockets.add(s);
  }

  untrack(s: Socket): void {
    this.sockets.delete(s);
  }

  /** Drops the frozen connections (their peers see them close) and passes data again on new ones. */
  thaw(): void {
    for (const s of this.sockets) s.destroy();
    this.sockets.clear();
    this.frozen = false;
  }

  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise((r) => this.server.close(r));
  }
}
