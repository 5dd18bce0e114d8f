/**
 * One worker's Attach stream on this replica: the session state machine and
 * the outbound queue. The registry (sessions/registry.ts) drives it.
 */
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import {
  type AttachResponse,
  AttachResponseSchema,
  type OutputData,
  type Worker,
} from "../../gen/crms/v1/worker_pb.js";
import { CrmsError } from "../errors.js";
import type { Identity } from "../rpc/context.js";
import { AsyncQueue } from "./async-queue.js";

/** Session states: waiting for Hello, attached (maybe draining), closed. */
export type SessionState = "AWAITING_HELLO" | "ATTACHED" | "DRAINING" | "CLOSED";
export type SessionEvent = "hello" | "drain" | "resume" | "close";

/** A run's start report as received: its attempt, its pid, and when it came. */
export type RunStart = { attempt: number; pid: number; at: Date };

/** The session state machine; throws on an event not allowed in a state. */
export function sessionTransition(state: SessionState, event: SessionEvent): SessionState {
  if (event === "close") return "CLOSED";
  if (state === "CLOSED") throw new CrmsError("FAILED_PRECONDITION", `session is closed; cannot ${event}`);
  if (event === "hello") {
    if (state !== "AWAITING_HELLO") throw new CrmsError("INVALID_ARGUMENT", "hello sent twice on one stream");
    return "ATTACHED";
  }
  if (event === "resume") {
    if (state !== "DRAINING") throw new CrmsError("FAILED_PRECONDITION", `session is ${state}; cannot resume`);
    return "ATTACHED";
  }
  return "DRAINING";
}

export class WorkerSession {
  state: SessionState = "AWAITING_HELLO";
  name = "";
  lastHeartbeat = Date.now();
  attachedAt = new Date();
  readonly out = new AsyncQueue<AttachResponse>();
  /** jobId -> attempt last sent in an Assign. */
  readonly assigned = new Map<string, number>();
  /** jobId -> attempt last sent in a Kill. */
  readonly killed = new Map<string, number>();
  /** jobId -> grace seconds last sent in a Kill (a shorter one is sent again). */
  readonly killGrace = new Map<string, number>();
  /** jobId -> a start report received but not yet written (see sessions/reports.ts). */
  readonly starting = new Map<string, RunStart>();
  readonly outputs = new Map<bigint, AsyncQueue<OutputData>>();
  /** Why the session ended, recorded as the worker's down_reason ("stream ended" unless set). */
  closeReason = "";
  /** The authenticated caller of the stream (undefined when authentication is off). */
  identity?: Identity;
  /** The worker record written at hello: what reconciliation writes again if etcd lost it. */
  registered?: Worker;
  /** The replica lease that record was last written with here. */
  boundLease?: string;
  /** Hello.heartbeat_acks: answer each heartbeat (the worker fences its runs by them). */
  heartbeatAcks = false;

  to(event: SessionEvent): void {
    this.state = sessionTransition(this.state, event);
  }

  get open(): boolean {
    return this.state === "ATTACHED" || this.state === "DRAINING";
  }

  send(msg: MessageInitShape<typeof AttachResponseSchema>["msg"]): void {
    if (this.state === "CLOSED") return;
    this.out.push(create(AttachResponseSchema, { msg }));
  }

  close(): void {
    if (this.state === "CLOSED") return;
    this.to("close");
    this.out.end();
    for (const q of this.outputs.values()) q.fail(new CrmsError("UNAVAILABLE", `worker ${this.name} detached`));
    this.outputs.clear();
  }
}
