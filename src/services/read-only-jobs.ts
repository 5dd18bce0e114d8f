/**
 * GetJob and ListJobs for a replica over capacity (see store/capacity.ts):
 * read straight from etcd, nothing cached. A listing walks ids in order, one
 * Txn of reads per MAX_TXN_OPS ids, and is ordered by id only ("id" or "-id":
 * the other orders need every job at hand). A call reads at most SCAN_IDS ids;
 * a page that found fewer jobs by then still carries a next_page_token to go
 * on from. total_size is 0: counting the matches would read every job.
 */
import type { ListJobsRequest } from "../../gen/crms/v1/job_pb.js";
import { CrmsError, notFound } from "../errors.js";
import { MAX_TXN_OPS } from "../store/batcher.js";
import type { ReadOnlyJobs } from "../store/store.js";
import { listed, listRequest } from "./job-order.js";
import { present } from "./job-service.js";
import { checkJobId, checkPageToken } from "./validate.js";

/** Ids one ListJobs call reads at most (about 80 Txns). */
export const SCAN_IDS = 10_000;

/** The two reads a replica over capacity serves; `reason` says why it serves no more. */
export function readOnlyJobHandlers(jobs: ReadOnlyJobs, reason: () => string) {
  return {
    async getJob(req: { id: string }) {
      checkJobId(req.id);
      const job = await jobs.job(req.id);
      if (!job) throw notFound(`job ${req.id} not found`);
      return { job: present(job) };
    },

    async listJobs(req: ListJobsRequest) {
      const { size, order, states } = listRequest(req);
      if (order.key !== "id") {
        throw new CrmsError(
          "FAILED_PRECONDITION",
          `order_by ${req.orderBy}: this replica lists by id only ("id" or "-id"), since ${reason()}`,
        );
      }
      checkPageToken(req.pageToken, "ListJobs");
      const { first, last } = await jobs.idRange();
      const step = order.desc ? -1 : 1;
      const inRange = (id: number) => id >= first && id <= last;
      let at = req.pageToken ? Number(req.pageToken) + step : order.desc ? last : first;
      const page = [];
      let scanned = 0;
      let cursor = "";
      while (page.length < size && inRange(at) && scanned < SCAN_IDS) {
        const end = at + step * (MAX_TXN_OPS - 1);
        const lo = Math.max(first, Math.min(at, end));
        const hi = Math.min(last, Math.max(at, end));
        const batch = await jobs.jobsIn(lo, hi);
        if (order.desc) batch.reverse();
        scanned += hi - lo + 1;
        at = order.desc ? lo - 1 : hi + 1;
        cursor = String(order.desc ? lo : hi);
        for (const job of batch) {
          if (!listed(job, req, states)) continue;
          page.push(present(job));
          if (page.length === size) {
            cursor = job.id;
            at = Number(job.id) + step;
            break;
          }
        }
      }
      return { jobs: page, nextPageToken: inRange(at) ? cursor : "", totalSize: 0 };
    },
  };
}
