/**
 * A control plane that only implements WorkerService.Attach and hands each
 * stream to the test, for tests of a worker at its protocol boundary.
 */
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import {
  type AttachRequest,
  type AttachResponse,
  AttachResponseSchema,
  type Hello,
  WorkerService,
} from "../../gen/crms/v1/worker_pb.js";
import { serviceDefinition } from "../../src/rpc/definition.js";

type Case = NonNullable<AttachRequest["msg"]["case"]>;
type ValueOf<C extends Case> = Extract<AttachRequest["msg"], { case: C }>["value"];

/** One Attach stream as the fake control plane sees it. */
export class FakeSession {
  readonly messages: AttachRequest[] = [];
  #waiters = new Set<() => void>();
  closed = false;

  constructor(readonly call: grpc.ServerDuplexStream<AttachRequest, AttachResponse>) {
    call.on("data", (m: AttachRequest) => {
      this.messages.push(m);
      for (const w of [...this.#waiters]) w();
    });
    const close = (): void => {
      this.closed = true;
      for (const w of [...this.#waiters]) w();
    };
    call.on("end", close);
    call.on("cancelled", close);
    call.on("error", close);
  }

  /** Removes and returns the first message of that kind, waiting for it. */
  next<C extends Case>(kind: C, timeoutMs = 5_000): Promise<ValueOf<C>> {
    return new Promise((resolve, reject) => {
      const check = (): void => {
        const i = this.messages.findIndex((m) => m.msg.case === kind);
        if (i >= 0) {
          const [m] = this.messages.splice(i, 1);
          this.#waiters.delete(check);
          clearTimeout(timer);
          resolve(m?.msg.value as never);
        }
      };
      const timer = setTimeout(() => {
        this.#waiters.delete(check);
        reject(new Error(`no ${kind} within ${timeoutMs} ms`));
      }, timeoutMs);
      this.#waiters.add(check);
      check();
    });
  }

  send(msg: MessageInitShape<typeof AttachResponseSchema>["msg"]): void {
    this.call.write(create(AttachResponseSchema, { msg } as MessageInitShape<typeof AttachResponseSchema>));
  }

  /** Answers Hello with Welcome and returns the Hello. */
  async accept(draining = false): Promise<Hello> {
    const hello = await this.next("hello");
    this.send({ case: "welcome", value: { replica: "fake", heartbeatSeconds: 1, draining } });
    return hello;
  }
}

/** A control plane that only implements Attach and hands each stream to the test. */
export class FakeControlPlane {
  readonly server = new grpc.Server();
  readonly sessions: FakeSession[] = [];
  #waiters = new Set<() => void>();
  address = "";

  async listen(): Promise<this> {
    this.server.addService(serviceDefinition(WorkerService), {
      attach: (call: grpc.ServerDuplexStream<AttachRequest, AttachResponse>) => {
        this.sessions.push(new FakeSession(call));
        for (const w of [...this.#waiters]) w();
      },
    });
    const port = await new Promise<number>((resolve, reject) =>
      this.server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (err, p) =>
        err ? reject(err) : resolve(p),
      ),
    );
    this.address = `127.0.0.1:${port}`;
    return this;
  }

  /** The n-th session (0-based), waiting for it. */
  session(n: number, timeoutMs = 10_000): Promise<FakeSession> {
    return new Promise((resolve, reject) => {
      const check = (): void => {
        const s = this.sessions[n];
        if (s) {
          this.#waiters.delete(check);
          clearTimeout(timer);
          resolve(s);
        }
      };
      const timer = setTimeout(() => {
        this.#waiters.delete(check);
        reject(new Error(`no session ${n} within ${timeoutMs} ms`));
      }, timeoutMs);
      this.#waiters.add(check);
      check();
    });
  }

  stop(): void {
    this.server.forceShutdown();
  }
}
