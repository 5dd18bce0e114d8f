/** etcd3's ways of saying "etcd did not answer" all reach the user as UNAVAILABLE with crms's own words, never INTERNAL. */
import test from "ava";
import { BrokenCircuitError } from "cockatiel";
import { EtcdLeaseInvalidError, GRPCDeadlineExceededError, GRPCUnavailableError } from "etcd3";
import { toCrmsError } from "../src/store/errors.js";

test("an open circuit breaker, a deadline, an unreachable member and a dropped lease map to UNAVAILABLE", (t) => {
  for (const err of [
    new BrokenCircuitError(),
    new GRPCDeadlineExceededError("Deadline exceeded"),
    new GRPCUnavailableError("No connection established"),
    new EtcdLeaseInvalidError("5"),
  ]) {
    const e = toCrmsError(err);
    t.is(e.code, "UNAVAILABLE", `${err.constructor.name}: ${e.message}`);
    t.regex(e.message, /etcd/);
  }
  t.is(toCrmsError(new BrokenCircuitError()).message, "etcd is not reachable; retry");
});
