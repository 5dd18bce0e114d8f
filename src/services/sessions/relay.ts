/**
 * The output relay: StreamOutput asks the worker holding a run for its output
 * over the worker's Attach stream, and the chunks the worker sends back are
 * handed to the queue of the request they answer.
 */
import { OutputStreamSchema } from "../../../gen/crms/v1/job_pb.js";
import type { OutputData } from "../../../gen/crms/v1/worker_pb.js";
import { AsyncQueue } from "../async-queue.js";
import { checkEnum } from "../validate.js";
import type { WorkerSession } from "../worker-session.js";

export class OutputRelay {
  private nextRequestId = 1n;

  /** Asks the session's worker for a run's output; the queue yields chunks until eof (or `signal` aborts). */
  request(
    session: WorkerSession,
    jobId: string,
    attempt: number,
    follow: boolean,
    signal: AbortSignal,
  ): AsyncQueue<OutputData> {
    const requestId = this.nextRequestId++;
    const q = new AsyncQueue<OutputData>();
    session.outputs.set(requestId, q);
    session.send({ case: "outputRequest", value: { requestId, jobId, attempt, follow } });
    signal.addEventListener(
      "abort",
      () => {
        if (session.outputs.delete(requestId)) session.send({ case: "outputCancel", value: { requestId } });
        q.end();
      },
      { once: true },
    );
    return q;
  }

  /** Hands a chunk the worker sent to the request it answers (dropped if that request was cancelled). */
  deliver(session: WorkerSession, data: OutputData): void {
    checkEnum("output stream", data.stream, OutputStreamSchema);
    const q = session.outputs.get(data.requestId);
    if (!q) return;
    q.push(data);
    if (data.eof) {
      session.outputs.delete(data.requestId);
      q.end();
    }
  }
}
