"""The crms Python client against a live dev cluster: every call and the error mapping."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import datetime

import grpc
import pytest

import crms
from crms.v1 import job_pb2

from conftest import NEVER, eventually


# -- generated code and package --------------------------------------------


def test_generated_modules_import_as_a_package():
    from crms.v1 import admin_pb2, admin_pb2_grpc, job_pb2_grpc, worker_pb2, worker_pb2_grpc

    assert job_pb2.JobSpec(command=["true"]).command == ["true"]
    assert job_pb2_grpc.JobServiceStub and worker_pb2_grpc.WorkerServiceStub and admin_pb2_grpc.AdminServiceStub
    assert worker_pb2.Worker.DESCRIPTOR.full_name == "crms.v1.Worker"
    assert admin_pb2.GetClusterStatusResponse.DESCRIPTOR.file.dependencies[0].name == "crms/v1/job.proto"


_ROUND_TRIP = """
import pickle
from google.protobuf.internal import api_implementation
from crms.v1 import job_pb2
spec = job_pb2.JobSpec(command=["a"], env={"X": "1"}, array=job_pb2.ArraySpec(first=1, last=3))
req = job_pb2.SubmitJobRequest.FromString(job_pb2.SubmitJobRequest(spec=spec, request_id="r").SerializeToString())
assert req.spec.env["X"] == "1" and req.spec.array.last == 3, req
assert pickle.loads(pickle.dumps(req)) == req
assert job_pb2.JobSpec.EnvEntry.DESCRIPTOR.full_name == "crms.v1.JobSpec.EnvEntry"
assert job_pb2.JobSpec.__module__ == "crms.v1.job_pb2"
assert job_pb2.JobState.Name(job_pb2.JOB_STATE_RUNNING) == "JOB_STATE_RUNNING"
print(api_implementation.Type())
"""


@pytest.mark.parametrize("implementation", ["upb", "python"])
def test_generated_messages_build_from_descriptors_on_either_protobuf_implementation(implementation):
    # crms.v1's modules build their classes at import from the descriptors
    # (crms/_descriptors.py), so they work whatever protobuf 5-7 runtime is there.
    env = dict(os.environ, PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION=implementation)
    out = subprocess.run([sys.executable, "-c", _ROUND_TRIP], env=env, capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == implementation


def test_enums_mirror_the_contract():
    for state in crms.JobState:
        assert job_pb2.JobState.Name(state.value) == "JOB_STATE_" + state.name
    assert crms.JobState.parse("running") is crms.JobState.RUNNING
    assert crms.JobState.parse("JOB_STATE_HELD") is crms.JobState.HELD
    assert crms.JobState.parse(5) is crms.JobState.SUCCEEDED
    assert crms.JobState.LOST.is_final and not crms.JobState.RUNNING.is_final
    with pytest.raises(ValueError):
        crms.JobState.parse("nonsense")


def test_context_manager_and_default_address(monkeypatch, address):
    monkeypatch.setenv("CRMS_SERVER", address)
    with crms.Client() as c:
        assert c.address == address
        assert c.cluster_status().workers >= 1


# -- jobs ---------------------------------------------------------------------


def test_history_lists_finished_jobs_newest_first(client, dev_worker, tag):
    first = client.submit(["sh", "-c", "exit 2"], name="hist-py-1", labels=tag, worker=dev_worker)
    assert client.wait(first.id, timeout=60).state is crms.JobState.FAILED
    second = client.submit(["true"], name="hist-py-2", labels=tag, worker=dev_worker)
    assert client.wait(second.id, timeout=60).state is crms.JobState.SUCCEEDED
    # The leader writes finished jobs to the history as they end: poll until both are there.
    deadline = time.monotonic() + 30
    while True:
        found = list(client.history(labels=tag, since=time.time() - 3600))
        if len(found) == 2 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert [j.id for j in found] == [second.id, first.id]
    assert found[1].exit_code == 2 and found[1].state is crms.JobState.FAILED
    assert [j.id for j in client.history(crms.JobState.FAILED, labels=tag)] == [first.id]
    assert [j.id for j in client.history(labels=tag, name="hist-py-?", page_size=1)] == [second.id, first.id]
    assert list(client.history(labels=tag, until=datetime(2001, 1, 1))) == []
    with pytest.raises(crms.CrmsError) as err:
        list(client.history(crms.JobState.RUNNING))
    assert err.value.code is grpc.StatusCode.INVALID_ARGUMENT


def test_submit_with_every_option_and_wait(client, dev_worker, tag, tmp_path):
    job = client.submit(
        ["sh", "-c", 'echo "$GREETING from $(pwd)"'],
        name="options",
        env={"GREETING": "hello"},
        cwd=str(tmp_path),
        labels=tag,
        constraints={"dev": "true"},
        worker=dev_worker,
        priority=5,
        retries=2,
        timeout=30,
        request_id="req-" + tag["test"],
    )
    assert isinstance(job, crms.Job)
    assert job.id.isdigit()
    assert job.state in (crms.JobState.PENDING, crms.JobState.ASSIGNED, crms.JobState.RUNNING)
    assert job.name == "options"
    assert job.spec == crms.JobSpec(
        command=["sh", "-c", 'echo "$GREETING from $(pwd)"'],
        name="options",
        env={"GREETING": "hello"},
        cwd=str(tmp_path),
        labels=tag,
        constraints={"dev": "true"},
        worker=dev_worker,
        priority=5,
        retries=2,
        timeout=30,
    )
    assert job.request_id == "req-" + tag["test"]
    assert isinstance(job.submit_time, datetime)

    done = client.wait(job.id, timeout=60)
    assert done.state is crms.JobState.SUCCEEDED
    assert done.done and done.succeeded
    assert done.exit_code == 0
    assert done.worker == dev_worker
    assert done.pid > 0
    assert done.attempt == 1 and len(done.attempts) == 1
    assert done.attempts[0].outcome is crms.JobState.SUCCEEDED
    assert done.end_time >= done.start_time >= done.submit_time
    assert done.stdout_tail == f"hello from {tmp_path}\n".encode()


def test_submit_same_request_id_returns_the_same_job(client, tag):
    rid = "dup-" + tag["test"]
    first = client.submit(["true"], request_id=rid, labels=tag)
    second = client.submit(["true"], request_id=rid, labels=tag)
    assert first.id == second.id
    assert len(list(client.jobs(labels=tag))) == 1
    client.wait(first.id, timeout=60)


def test_submit_rejects_a_string_command(client):
    with pytest.raises(TypeError):
        client.submit("echo hi")  # type: ignore[arg-type]


def test_get_job(client):
    job = client.submit(["true"], name="get-me")
    got = client.get_job(job.id)
    assert got.id == job.id and got.name == "get-me"
    assert client.get_job(int(job.id)).id == job.id
    client.wait(job.id, timeout=60)


def test_failed_job_reports_exit_code(client):
    job = client.wait(client.submit(["sh", "-c", "echo oops >&2; exit 3"]).id, timeout=60)
    assert job.state is crms.JobState.FAILED
    assert job.exit_code == 3
    assert job.stderr_tail == b"oops\n"


def test_jobs_iterates_every_page_and_filters(client, dev_worker, tag):
    ids = [client.submit(["true"], labels=tag).id for _ in range(5)]
    held = client.submit(["true"], labels=tag, hold=True)
    for i in ids:
        client.wait(i, timeout=60)

    listed = list(client.jobs(labels=tag, page_size=2))
    assert [j.id for j in listed] == sorted(ids + [held.id], key=int)
    assert all(isinstance(j, crms.Job) for j in listed)

    assert [j.id for j in client.jobs(state=crms.JobState.HELD, labels=tag)] == [held.id]
    assert [j.id for j in client.jobs(state="held", labels=tag)] == [held.id]
    assert len(list(client.jobs(state=["SUCCEEDED", crms.JobState.HELD], labels=tag, page_size=1))) == 6
    assert sorted(j.id for j in client.jobs(worker=dev_worker, labels=tag)) == sorted(ids)
    assert list(client.jobs(labels={"test": "no-such-" + tag["test"]})) == []
    client.kill(held.id)


def test_watch_sees_held_pending_succeeded(client):
    job = client.submit(["sh", "-c", "sleep 0.3; echo watched"], hold=True)
    events = client.watch_jobs(ids=[job.id], timeout=60)
    first = next(events)
    assert first.type is crms.WatchEventType.EXISTING
    assert first.job.id == job.id and first.job.state is crms.JobState.HELD
    synced = next(events)
    assert synced.type is crms.WatchEventType.SYNCED and synced.job is None

    client.release(job.id)
    states = [crms.JobState.HELD]
    for ev in events:
        assert ev.type is crms.WatchEventType.PUT
        assert ev.job.id == job.id and ev.revision > 0
        if ev.job.state != states[-1]:
            states.append(ev.job.state)
        if ev.job.state.is_final:
            break
    events.close()
    assert states[0] is crms.JobState.HELD
    assert states[1] is crms.JobState.PENDING
    assert states[-1] is crms.JobState.SUCCEEDED
    assert set(states) <= {
        crms.JobState.HELD,
        crms.JobState.PENDING,
        crms.JobState.ASSIGNED,
        crms.JobState.RUNNING,
        crms.JobState.SUCCEEDED,
    }


def test_watch_all_jobs_sees_a_new_job_and_resumes_after_revision(client):
    events = client.watch_jobs(timeout=60)
    revision = 0
    for ev in events:
        if ev.type is crms.WatchEventType.SYNCED:
            revision = ev.revision
            break
        assert ev.type is crms.WatchEventType.EXISTING
    job = client.submit(["true"])
    seen = next(ev for ev in events if ev.job is not None and ev.job.id == job.id)
    events.close()
    assert seen.type is crms.WatchEventType.PUT and seen.revision > revision

    client.wait(job.id, timeout=60)
    resumed = client.watch_jobs(ids=[job.id], after_revision=revision, timeout=60)
    ev = next(resumed)
    resumed.close()
    assert ev.type is crms.WatchEventType.PUT and ev.job.id == job.id


def test_watch_with_timeout_raises_deadline_exceeded(client):
    job = client.submit(["true"], hold=True)
    with pytest.raises(crms.DeadlineExceeded):
        for _ in client.watch_jobs(ids=[job.id], timeout=0.5):
            pass
    client.kill(job.id)


def test_wait_times_out(client):
    job = client.submit(["true"], hold=True)
    t0 = time.monotonic()
    with pytest.raises(crms.WaitTimeout) as info:
        client.wait(job.id, timeout=0.5)
    assert time.monotonic() - t0 < 10
    assert info.value.code == grpc.StatusCode.DEADLINE_EXCEEDED
    assert isinstance(info.value, TimeoutError)
    client.kill(job.id)


def test_wait_until_running_then_kill(client):
    job = client.submit(["sleep", "60"])
    running = client.wait(job.id, timeout=60, until={crms.JobState.RUNNING})
    assert running.state is crms.JobState.RUNNING and running.pid > 0
    killing = client.kill(job.id, grace=2)
    assert killing.kill_requested
    final = client.wait(job.id, timeout=60)
    assert final.state is crms.JobState.KILLED
    assert final.end_time is not None


def test_kill_pending_job_is_immediate(client):
    job = client.submit(["true"], constraints=NEVER)
    assert client.get_job(job.id).state is crms.JobState.PENDING
    killed = client.kill(job.id)
    assert killed.state is crms.JobState.KILLED
    with pytest.raises(crms.FailedPrecondition) as info:
        client.kill(job.id)
    assert info.value.code == grpc.StatusCode.FAILED_PRECONDITION


def test_kill_rejects_non_positive_grace(client):
    with pytest.raises(ValueError):
        client.kill("1", grace=0)


def test_hold_and_release(client):
    job = client.submit(["true"], constraints=NEVER)
    held = client.hold(job.id)
    assert held.state is crms.JobState.HELD
    released = client.release(job.id)
    assert released.state is crms.JobState.PENDING
    assert released.pending_reason
    with pytest.raises(crms.FailedPrecondition):
        client.release(job.id)  # PENDING, not HELD
    client.kill(job.id)
    with pytest.raises(crms.FailedPrecondition):
        client.hold(job.id)  # KILLED


def test_release_of_running_job_is_failed_precondition(client):
    job = client.submit(["sleep", "60"])
    client.wait(job.id, timeout=60, until={"RUNNING"})
    with pytest.raises(crms.FailedPrecondition) as info:
        client.release(job.id)
    assert info.value.code is grpc.StatusCode.FAILED_PRECONDITION
    assert info.value.code_name == "FAILED_PRECONDITION"
    assert isinstance(info.value, crms.CrmsError)
    with pytest.raises(crms.FailedPrecondition):
        client.delete(job.id)  # not finished
    client.kill(job.id, grace=1)
    client.wait(job.id, timeout=60)


def test_delete(client):
    job = client.wait(client.submit(["true"]).id, timeout=60)
    assert client.delete(job.id) is None
    # Gone from etcd. GetJob may still answer from the job history, which
    # keeps finished jobs after they leave etcd (when the leader archived it
    # before the delete); then it is the same finished job.
    try:
        kept = client.get_job(job.id)
    except crms.JobNotFound:
        pass
    else:
        assert kept.id == job.id and kept.state == job.state
    with pytest.raises(crms.NotFound):
        client.delete(job.id)


def test_wait_on_deleted_or_unknown_job(client):
    with pytest.raises(crms.JobNotFound):
        client.wait("999999998", timeout=10)


def test_output_of_finished_job(client):
    job = client.submit(["sh", "-c", "echo out1; echo err1 >&2; echo out2"])
    client.wait(job.id, timeout=60)
    chunks = list(client.output(job.id))
    assert chunks and all(isinstance(c, crms.OutputChunk) for c in chunks)
    by_stream = {}
    for c in chunks:
        by_stream.setdefault(c.stream_name, b"")
        by_stream[c.stream_name] += c.data
    assert by_stream == {"stdout": b"out1\nout2\n", "stderr": b"err1\n"}
    assert client.read_output(job.id) == b"out1\nout2\n"
    assert client.read_output(job.id, "stderr") == b"err1\n"


def test_output_follow_streams_until_the_end(client):
    job = client.submit(["sh", "-c", "echo first; sleep 1; echo second"])
    data = b"".join(c.data for c in client.output(job.id, follow=True) if c.stream is crms.OutputStream.STDOUT)
    assert data == b"first\nsecond\n"
    assert client.wait(job.id, timeout=30).state is crms.JobState.SUCCEEDED


def test_output_follow_of_a_held_job_waits_for_it_to_start(client):
    job = client.submit(["sh", "-c", "echo later"], hold=True)
    stream = client.output(job.id, follow=True)
    client.release(job.id)
    assert b"".join(c.data for c in stream) == b"later\n"


# -- workers --------------------------------------------------------------------


def test_workers_and_worker(client, dev_worker):
    workers = client.workers()
    assert all(isinstance(w, crms.Worker) for w in workers)
    names = [w.name for w in workers]
    assert dev_worker in names
    assert names == sorted(names)
    w = client.worker(dev_worker)
    assert w.state is crms.WorkerState.UP
    assert w.labels.get("dev") == "true"
    assert w.slots >= 1 and 0 <= w.used_slots <= w.slots
    assert w.attach_time is not None and w.replica
    assert client.workers(page_size=1)[0].name == names[0]


def test_unknown_worker_is_not_found(client):
    with pytest.raises(crms.WorkerNotFound) as info:
        client.worker("no-such-worker")
    assert isinstance(info.value, crms.NotFound)
    assert info.value.code is grpc.StatusCode.NOT_FOUND


def test_drain_and_stop_a_worker(client, extra_worker):
    name, proc = extra_worker
    # A job for this worker runs there.
    job = client.wait(client.submit(["true"], worker=name).id, timeout=60)
    assert job.state is crms.JobState.SUCCEEDED and job.worker == name

    drained = client.drain(name)
    assert isinstance(drained, crms.Worker) and drained.state is crms.WorkerState.DRAINING
    assert client.worker(name).state is crms.WorkerState.DRAINING
    # No new job is placed on a draining worker.
    waiting = client.submit(["true"], worker=name)
    time.sleep(1.0)
    assert client.get_job(waiting.id).state is crms.JobState.PENDING
    client.kill(waiting.id)

    assert client.stop(name) is None
    try:
        assert client.worker(name).stop_requested
    except crms.WorkerNotFound:
        pass  # it already exited and was forgotten
    eventually(lambda: not proc.running(), timeout=30)

    # A stopped worker that exited is kept as DOWN, saying why, until it is forgotten.
    eventually(lambda: client.worker(name).state is crms.WorkerState.DOWN, timeout=30)
    assert client.worker(name).down_reason == "stopped by an operator"
    assert client.cluster_status().workers_down >= 1
    assert client.forget_worker(name) is None
    with pytest.raises(crms.WorkerNotFound):
        client.worker(name)


# -- admin ----------------------------------------------------------------------


def test_cluster_status(client):
    client.wait(client.submit(["true"]).id, timeout=60)
    s = client.cluster_status()
    assert isinstance(s, crms.ClusterStatus)
    assert s.members and s.members[0].version and not s.members[0].error
    assert s.members[0].db_size > 0
    assert s.revision > 0 and s.quota_bytes > 0
    assert s.workers >= 1 and s.workers_up >= 1 and s.slots_total >= 1
    assert s.jobs.get(crms.JobState.SUCCEEDED, 0) >= 1
    assert s.replica


# -- errors ---------------------------------------------------------------------


def test_unknown_job_is_not_found(client):
    with pytest.raises(crms.JobNotFound) as info:
        client.get_job("999999999")
    err = info.value
    assert isinstance(err, crms.NotFound) and isinstance(err, crms.CrmsError)
    assert err.code is grpc.StatusCode.NOT_FOUND
    assert "999999999" in err.details


def test_empty_command_is_invalid_argument(client):
    with pytest.raises(crms.InvalidArgument) as info:
        client.submit([])
    assert info.value.code is grpc.StatusCode.INVALID_ARGUMENT
    assert isinstance(info.value, ValueError)


def test_malformed_job_id_is_invalid_argument(client):
    with pytest.raises(crms.InvalidArgument):
        client.get_job("not-an-id")


def test_unreachable_server_is_unavailable(address):
    with crms.Client(f"localhost:{_closed_port()}", timeout=5) as c:
        with pytest.raises(crms.Unavailable) as info:
            c.get_job("1")
    assert info.value.code is grpc.StatusCode.UNAVAILABLE


def _closed_port() -> int:
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_error_classes_keep_their_codes():
    from crms.errors import from_rpc_error

    class FakeError(grpc.RpcError):
        def __init__(self, code):
            self._code = code

        def code(self):
            return self._code

        def details(self):
            return "because"

    cases = {
        grpc.StatusCode.NOT_FOUND: crms.NotFound,
        grpc.StatusCode.INVALID_ARGUMENT: crms.InvalidArgument,
        grpc.StatusCode.ALREADY_EXISTS: crms.AlreadyExists,
        grpc.StatusCode.FAILED_PRECONDITION: crms.FailedPrecondition,
        grpc.StatusCode.RESOURCE_EXHAUSTED: crms.ResourceExhausted,
        grpc.StatusCode.UNAVAILABLE: crms.Unavailable,
        grpc.StatusCode.DEADLINE_EXCEEDED: crms.DeadlineExceeded,
        grpc.StatusCode.INTERNAL: crms.CrmsError,
    }
    for code, cls in cases.items():
        err = from_rpc_error(FakeError(code))
        assert type(err) is cls and err.code is code and err.details == "because"
    assert type(from_rpc_error(FakeError(grpc.StatusCode.NOT_FOUND), "job")) is crms.JobNotFound
    assert type(from_rpc_error(FakeError(grpc.StatusCode.NOT_FOUND), "worker")) is crms.WorkerNotFound


def test_array_and_after_fields(client, tag):
    parent = client.submit(["sh", "-c", 'echo "$CRMS_ARRAY_ID/$CRMS_ARRAY_INDEX"'], labels=tag, array="3-7%2")
    assert parent.is_array
    assert parent.spec.array == crms.ArraySpec(3, 7, 2)
    assert isinstance(parent.array_counts, crms.ArrayCounts) and parent.array_counts.total == 5
    chained = client.submit(["true"], labels=tag, after=[parent.id, f"{parent.id}:finished"])
    assert chained.spec.after == (
        crms.Dependency(parent.id, crms.DependencyCondition.SUCCEEDED),
        crms.Dependency(parent.id, crms.DependencyCondition.FINISHED),
    )
    assert chained.pending_reason.startswith(f"waiting for jobs {parent.id} (succeeded)")

    done = client.wait(chained.id, timeout=60)
    assert done.state is crms.JobState.SUCCEEDED
    finished = client.get_job(parent.id)
    assert finished.state is crms.JobState.SUCCEEDED
    assert finished.array_counts.succeeded == 5 and finished.array_created == 5
    assert done.start_time >= finished.end_time

    tasks = list(client.jobs(array=parent.id, page_size=2))
    assert sorted(t.array_index for t in tasks) == [3, 4, 5, 6, 7]
    assert all(t.array_parent == parent.id for t in tasks)
    assert {t.stdout_tail for t in tasks} == {f"{parent.id}/{i}\n".encode() for i in range(3, 8)}
    # A plain listing shows the parent, not its tasks.
    assert [j.id for j in client.jobs(labels=tag)] == [parent.id, chained.id]
    assert len(list(client.jobs(labels=tag, include_tasks=True))) == 7


def test_after_a_failing_job_fails_with_a_reason_and_unknown_jobs_are_refused(client):
    bad = client.submit(["sh", "-c", "exit 1"])
    dep = client.submit(["true"], after=[bad.id])
    done = client.wait(dep.id, timeout=60)
    assert done.state is crms.JobState.FAILED
    assert done.error == f"dependency not met: job {bad.id} ended FAILED, needed succeeded"
    with pytest.raises(crms.NotFound):
        client.submit(["true"], after=["999999999999"])
    with pytest.raises(ValueError):
        client.submit(["true"], after=["12:sometime"])
