"""Resources, queues, preemption fields and accounting (issue #17) from the Python client."""

from __future__ import annotations

import time
import uuid
from datetime import datetime, timedelta, timezone

import grpc
import pytest

import crms
from crms.v1 import job_pb2, queue_pb2, worker_pb2

from conftest import NEVER, eventually


@pytest.fixture
def queue_name(client):
    """A fresh queue name; the queue, if the test made it, is deleted afterwards."""
    name = f"py-{uuid.uuid4().hex[:10]}"
    yield name
    try:
        client.delete_queue(name)
    except crms.CrmsError:
        pass


# -- client side: no server ---------------------------------------------------


def test_parse_memory_takes_bytes_or_binary_size_strings():
    assert crms.parse_memory(0) == 0
    assert crms.parse_memory(1234) == 1234
    assert crms.parse_memory("1234") == 1234
    assert crms.parse_memory("4G") == 4 << 30
    assert crms.parse_memory("4g") == crms.parse_memory("4GiB") == crms.parse_memory("4 GB") == 4 << 30
    assert crms.parse_memory("512M") == 512 << 20
    assert crms.parse_memory("1.5K") == 1536
    assert crms.parse_memory("2T") == 2 << 40
    assert crms.parse_memory("100B") == 100
    assert crms.parse_memory("2Ki") == crms.parse_memory("2kb") == 2048
    assert crms.parse_memory("1.0000001K") == 1024  # rounded down to whole bytes
    for bad in ("", "4X", "-1G", "G", "1.2.3M", "4 G B", "1.5", "1P"):
        with pytest.raises(ValueError):
            crms.parse_memory(bad)
    with pytest.raises(ValueError):
        crms.parse_memory(-1)
    with pytest.raises(TypeError):
        crms.parse_memory(True)


def test_resources_build_the_contract_message():
    r = crms.Resources.of(cpus=2, memory="4G", gpus=1, named={"license": 3})
    assert r == crms.Resources(cpus=2, memory_bytes=4 << 30, gpus=1, named={"license": 3})
    assert r.to_proto() == job_pb2.Resources(cpus=2, memory_bytes=4 << 30, gpus=1, named={"license": 3})
    assert crms.Resources.from_proto(r.to_proto()) == r
    assert crms.Resources.of().empty and not r.empty
    with pytest.raises(ValueError):
        crms.Resources.of(cpus=-1)
    with pytest.raises(ValueError):
        crms.Resources.of(named={"license": -1})


def test_job_worker_queue_and_usage_types_read_every_new_field():
    usage = job_pb2.Usage(cpu_seconds=1.5, max_rss_bytes=1 << 20, wall_seconds=2.0, gpu_seconds=4.0)
    attempt = job_pb2.Attempt(number=1, outcome=job_pb2.JOB_STATE_PREEMPTED, usage=usage, gpu_indices=[0, 2])
    spec = job_pb2.JobSpec(
        command=["true"], resources=job_pb2.Resources(cpus=2, gpus=2), queue="gpu", preemptible=True
    )
    p = job_pb2.Job(
        id="7",
        spec=spec,
        state=job_pb2.JOB_STATE_PENDING,
        attempts=[attempt],
        user="alice",
        queue="gpu",
        usage=usage,
        preempt_requested=True,
        preemptions=1,
        queue_position=3,
    )
    job = crms.Job.from_proto(p)
    assert job.spec.resources == crms.Resources(cpus=2, gpus=2)
    assert job.spec.queue == "gpu" and job.spec.preemptible
    assert (job.user, job.queue, job.preempt_requested, job.preemptions, job.queue_position) == (
        "alice",
        "gpu",
        True,
        1,
        3,
    )
    assert job.usage == crms.Usage(cpu_seconds=1.5, max_rss_bytes=1 << 20, wall_seconds=2.0, gpu_seconds=4.0)
    assert job.attempts[0].outcome is crms.JobState.PREEMPTED and not crms.JobState.PREEMPTED.is_final
    assert job.attempts[0].usage == job.usage and job.attempts[0].gpu_indices == (0, 2)
    bare = crms.Job.from_proto(job_pb2.Job(id="8", spec=job_pb2.JobSpec(command=["true"]), attempts=[job_pb2.Attempt()]))
    assert bare.spec.resources is None and bare.usage is None and bare.attempts[0].usage is None

    w = crms.Worker.from_proto(
        worker_pb2.Worker(
            name="w", capacity=job_pb2.Resources(cpus=8, memory_bytes=1 << 30), allocated=job_pb2.Resources(cpus=2)
        )
    )
    assert w.capacity == crms.Resources(cpus=8, memory_bytes=1 << 30) and w.allocated.cpus == 2

    q = crms.Queue.from_proto(
        queue_pb2.Queue(
            name="gpu",
            weight=2,
            max_gpus=4,
            status=queue_pb2.QueueStatus(
                running=1, pending=5, target_share=0.5, users=[queue_pb2.UserShare(user="alice", pending=5)]
            ),
        )
    )
    assert q.weight == 2 and q.max_gpus == 4 and q.create_time is None
    assert q.status.pending == 5 and q.status.users[0] == crms.UserShare(user="alice", pending=5)
    assert q.to_proto() == queue_pb2.Queue(name="gpu", weight=2, max_gpus=4)

    report = crms.UsageReport.from_proto(
        job_pb2.GetUsageResponse(rows=[job_pb2.UsageRow(key="alice", jobs=2, succeeded=1, failed=1, cpu_hours=0.5)])
    )
    assert len(report) == 1 and report.get("alice").cpu_hours == 0.5 and report.get("bob") is None
    assert [r.key for r in report] == ["alice"] and report.since is None
    assert crms.UsageGrouping.parse("worker") is crms.UsageGrouping.WORKER
    assert job_pb2.UsageGrouping.Name(crms.UsageGrouping.QUEUE) == "USAGE_GROUPING_QUEUE"


def test_error_mapping_names_queues():
    from crms.errors import from_rpc_error

    class FakeError(grpc.RpcError):
        def code(self):
            return grpc.StatusCode.NOT_FOUND

        def details(self):
            return "queue nope not found"

    err = from_rpc_error(FakeError(), "queue")
    assert type(err) is crms.QueueNotFound and isinstance(err, crms.NotFound)


# -- against the dev cluster --------------------------------------------------


def test_submit_with_resources_queue_and_preemptible_reads_them_back(client, queue_name, tag):
    client.create_queue(queue_name)
    labels = {**tag, "crms.io/owner": "py-alice"}
    job = client.submit(
        ["true"], labels=labels, cpus=1, memory="256M", queue=queue_name, preemptible=True, hold=True
    )
    for j in (job, client.get_job(job.id)):
        assert j.spec.resources == crms.Resources(cpus=1, memory_bytes=256 << 20)
        assert j.spec.queue == queue_name and j.spec.preemptible
        assert j.queue == queue_name
        assert j.user == "py-alice"
    done = client.wait(client.release(job.id).id, timeout=60)
    assert done.state is crms.JobState.SUCCEEDED and done.queue == queue_name

    # Unset resources and queue: the spec keeps them unset, the job is in "default".
    plain = client.submit(["true"], labels=tag, hold=True)
    assert plain.spec.resources is None and plain.spec.queue == "" and plain.queue == "default"
    client.kill(plain.id)


def test_a_pending_job_says_where_it_stands_in_its_queue(client, queue_name, tag):
    client.create_queue(queue_name)
    owner = "py-bob-" + tag["test"]
    first = client.submit(["true"], labels=tag, constraints=NEVER, queue=queue_name)  # no user
    second = client.submit(["true"], labels={**tag, "crms.io/owner": owner}, constraints=NEVER, queue=queue_name)
    try:
        def positions():
            p = (client.get_job(first.id).queue_position, client.get_job(second.id).queue_position)
            return p if p[0] else None

        ahead, behind = eventually(positions)
        assert 1 <= ahead < behind
        status = client.get_queue(queue_name).status
        assert status is not None and (status.pending, status.running) == (2, 0)
        assert [(u.user, u.pending) for u in status.users] == [("", 1), (owner, 1)]  # "": the job without one
    finally:
        client.kill(first.id)
        client.kill(second.id)


def test_submit_errors_for_queues_and_resources(client, tag):
    with pytest.raises(crms.QueueNotFound):
        client.submit(["true"], labels=tag, queue="no-such-queue-" + tag["test"])
    # No worker of the dev cluster has a GPU or a "pytest-license": refused at submit.
    with pytest.raises(crms.InvalidArgument):
        client.submit(["true"], labels=tag, gpus=1)
    with pytest.raises(crms.InvalidArgument):
        client.submit(["true"], labels=tag, resources={"pytest-license": 1})
    with pytest.raises(ValueError):
        client.submit(["true"], labels=tag, memory="lots")
    with pytest.raises(ValueError):
        client.submit(["true"], labels=tag, cpus=-2)


def test_queue_create_get_list_update_delete(client, queue_name, tag):
    made = client.create_queue(queue_name, weight=2, max_running=3, max_cpus=4, preemptible=True)
    assert (made.name, made.weight, made.max_running, made.max_cpus, made.max_gpus, made.preemptible) == (
        queue_name,
        2,
        3,
        4,
        0,
        True,
    )
    assert isinstance(made.create_time, datetime) and made.create_time <= datetime.now(timezone.utc)
    with pytest.raises(crms.AlreadyExists):
        client.create_queue(queue_name)

    got = client.get_queue(queue_name)
    assert (got.weight, got.max_running, got.max_cpus, got.preemptible) == (2, 3, 4, True)
    assert got.status is not None and (got.status.running, got.status.pending) == (0, 0)

    queues = client.list_queues()
    assert queues[0].name == "default" and queues[0].create_time is None
    assert queue_name in [q.name for q in queues]
    assert client.get_queue("default").name == "default"

    # Settings not given keep their values.
    changed = client.update_queue(queue_name, weight=0.5, max_gpus=1)
    assert (changed.weight, changed.max_running, changed.max_cpus, changed.max_gpus, changed.preemptible) == (
        0.5,
        3,
        4,
        1,
        True,
    )
    again = client.update_queue(changed, preemptible=False, max_running=0)
    assert (again.weight, again.max_running, again.preemptible) == (0.5, 0, False)
    assert client.get_queue(queue_name).max_running == 0

    # A queue with an unfinished job cannot go; once the job ended it can.
    job = client.submit(["true"], labels=tag, queue=queue_name, hold=True)
    with pytest.raises(crms.FailedPrecondition):
        client.delete_queue(queue_name)
    client.kill(job.id)

    def deleted():
        try:
            client.delete_queue(queue_name)
            return True
        except crms.FailedPrecondition:
            return False

    eventually(deleted)
    with pytest.raises(crms.QueueNotFound):
        client.get_queue(queue_name)
    with pytest.raises(crms.QueueNotFound):
        client.delete_queue(queue_name)
    with pytest.raises(crms.QueueNotFound):
        client.update_queue(crms.Queue(name=queue_name, weight=1))
    with pytest.raises(crms.FailedPrecondition):
        client.delete_queue("default")
    with pytest.raises(crms.InvalidArgument):
        client.create_queue("Not A Name!")
    with pytest.raises(crms.InvalidArgument):
        client.create_queue(queue_name, weight=-1)


def test_get_usage_sums_finished_jobs_by_user_queue_and_worker(client, queue_name, dev_worker, tag):
    client.create_queue(queue_name)
    user = "py-usage-" + tag["test"]
    labels = {**tag, "crms.io/owner": user}
    ok = client.submit(["sh", "-c", "i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done"], labels=labels,
                       queue=queue_name, worker=dev_worker)
    bad = client.submit(["sh", "-c", "exit 3"], labels=labels, queue=queue_name, worker=dev_worker)
    done = client.wait(ok.id, timeout=60)
    assert done.state is crms.JobState.SUCCEEDED
    assert client.wait(bad.id, timeout=60).state is crms.JobState.FAILED
    # Usage measured by the worker, on the job and on its attempt.
    assert done.usage is not None and done.usage.wall_seconds > 0
    assert done.attempts[0].usage is not None and done.attempts[0].usage.wall_seconds > 0

    # The leader writes finished jobs to the history as they end: poll until both are counted.
    def counted():
        row = client.get_usage(since=timedelta(hours=1), group_by="queue").get(queue_name)
        return row if row is not None and row.jobs == 2 else None

    row = eventually(counted)
    assert (row.jobs, row.succeeded, row.failed, row.killed) == (2, 1, 1, 0)
    assert row.cpu_hours >= 0 and row.wall_hours > 0 and row.gpu_hours == 0

    by_user = client.get_usage(since=time.time() - 3600, group_by=crms.UsageGrouping.USER)
    assert by_user.get(user) is not None and by_user.get(user).jobs == 2
    assert by_user.since is not None and by_user.since <= datetime.now(timezone.utc) - timedelta(minutes=59)
    assert [r.cpu_hours for r in by_user.rows] == sorted((r.cpu_hours for r in by_user.rows), reverse=True)
    by_worker = client.get_usage(since=datetime.now(timezone.utc) - timedelta(hours=1), group_by="worker")
    assert by_worker.get(dev_worker) is not None and by_worker.get(dev_worker).jobs >= 2
    assert client.get_usage().get(user).jobs == 2  # the server's default: the last 7 days

    # Nothing ended in the future: a well-formed empty answer.
    future = client.get_usage(since=datetime.now(timezone.utc) + timedelta(days=1))
    assert future.rows == () and future.since is not None
    with pytest.raises(ValueError):
        client.get_usage(group_by="planet")
