"""The crms Python client: a thin, typed wrapper over the crms.v1 gRPC services.

    import crms

    with crms.Client("localhost:7070") as c:
        job = c.submit(["sh", "-c", "echo hello"])
        job = c.wait(job.id)
        print(job.state, c.read_output(job.id))

Several control-plane replicas: ``crms.Client("a:7070,b:7070")`` keeps one
channel per address; a unary call that meets UNAVAILABLE is sent to the next
address, and streams open on the address that last answered.

Queues (:meth:`Client.create_queue` ...) and accounting
(:meth:`Client.get_usage`) are here too; ``submit`` takes ``cpus``,
``memory`` (``"4G"``), ``gpus``, named ``resources``, ``queue`` and
``preemptible``.

Every call raises a :class:`crms.CrmsError` subclass on failure (see
:mod:`crms.errors`); records come back as the dataclasses of :mod:`crms.types`.
"""

from __future__ import annotations

import dataclasses
import datetime
import math
import os
import time
import uuid
from typing import Callable, Collection, Iterable, Iterator, List, Mapping, Optional, Sequence, Union

import grpc
from google.protobuf import timestamp_pb2

from crms.errors import (
    CrmsError,
    DeadlineExceeded,
    JobNotFound,
    QueueNotFound,
    Unavailable,
    WaitTimeout,
    WorkerNotFound,
    from_rpc_error,
)
from crms.types import (
    ArraySpec,
    ClusterStatus,
    Dependency,
    Job,
    JobState,
    OutputChunk,
    OutputStream,
    Queue,
    Resources,
    UsageGrouping,
    UsageReport,
    WatchEvent,
    Worker,
)
from crms.v1 import (
    admin_pb2,
    admin_pb2_grpc,
    job_pb2,
    job_pb2_grpc,
    queue_pb2,
    queue_pb2_grpc,
    worker_pb2,
    worker_pb2_grpc,
)

__all__ = ["Client", "DEFAULT_ADDRESS"]

#: Where the client connects when no address is given and $CRMS_SERVER is unset.
DEFAULT_ADDRESS = "localhost:7070"

JobId = Union[str, int]
StateArg = Union[JobState, str, int]
When = Union[float, datetime.datetime, datetime.timedelta]


def _seconds(value: Optional[float], what: str) -> int:
    """Whole seconds for a uint32 seconds field (None means 0, the contract's 'none/default')."""
    if value is None:
        return 0
    if value < 0:
        raise ValueError(f"{what} must not be negative (got {value})")
    return int(math.ceil(value))


def _timestamp(when: When) -> timestamp_pb2.Timestamp:
    """A Timestamp from seconds since the epoch, a datetime (naive means UTC),
    or a timedelta (that long before now)."""
    if isinstance(when, datetime.timedelta):
        when = time.time() - when.total_seconds()
    if isinstance(when, datetime.datetime):
        if when.tzinfo is None:
            when = when.replace(tzinfo=datetime.timezone.utc)
        when = when.timestamp()
    ts = timestamp_pb2.Timestamp()
    ts.FromNanoseconds(int(round(float(when) * 1e9)))
    return ts


def _states(state: Union[None, StateArg, Iterable[StateArg]]) -> List[int]:
    if state is None:
        return []
    if isinstance(state, (JobState, str, int)):
        return [int(JobState.parse(state))]
    return [int(JobState.parse(s)) for s in state]


def _addresses(address: str) -> List[str]:
    """Splits ``"a:7070, b:7070"`` into addresses; an empty list is an error."""
    out = [a.strip() for a in address.split(",") if a.strip()]
    if not out:
        raise ValueError(f"no server address given (got {address!r})")
    return out


def _read(path: Optional[str], what: str) -> Optional[bytes]:
    if not path:
        return None
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as err:
        raise ValueError(f"cannot read {what} {path}: {err}") from None


class _Metadata(
    grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor, grpc.StreamStreamClientInterceptor
):
    """Adds fixed metadata (the bearer token) to every call."""

    def __init__(self, pairs: Sequence[tuple]) -> None:
        self._pairs = list(pairs)

    def _details(self, details):
        md = list(details.metadata or []) + self._pairs
        return details._replace(metadata=md) if hasattr(details, "_replace") else _CallDetails(details, md)

    def intercept_unary_unary(self, continuation, details, request):
        return continuation(self._details(details), request)

    def intercept_unary_stream(self, continuation, details, request):
        return continuation(self._details(details), request)

    def intercept_stream_stream(self, continuation, details, request_iterator):
        return continuation(self._details(details), request_iterator)


class _CallDetails(grpc.ClientCallDetails):
    def __init__(self, base, metadata) -> None:
        self.method = base.method
        self.timeout = base.timeout
        self.metadata = metadata
        self.credentials = base.credentials
        self.wait_for_ready = getattr(base, "wait_for_ready", None)
        self.compression = getattr(base, "compression", None)


class _Replica:
    """The channel to one server address and the generated stubs on it."""

    def __init__(self, channel: grpc.Channel) -> None:
        self.channel = channel
        self.job = job_pb2_grpc.JobServiceStub(channel)
        self.worker = worker_pb2_grpc.WorkerServiceStub(channel)
        self.admin = admin_pb2_grpc.AdminServiceStub(channel)
        self.queue = queue_pb2_grpc.QueueServiceStub(channel)


class Client:
    """A connection to a crms control plane.

    ``address`` is ``host:port`` (default: ``$CRMS_SERVER`` or ``localhost:7070``),
    or several control-plane replicas, ``"a:7070,b:7070"``: one channel per
    address; a unary call that fails with UNAVAILABLE goes to the next address
    (one round over them all), and the client stays on the address that last
    answered, where streams open (:attr:`current_address`).
    ``timeout`` is the deadline, in seconds, of each unary call (None: no deadline).
    For TLS give ``ca`` (a PEM file of the CA that signed the server's
    certificate), for mutual TLS also ``cert`` and ``key`` (PEM files), and an
    API token as ``token``; each defaults to ``$CRMS_CA``, ``$CRMS_CERT``,
    ``$CRMS_KEY``, ``$CRMS_TOKEN``. Or pass ``credentials``
    (``grpc.ssl_channel_credentials(...)``), or an existing ``channel`` (one address).
    Use it as a context manager, or call :meth:`close`.
    """

    def __init__(
        self,
        address: Optional[str] = None,
        *,
        timeout: Optional[float] = 30.0,
        credentials: Optional[grpc.ChannelCredentials] = None,
        options: Optional[Sequence[tuple]] = None,
        channel: Optional[grpc.Channel] = None,
        ca: Optional[str] = None,
        cert: Optional[str] = None,
        key: Optional[str] = None,
        token: Optional[str] = None,
    ) -> None:
        self.address = address or os.environ.get("CRMS_SERVER") or DEFAULT_ADDRESS
        #: The server addresses, in the order they are tried.
        self.addresses = _addresses(self.address) if channel is None else [self.address]
        self.timeout = timeout
        self._own_channel = channel is None
        ca = ca or os.environ.get("CRMS_CA") or None
        cert = cert or os.environ.get("CRMS_CERT") or None
        key = key or os.environ.get("CRMS_KEY") or None
        token = token or os.environ.get("CRMS_TOKEN") or None
        if bool(cert) != bool(key):
            raise ValueError("a client certificate and its key go together (cert and key)")
        if channel is None:
            opts = list(options or [])
            if credentials is None and (ca or cert):
                credentials = grpc.ssl_channel_credentials(
                    root_certificates=_read(ca, "CA"),
                    private_key=_read(key, "client key"),
                    certificate_chain=_read(cert, "client certificate"),
                )
            if credentials is not None:
                channels = [grpc.secure_channel(a, credentials, options=opts) for a in self.addresses]
            else:
                channels = [grpc.insecure_channel(a, options=opts) for a in self.addresses]
        else:
            channels = [channel]
        self._base_channels = channels
        if token:
            auth = _Metadata([("authorization", f"Bearer {token}")])
            channels = [grpc.intercept_channel(c, auth) for c in channels]
        self._replicas = [_Replica(c) for c in channels]
        self._current = 0

    # -- lifecycle ---------------------------------------------------------

    def close(self) -> None:
        """Closes the channels (when this client made them)."""
        if self._own_channel:
            for c in self._base_channels:
                c.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"crms.Client({self.address!r})"

    # -- the address in use ------------------------------------------------

    @property
    def current_address(self) -> str:
        """The address in use: the one that last answered, where streams open."""
        return self.addresses[self._current]

    @property
    def channel(self) -> grpc.Channel:
        """The channel to :attr:`current_address`."""
        return self._replicas[self._current].channel

    # The generated stubs on that channel, for calls this wrapper does not cover.

    @property
    def job_service(self) -> job_pb2_grpc.JobServiceStub:
        return self._replicas[self._current].job

    @property
    def worker_service(self) -> worker_pb2_grpc.WorkerServiceStub:
        return self._replicas[self._current].worker

    @property
    def admin_service(self) -> admin_pb2_grpc.AdminServiceStub:
        return self._replicas[self._current].admin

    @property
    def queue_service(self) -> queue_pb2_grpc.QueueServiceStub:
        return self._replicas[self._current].queue

    # -- plumbing ----------------------------------------------------------

    def _call(self, service: str, method: str, request, timeout: Optional[float] = None):
        """Calls unary ``method`` of ``service`` ("job", "worker", "admin" or "queue",
        also the error subject) on the address in use, moving on to the next address on
        UNAVAILABLE (one round). ``timeout`` overrides the client's deadline."""
        tried = 0
        while True:
            index = self._current
            call = getattr(getattr(self._replicas[index], service), method)
            try:
                return call(request, timeout=self.timeout if timeout is None else timeout)
            except grpc.RpcError as err:
                tried += 1
                if err.code() != grpc.StatusCode.UNAVAILABLE or tried >= len(self._replicas):
                    raise from_rpc_error(err, service) from None
                if self._current == index:  # another thread may have moved on already
                    self._current = (index + 1) % len(self._replicas)

    def _stream(self, method: Callable, request, subject: str, timeout: Optional[float] = None) -> Iterator:
        """Iterates a server stream, mapping errors and cancelling the call when the caller stops."""
        call = method(request, timeout=timeout)
        try:
            for response in call:
                yield response
        except grpc.RpcError as err:
            raise from_rpc_error(err, subject) from None
        finally:
            call.cancel()

    # -- jobs --------------------------------------------------------------

    def submit(
        self,
        command: Sequence[str],
        *,
        name: Optional[str] = None,
        env: Optional[Mapping[str, str]] = None,
        cwd: Optional[str] = None,
        labels: Optional[Mapping[str, str]] = None,
        constraints: Optional[Mapping[str, str]] = None,
        worker: Optional[str] = None,
        priority: int = 0,
        retries: int = 0,
        timeout: Optional[float] = None,
        hold: bool = False,
        request_id: Optional[str] = None,
        lost_retries: int = 0,
        retention: Optional[float] = None,
        array: Union[None, ArraySpec, str, range] = None,
        after: Optional[Iterable[Union[Dependency, str, int]]] = None,
        retry_budget: float = 30.0,
        cpus: Optional[int] = None,
        memory: Union[None, int, str] = None,
        gpus: Optional[int] = None,
        resources: Optional[Mapping[str, int]] = None,
        queue: Optional[str] = None,
        preemptible: bool = False,
    ) -> Job:
        """Submits a job and returns it as stored (PENDING, or HELD with ``hold=True``).

        ``command`` is an argv list (no shell: use ``["sh", "-c", "..."]``).
        ``worker`` pins the job to one worker (GoCRMS's RunJob(id, worker));
        ``constraints`` must all be among a worker's labels. ``retries`` is how
        often a failed run is retried, ``timeout`` the wall-clock limit of a run
        in seconds. A retried submit with the same ``request_id`` returns the
        job of the first one.

        The call is retried on UNAVAILABLE and DEADLINE_EXCEEDED with that same
        ``request_id`` (a fresh uuid when none is given), backing off from 0.1 s
        doubling to 2 s, for up to ``retry_budget`` seconds in all, so a submit
        cut off by a failure creates exactly one job. The last error is raised
        once the budget is spent.

        ``array`` makes an array job: ``"1-1000%50"`` (or an :class:`ArraySpec`
        or ``range``) submits one parent and a task per index, each with
        ``CRMS_ARRAY_INDEX`` and ``CRMS_ARRAY_ID`` in its environment, at most
        50 running at once. ``after`` lists jobs this one waits for: ids, or
        ``"ID:succeeded|failed|finished"`` strings, or :class:`Dependency`.

        What one run needs: ``cpus`` (default 1), ``memory`` in bytes or as a
        size string (``"512M"``, ``"4G"``: powers of 1024; default no
        reservation), ``gpus``, and named countable ``resources``
        (``{"license": 1}``). A request no worker could ever hold raises
        :class:`crms.InvalidArgument`. ``queue`` picks the queue (default
        ``"default"``; :class:`crms.QueueNotFound` if it does not exist);
        ``preemptible`` lets the scheduler stop the run to give another queue
        its fair share (the job then goes back to PENDING).
        """
        if isinstance(command, (str, bytes)):
            raise TypeError("command must be a list of arguments, e.g. ['sh', '-c', 'echo hi']")
        spec = job_pb2.JobSpec(
            command=list(command),
            name=name or "",
            env=dict(env or {}),
            working_dir=cwd or "",
            labels=dict(labels or {}),
            constraints=dict(constraints or {}),
            target_worker=worker or "",
            priority=priority,
            max_retries=retries,
            timeout_seconds=_seconds(timeout, "timeout"),
            hold=hold,
            max_lost_retries=lost_retries,
            retention_seconds=_seconds(retention, "retention"),
            after=[Dependency.parse(d).to_proto() for d in (after or [])],
        )
        if array is not None:
            spec.array.CopyFrom(ArraySpec.parse(array).to_proto())
        asked = Resources.of(cpus=cpus, memory=memory, gpus=gpus, named=resources)
        if not asked.empty:
            spec.resources.CopyFrom(asked.to_proto())
        spec.queue = queue or ""
        spec.preemptible = preemptible
        req = job_pb2.SubmitJobRequest(spec=spec, request_id=request_id or str(uuid.uuid4()))
        deadline = time.monotonic() + retry_budget
        delay = 0.1
        while True:
            remaining = max(0.001, deadline - time.monotonic())
            attempt = remaining if self.timeout is None else min(self.timeout, remaining)
            try:
                return Job.from_proto(self._call("job", "SubmitJob", req, timeout=attempt).job)
            except JobNotFound as err:
                if queue and "queue" in err.details.lower():
                    raise QueueNotFound(err.details) from None
                raise
            except (Unavailable, DeadlineExceeded):
                if time.monotonic() + delay >= deadline:
                    raise
                time.sleep(delay)
                delay = min(delay * 2, 2.0)

    def get_job(self, id: JobId) -> Job:
        """Returns one job; raises :class:`crms.JobNotFound` if it does not exist."""
        resp = self._call("job", "GetJob", job_pb2.GetJobRequest(id=str(id)))
        return Job.from_proto(resp.job)

    def jobs(
        self,
        state: Union[None, StateArg, Iterable[StateArg]] = None,
        worker: Optional[str] = None,
        labels: Optional[Mapping[str, str]] = None,
        *,
        page_size: int = 0,
        array: Optional[JobId] = None,
        include_tasks: bool = False,
        order: Optional[str] = None,
    ) -> Iterator[Job]:
        """Iterates every job (ordered by id, oldest first), fetching page after page.

        ``order`` is ``"id"``, ``"submit_time"``, ``"end_time"``, ``"state"`` or
        ``"name"``, each with a leading ``"-"`` for descending (``"-id"``: newest
        first).

        ``state`` is one state or several (``JobState``, name like ``"RUNNING"``,
        or number); ``worker`` keeps jobs whose last attempt is on that worker;
        ``labels`` keeps jobs carrying every key=value. Array tasks are left out
        (their parent stands for them) unless ``include_tasks`` or ``worker`` is
        given; ``array`` lists only the tasks of that array parent.
        """
        req = job_pb2.ListJobsRequest(
            states=_states(state),
            worker=worker or "",
            labels=dict(labels or {}),
            page_size=page_size,
            array_parent=str(array) if array is not None else "",
            include_tasks=include_tasks,
            order_by=order or "",
        )
        while True:
            resp = self._call("job", "ListJobs", req)
            for j in resp.jobs:
                yield Job.from_proto(j)
            if not resp.next_page_token:
                return
            req.page_token = resp.next_page_token

    def count_jobs(
        self,
        state: Union[None, StateArg, Iterable[StateArg]] = None,
        worker: Optional[str] = None,
        labels: Optional[Mapping[str, str]] = None,
        *,
        array: Optional[JobId] = None,
        include_tasks: bool = False,
    ) -> int:
        """How many jobs match the filter (ListJobs' ``total_size``), without listing them."""
        req = job_pb2.ListJobsRequest(
            states=_states(state),
            worker=worker or "",
            labels=dict(labels or {}),
            page_size=1,
            array_parent=str(array) if array is not None else "",
            include_tasks=include_tasks,
        )
        return self._call("job", "ListJobs", req).total_size

    def history(
        self,
        state: Union[None, StateArg, Iterable[StateArg]] = None,
        *,
        since: Optional[When] = None,
        until: Optional[When] = None,
        owner: Optional[str] = None,
        queue: Optional[str] = None,
        worker: Optional[str] = None,
        name: Optional[str] = None,
        labels: Optional[Mapping[str, str]] = None,
        page_size: int = 0,
    ) -> Iterator[Job]:
        """Iterates finished jobs from the history database, newest end first.

        The history keeps jobs after etcd retention deleted them. ``since`` and
        ``until`` bound the end time (a ``datetime``, naive meaning UTC,
        seconds since the epoch, or a ``timedelta`` before now); ``name`` is a
        glob (``*``, ``?``); ``owner`` is the submitter (``Job.user``; for jobs
        stored before it, the ``crms.io/owner`` label). Raises
        :class:`crms.CrmsError` with FAILED_PRECONDITION when the control
        plane keeps no history, UNAVAILABLE while its database is down.
        """
        req = job_pb2.ListHistoryRequest(
            states=_states(state),
            owner=owner or "",
            queue=queue or "",
            worker=worker or "",
            name_glob=name or "",
            labels=dict(labels or {}),
            page_size=page_size,
        )
        if since is not None:
            req.since.CopyFrom(_timestamp(since))
        if until is not None:
            req.until.CopyFrom(_timestamp(until))
        while True:
            resp = self._call("job", "ListHistory", req)
            for j in resp.jobs:
                yield Job.from_proto(j)
            if not resp.next_page_token:
                return
            req.page_token = resp.next_page_token

    def watch_jobs(
        self,
        ids: Optional[Iterable[JobId]] = None,
        *,
        after_revision: int = 0,
        timeout: Optional[float] = None,
    ) -> Iterator[WatchEvent]:
        """Streams job events: EXISTING for each current job, SYNCED, then PUT/DELETED.

        ``ids`` limits the watch to those jobs. With ``after_revision`` (an
        event's ``revision`` seen before) only changes after it are sent.
        Close the generator (or break out of the loop) to end the watch; with
        ``timeout`` the watch ends after that many seconds with
        :class:`crms.DeadlineExceeded`.
        """
        req = job_pb2.WatchJobsRequest(ids=[str(i) for i in ids or ()], after_revision=after_revision)
        for resp in self._stream(self.job_service.WatchJobs, req, "job", timeout=timeout):
            yield WatchEvent.from_proto(resp)

    def wait(
        self,
        id: JobId,
        timeout: Optional[float] = None,
        *,
        until: Optional[Collection[StateArg]] = None,
    ) -> Job:
        """Waits (with WatchJobs) until the job ends and returns it in its final state.

        With ``until`` (e.g. ``{JobState.RUNNING}``) it returns as soon as the
        job is in one of those states, or in a final state. Raises
        :class:`crms.WaitTimeout` after ``timeout`` seconds and
        :class:`crms.JobNotFound` if the job does not exist or is deleted.
        """
        id = str(id)
        wanted = {JobState.parse(s) for s in until} if until else set()

        def reached(job: Job) -> bool:
            return job.state.is_final or job.state in wanted

        deadline = None if timeout is None else time.monotonic() + timeout
        revision = 0
        while True:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            req = job_pb2.WatchJobsRequest(ids=[id], after_revision=revision)
            seen = revision > 0
            events = self._stream(self.job_service.WatchJobs, req, "job", timeout=remaining)
            try:
                for resp in events:
                    revision = max(revision, resp.revision)
                    if resp.type == job_pb2.WATCH_EVENT_TYPE_SYNCED:
                        if not seen:
                            # The answering replica's cache may not have the job yet
                            # (or it does not exist): ask for it directly.
                            job = self.get_job(id)
                            seen = True
                            if reached(job):
                                return job
                        continue
                    if not resp.HasField("job") or resp.job.id != id:
                        continue
                    if resp.type == job_pb2.WATCH_EVENT_TYPE_DELETED:
                        raise JobNotFound(f"job {id} was deleted while waiting for it")
                    seen = True
                    job = Job.from_proto(resp.job)
                    if reached(job):
                        return job
            except CrmsError as err:
                if err.code == grpc.StatusCode.DEADLINE_EXCEEDED:
                    raise WaitTimeout(f"job {id} did not end within {timeout} s", err.code) from None
                if err.code == grpc.StatusCode.OUT_OF_RANGE and revision:
                    revision = 0  # compacted away: start over with a full listing
                    continue
                raise
            finally:
                events.close()
            # The server ended the stream (e.g. a replica shutting down): resume after what we saw.
            if deadline is not None and time.monotonic() >= deadline:
                raise WaitTimeout(f"job {id} did not end within {timeout} s")

    def kill(self, id: JobId, grace: Optional[float] = None, *, force: bool = False) -> Job:
        """Kills a job. A pending or held job is KILLED at once; a running one
        gets SIGTERM, then SIGKILL after ``grace`` seconds (server default 10,
        at most 3600: :class:`crms.InvalidArgument` above), and is returned
        still RUNNING with ``kill_requested`` set. A later kill with a shorter
        ``grace``, or ``force=True`` (SIGKILL now), overrides an earlier one.
        Raises :class:`crms.FailedPrecondition` if it already ended."""
        if grace is not None and grace <= 0:
            raise ValueError("grace must be positive (None means the server's default)")
        req = job_pb2.KillJobRequest(id=str(id), grace_seconds=_seconds(grace, "grace"), force=force)
        return Job.from_proto(self._call("job", "KillJob", req).job)

    def run_job(self, id: JobId, worker: str) -> Job:
        """GoCRMS's ``runJob(id, worker)``: a HELD or PENDING job runs on ``worker``
        (released if HELD) as soon as that worker has a free slot.
        :class:`crms.WorkerNotFound` for an unknown worker,
        :class:`crms.FailedPrecondition` for a job in another state."""
        try:
            resp = self._call("job", "RunJob", job_pb2.RunJobRequest(id=str(id), worker=worker))
        except JobNotFound as err:
            if err.details.startswith("worker "):
                raise WorkerNotFound(err.details) from None
            raise
        return Job.from_proto(resp.job)

    def requeue(self, id: JobId, *, failed_only: bool = False) -> Job:
        """Runs a finished job again as a new attempt under the same id (its
        attempts kept); for an array every task, or with ``failed_only`` the
        tasks that did not succeed. FailedPrecondition if it has not ended."""
        req = job_pb2.RequeueJobRequest(id=str(id), failed_only=failed_only)
        return Job.from_proto(self._call("job", "RequeueJob", req).job)

    def hold(self, id: JobId) -> Job:
        """Holds a PENDING job (now HELD). FailedPrecondition in other states."""
        return Job.from_proto(self._call("job", "HoldJob", job_pb2.HoldJobRequest(id=str(id))).job)

    def release(self, id: JobId, worker: Optional[str] = None) -> Job:
        """Releases a HELD job to PENDING. FailedPrecondition in other states.
        With ``worker`` it runs there (the same as :meth:`run_job`)."""
        if worker:
            return self.run_job(id, worker)
        resp = self._call("job", "ReleaseJob", job_pb2.ReleaseJobRequest(id=str(id)))
        return Job.from_proto(resp.job)

    def delete(self, id: JobId) -> None:
        """Deletes a finished job. FailedPrecondition if it has not finished."""
        self._call("job", "DeleteJob", job_pb2.DeleteJobRequest(id=str(id)))

    def output(self, id: JobId, follow: bool = False) -> Iterator[OutputChunk]:
        """Streams a job's stdout and stderr as :class:`crms.OutputChunk` (stream + bytes).

        Without ``follow`` it sends what the job has written so far. With
        ``follow`` it first waits for the job to start, then sends output as it
        is written until the job ends (like ``tail -f``). Chunks marked
        ``truncated`` are the tail stored with the job, given when the worker
        holding the full output is not attached.
        """
        id = str(id)
        if follow:
            self.wait(id, until={JobState.RUNNING})
        req = job_pb2.StreamOutputRequest(id=id, follow=follow)
        for resp in self._stream(self.job_service.StreamOutput, req, "job"):
            yield OutputChunk.from_proto(resp)

    def read_output(
        self, id: JobId, stream: Union[OutputStream, str] = OutputStream.STDOUT, *, follow: bool = False
    ) -> bytes:
        """Returns all of one stream of a job's output (stdout by default) as bytes."""
        which = OutputStream.parse(stream)
        return b"".join(c.data for c in self.output(id, follow=follow) if c.stream == which)

    # -- workers -----------------------------------------------------------

    def workers(self, *, page_size: int = 0) -> List[Worker]:
        """Lists every worker, ordered by name."""
        req = worker_pb2.ListWorkersRequest(page_size=page_size)
        out: List[Worker] = []
        while True:
            resp = self._call("worker", "ListWorkers", req)
            out.extend(Worker.from_proto(w) for w in resp.workers)
            if not resp.next_page_token:
                return out
            req.page_token = resp.next_page_token

    def worker(self, name: str) -> Worker:
        """Returns one worker; raises :class:`crms.WorkerNotFound` if it is not known."""
        resp = self._call("worker", "GetWorker", worker_pb2.GetWorkerRequest(name=name))
        return Worker.from_proto(resp.worker)

    def drain(self, name: str) -> Worker:
        """Stops placing jobs on a worker (now DRAINING); its running jobs finish."""
        resp = self._call("worker", "DrainWorker", worker_pb2.DrainWorkerRequest(name=name))
        return Worker.from_proto(resp.worker)

    def resume(self, name: str) -> Worker:
        """Undoes :meth:`drain`: the worker (UP again) takes new jobs."""
        resp = self._call("worker", "ResumeWorker", worker_pb2.ResumeWorkerRequest(name=name))
        return Worker.from_proto(resp.worker)

    def forget_worker(self, name: str) -> None:
        """Removes a DOWN worker's record. FailedPrecondition if it is not DOWN."""
        self._call("worker", "ForgetWorker", worker_pb2.ForgetWorkerRequest(name=name))

    def stop(self, name: str) -> None:
        """Tells a worker to exit (GoCRMS's close); its running jobs are killed."""
        self._call("worker", "StopWorker", worker_pb2.StopWorkerRequest(name=name))

    # -- admin -------------------------------------------------------------

    def cluster_status(self) -> ClusterStatus:
        """etcd members, database size against quota, alarms, worker and job counts."""
        resp = self._call("admin", "GetClusterStatus", admin_pb2.GetClusterStatusRequest())
        return ClusterStatus.from_proto(resp)


    # -- queues ------------------------------------------------------------

    def create_queue(
        self,
        name: str,
        *,
        weight: float = 1.0,
        max_running: int = 0,
        max_cpus: int = 0,
        max_gpus: int = 0,
        preemptible: bool = False,
    ) -> Queue:
        """Creates a queue (admin) and returns it as stored.

        ``weight`` is its share against the other queues' weights; the limits
        cap its ASSIGNED and RUNNING jobs, their cpus and their gpus (0: no
        limit); ``preemptible`` makes all its jobs preemptible.
        :class:`crms.AlreadyExists` if the name is taken,
        :class:`crms.InvalidArgument` for a bad name or weight,
        :class:`crms.PermissionDenied` without the admin role.
        """
        q = Queue(
            name=name,
            weight=weight,
            max_running=max_running,
            max_cpus=max_cpus,
            max_gpus=max_gpus,
            preemptible=preemptible,
        )
        resp = self._call("queue", "CreateQueue", queue_pb2.CreateQueueRequest(queue=q.to_proto()))
        return Queue.from_proto(resp.queue)

    def get_queue(self, name: str) -> Queue:
        """One queue with its status (running, pending, shares per user);
        :class:`crms.QueueNotFound` if it does not exist."""
        return Queue.from_proto(self._call("queue", "GetQueue", queue_pb2.GetQueueRequest(name=name)).queue)

    def list_queues(self) -> List[Queue]:
        """Every queue with its status, ``"default"`` first, then by name."""
        resp = self._call("queue", "ListQueues", queue_pb2.ListQueuesRequest())
        return [Queue.from_proto(q) for q in resp.queues]

    def update_queue(
        self,
        queue: Union[str, Queue],
        *,
        weight: Optional[float] = None,
        max_running: Optional[int] = None,
        max_cpus: Optional[int] = None,
        max_gpus: Optional[int] = None,
        preemptible: Optional[bool] = None,
    ) -> Queue:
        """Changes a queue's settings (admin) and returns it as stored.

        The server replaces every setting, so the ones not given here keep the
        values of ``queue``: a :class:`Queue` as read before, or a name (the
        queue is read first; a change made by someone else in between is
        overwritten). :class:`crms.QueueNotFound` if it does not exist.
        """
        current = self.get_queue(queue) if isinstance(queue, str) else queue
        changes = {
            "weight": weight,
            "max_running": max_running,
            "max_cpus": max_cpus,
            "max_gpus": max_gpus,
            "preemptible": preemptible,
        }
        wanted = dataclasses.replace(current, **{k: v for k, v in changes.items() if v is not None})
        resp = self._call("queue", "UpdateQueue", queue_pb2.UpdateQueueRequest(queue=wanted.to_proto()))
        return Queue.from_proto(resp.queue)

    def delete_queue(self, name: str) -> None:
        """Deletes a queue (admin). :class:`crms.FailedPrecondition` while it
        has unfinished jobs, and for ``"default"``; :class:`crms.QueueNotFound`
        if it does not exist."""
        self._call("queue", "DeleteQueue", queue_pb2.DeleteQueueRequest(name=name))

    # -- accounting --------------------------------------------------------

    def get_usage(
        self,
        since: Optional[When] = None,
        group_by: Union[UsageGrouping, str, int] = UsageGrouping.USER,
    ) -> UsageReport:
        """What finished jobs used, summed per user, queue or worker, from the job history.

        ``since`` bounds the end time: a ``datetime`` (naive means UTC),
        seconds since the epoch, or a ``timedelta`` before now (default: the
        server's, the last 7 days). ``group_by`` is ``"user"``, ``"queue"`` or
        ``"worker"`` (or a :class:`crms.UsageGrouping`). Returns a
        :class:`crms.UsageReport`: its ``rows`` (jobs, succeeded, failed,
        killed, cpu_hours, gpu_hours, wall_hours, max_rss_bytes per key),
        largest CPU hours first, and the ``since`` used. FAILED_PRECONDITION
        when the control plane keeps no history.
        """
        req = job_pb2.GetUsageRequest(group_by=int(UsageGrouping.parse(group_by)))
        if since is not None:
            req.since.CopyFrom(_timestamp(since))
        return UsageReport.from_proto(self._call("job", "GetUsage", req))
