"""RunJob, requeue, resume, forget, sorted listings with totals, and the kill grace limit."""

from __future__ import annotations

import time

import pytest

import crms

from conftest import eventually


def test_run_job_places_a_held_job_on_the_named_worker(client, dev_worker):
    job = client.submit(["sh", "-c", "echo $CRMS_WORKER"], hold=True)
    ran = client.run_job(job.id, dev_worker)
    assert ran.run_on == dev_worker and ran.state is crms.JobState.PENDING
    done = client.wait(job.id, timeout=60)
    assert done.state is crms.JobState.SUCCEEDED and done.worker == dev_worker
    # release(id, worker) is the same call.
    other = client.submit(["true"], hold=True)
    assert client.release(other.id, dev_worker).run_on == dev_worker
    assert client.wait(other.id, timeout=60).worker == dev_worker


def test_run_job_errors(client, dev_worker):
    job = client.submit(["true"], hold=True)
    with pytest.raises(crms.WorkerNotFound):
        client.run_job(job.id, "no-such-worker")
    client.kill(job.id)
    with pytest.raises(crms.FailedPrecondition):
        client.run_job(job.id, dev_worker)


def test_requeue_runs_a_finished_job_again_with_its_history(client):
    job = client.wait(client.submit(["sh", "-c", "exit 4"]).id, timeout=60)
    assert job.state is crms.JobState.FAILED
    again = client.requeue(job.id)
    assert again.requeues == 1 and again.state in (crms.JobState.PENDING, crms.JobState.ASSIGNED)
    done = eventually(lambda: (j := client.get_job(job.id)).state.is_final and len(j.attempts) == 2 and j)
    assert [a.outcome for a in done.attempts] == [crms.JobState.FAILED, crms.JobState.FAILED]
    assert done.exit_code == 4


def test_kill_grace_limit_and_force(client):
    # It ignores SIGTERM: only the SIGKILL that --force sends at once ends it.
    job = client.submit(["sh", "-c", "trap '' TERM; while :; do sleep 0.2; done"])
    client.wait(job.id, until={crms.JobState.RUNNING}, timeout=60)
    with pytest.raises(crms.InvalidArgument, match="at most 3600"):
        client.kill(job.id, grace=3601)
    client.kill(job.id, grace=3600)
    forced = client.kill(job.id, force=True)
    assert forced.kill_force
    done = client.wait(job.id, timeout=30)
    assert done.state is crms.JobState.KILLED and done.signal == "SIGKILL"


def test_jobs_order_and_count(client, tag):
    ids = [client.submit(["true"], name=n, labels=tag, hold=True).id for n in ("b", "c", "a")]
    assert [j.id for j in client.jobs(labels=tag, order="-id")] == ids[::-1]
    assert [j.name for j in client.jobs(labels=tag, order="name", page_size=1)] == ["a", "b", "c"]
    assert client.count_jobs(labels=tag) == 3
    assert client.count_jobs(state="HELD", labels=tag) == 3
    with pytest.raises(crms.InvalidArgument):
        list(client.jobs(order="size"))
    for i in ids:
        client.kill(i)


def test_resume_a_drained_worker(client, extra_worker):
    name, _proc = extra_worker
    client.drain(name)
    waiting = client.submit(["true"], worker=name)
    time.sleep(1.0)
    assert client.get_job(waiting.id).state is crms.JobState.PENDING
    resumed = client.resume(name)
    assert resumed.state is crms.WorkerState.UP
    done = client.wait(waiting.id, timeout=60)
    assert done.state is crms.JobState.SUCCEEDED and done.worker == name
