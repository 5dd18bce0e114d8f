#!/usr/bin/env python3
"""The cross-client conformance scenario, in Python. Prints ONE JSON line.

Usage: python conformance.py ADDRESS

  1. submit ["sh","-c","echo conformance"], wait        -> final_state
  2. read its whole stdout                              -> output
  3. submit ["sleep","60"], wait until RUNNING, kill it, wait -> killed_state
  4. get_job("999999999")                               -> unknown_code
  5. submit [] (empty command)                          -> invalid_code

Expected: {"client":"python","final_state":"SUCCEEDED","output":"conformance\\n",
"killed_state":"KILLED","unknown_code":"NOT_FOUND","invalid_code":"INVALID_ARGUMENT"}
(values are what this client observes).
"""

import json
import sys

import crms


def error_code(fn):
    try:
        fn()
    except crms.CrmsError as err:
        return err.code.name
    return "OK"


def main(argv):
    if len(argv) != 2:
        print("usage: conformance.py ADDRESS", file=sys.stderr)
        return 2
    with crms.Client(argv[1]) as c:
        job = c.submit(["sh", "-c", "echo conformance"])
        final = c.wait(job.id, timeout=60)
        output = c.read_output(job.id, crms.OutputStream.STDOUT)

        sleeper = c.submit(["sleep", "60"])
        running = c.wait(sleeper.id, timeout=60, until={crms.JobState.RUNNING})
        if running.state != crms.JobState.RUNNING:
            raise RuntimeError(f"job {sleeper.id} ended {running.state.name} before it ran")
        c.kill(sleeper.id)
        killed = c.wait(sleeper.id, timeout=60)

        result = {
            "client": "python",
            "final_state": final.state.name,
            "output": output.decode("utf-8", errors="replace"),
            "killed_state": killed.state.name,
            "unknown_code": error_code(lambda: c.get_job("999999999")),
            "invalid_code": error_code(lambda: c.submit([])),
        }
    print(json.dumps(result, separators=(",", ":")))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
