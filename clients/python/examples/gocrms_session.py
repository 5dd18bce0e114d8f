#!/usr/bin/env python3
"""GoCRMS's Python CLI session (GoCRMS README, "Python CLI"), redone with crms.

GoCRMS:                                         crms:
  crms = crmscli.CrmsCli()                        c = crms.Client(address)
  crms.createJob("1256", ["java", "-version"])    c.submit([...], hold=True)
  crms.getJobs()                                  c.jobs()
  crms.getWorkers()                               c.workers()
  crms.runJob("1256", ["wenzhe"])                 c.run_job(id, worker)
  job = crms.getJob("1256")                       c.wait(id) / c.get_job(id)
  job.stateOfWorkers['wenzhe'].status             job.state, job.worker
  job.stateOfWorkers['wenzhe'].stdouterr          c.output(id)

The flow is GoCRMS's: the job is created first (held: it does not run yet),
then run on a worker named at that point. The only difference is that crms
assigns the job id. The Go version is clients/go/examples/gocrms-session.

Usage: python gocrms_session.py ADDRESS [WORKER]
"""

import sys

import crms


def main(argv):
    if len(argv) < 2:
        print(__doc__.strip().splitlines()[-1], file=sys.stderr)
        return 2
    address = argv[1]
    with crms.Client(address) as c:
        # crms.getWorkers(): name -> parallel slots
        workers = {w.name: w.slots for w in c.workers()}
        print("workers:", workers)
        up = [w.name for w in c.workers() if w.state is crms.WorkerState.UP]
        target = argv[2] if len(argv) > 2 else (up[0] if up else None)
        if target is None:
            print("no worker is up", file=sys.stderr)
            return 1

        # crms.createJob(...): created, not yet run
        job = c.submit(
            ["sh", "-c", 'echo "crms version 0.1"; echo "Picked up options: none" >&2'],
            name="gocrms-session",
            hold=True,
        )
        print(f"created job {job.id}: {job.state.name}")

        # crms.getJobs(): id -> state
        print("jobs:", {j.id: j.state.name for j in c.jobs()})

        # crms.runJob(id, [worker])
        job = c.run_job(job.id, target)
        print(f"run job {job.id} on {target}: {job.state.name}")

        # job = crms.getJob(id); job.stateOfWorkers[worker].status / .stdouterr
        job = c.wait(job.id, timeout=60)
        job = c.get_job(job.id)
        print(f"job {job.id} on {job.worker}: {job.state.name} (exit code {job.exit_code})")
        stdouterr = b"".join(chunk.data for chunk in c.output(job.id)).decode(errors="replace")
        print("stdouterr:", repr(stdouterr))
        return 0 if job.state is crms.JobState.SUCCEEDED else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
