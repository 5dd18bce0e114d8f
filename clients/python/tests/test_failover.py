"""Several server addresses: unary calls fail over between control-plane
replicas on UNAVAILABLE, and submit retries with one request id. Against the
dev cluster, a port with nothing listening, and a second real replica
(`crms server`) on the dev cluster's etcd that a test SIGKILLs."""

from __future__ import annotations

import os
import signal
import time

import pytest

import crms

from conftest import CRMS_JS, Proc, _free_ports


def _dead_address() -> str:
    (port,) = _free_ports(1)
    return f"127.0.0.1:{port}"


def test_an_empty_address_list_is_a_value_error():
    with pytest.raises(ValueError, match="no server address"):
        crms.Client(" , ")


def test_a_dead_first_address_fails_over_to_the_live_one_for_every_call(monkeypatch, address, dev_worker, tag):
    dead = _dead_address()
    with crms.Client(f"{dead}, {address}") as c:
        assert c.addresses == [dead, address] and c.current_address == dead
        job = c.submit(["true"], labels=tag)
        assert c.current_address == address
    assert job.request_id, "submit without a request id sends a generated one"

    # A fresh client per call (from $CRMS_SERVER too), so that each call has to fail over itself.
    monkeypatch.setenv("CRMS_SERVER", f"{dead},{address}")
    calls = {
        "get_job": lambda c: c.get_job(job.id).id == job.id,
        "jobs": lambda c: [j.id for j in c.jobs(labels=tag)] == [job.id],
        "workers": lambda c: dev_worker in {w.name for w in c.workers()},
        "submit (same request id)": lambda c: c.submit(["true"], request_id=job.request_id, labels=tag).id == job.id,
    }
    for name, call in calls.items():
        with crms.Client() as c:
            assert c.current_address == dead
            assert call(c), name
            assert c.current_address == address, name
            # Streams open on the address in use: the live one.
            assert c.wait(job.id, timeout=60).state is crms.JobState.SUCCEEDED
    with crms.Client(address) as c:
        assert [j.id for j in c.jobs(labels=tag)] == [job.id]


def test_only_dead_addresses_raise_unavailable_and_submit_retries_for_its_budget():
    with crms.Client(f"{_dead_address()},{_dead_address()}", timeout=5) as c:
        with pytest.raises(crms.Unavailable):
            c.get_job("1")
        started = time.monotonic()
        with pytest.raises(crms.Unavailable):
            c.submit(["true"], retry_budget=1.5)
        elapsed = time.monotonic() - started
    # Backoff 0.1 + 0.2 + 0.4 s before the budget runs out; without retries it would fail at once.
    assert 0.6 <= elapsed < 5, elapsed


@pytest.fixture
def replica(address, tmp_root):
    """A second control-plane replica on the dev cluster's etcd (same default key prefix): (address, Proc)."""
    with crms.Client(address) as c:
        etcd = ",".join(m.endpoint for m in c.cluster_status().members)
    (port,) = _free_ports(1)
    proc = Proc(
        ["node", str(CRMS_JS), "server", "--listen", f"127.0.0.1:{port}", "--etcd", etcd,
         "--no-history"],  # a second replica: embedded history is for one replica alone
        tmp_root / f"replica-{port}.log",
        ready="control plane serving",
    )
    try:
        yield f"127.0.0.1:{port}", proc
    finally:
        proc.stop()


def test_killing_the_replica_in_use_moves_every_call_to_the_other_one(address, replica, tag):
    replica_address, replica_proc = replica
    with crms.Client(address) as dev:
        dev_replica = dev.cluster_status().replica
    with crms.Client(f"{replica_address},{address}") as c:
        killed_replica = c.cluster_status().replica
        assert killed_replica != dev_replica
        rid = "failover-" + tag["test"]
        job = c.submit(["sh", "-c", "sleep 1"], labels=tag, request_id=rid)
        assert c.get_job(job.id).id == job.id
        assert c.current_address == replica_address

        os.killpg(replica_proc.proc.pid, signal.SIGKILL)
        replica_proc.proc.wait(10)

        # The first submit again, as a retry cut off by the crash would send it: the same job.
        assert c.submit(["sh", "-c", "sleep 1"], labels=tag, request_id=rid).id == job.id
        assert c.current_address == address
        assert c.cluster_status().replica == dev_replica
        assert c.get_job(job.id).id == job.id
        other = c.submit(["true"], labels=tag)
        assert c.wait(job.id, timeout=60).state is crms.JobState.SUCCEEDED
        assert c.wait(other.id, timeout=60).state is crms.JobState.SUCCEEDED
        assert sorted(j.id for j in c.jobs(labels=tag)) == sorted([job.id, other.id])
