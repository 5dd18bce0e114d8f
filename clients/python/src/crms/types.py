"""Typed views of crms records: enums and frozen dataclasses built from the protobufs."""

from __future__ import annotations

import dataclasses
import enum
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Dict, List, Mapping, Optional, Tuple, Union

from crms.v1 import admin_pb2, job_pb2, queue_pb2, worker_pb2

__all__ = [
    "JobState",
    "WorkerState",
    "WatchEventType",
    "OutputStream",
    "JobSpec",
    "ArraySpec",
    "DependencyCondition",
    "Dependency",
    "UsageGrouping",
    "parse_memory",
    "Resources",
    "Usage",
    "ArrayCounts",
    "Attempt",
    "Job",
    "Worker",
    "WatchEvent",
    "OutputChunk",
    "EtcdMember",
    "ClusterStatus",
    "UserShare",
    "QueueStatus",
    "Queue",
    "UsageRow",
    "UsageReport",
]


class _ProtoEnum(enum.IntEnum):
    """An IntEnum mirroring a proto enum; names drop the proto prefix."""

    @classmethod
    def parse(cls, value: Union["_ProtoEnum", int, str]):
        """Accepts a member, its number, or its name in any case, with or without the proto prefix."""
        if isinstance(value, cls):
            return value
        if isinstance(value, int):
            return cls(value)
        if isinstance(value, str):
            name = value.strip().upper()
            prefix = cls._proto_prefix()
            if name.startswith(prefix):
                name = name[len(prefix):]
            try:
                return cls[name]
            except KeyError:
                raise ValueError(f"unknown {cls.__name__}: {value!r}") from None
        raise TypeError(f"cannot make a {cls.__name__} from {value!r}")

    @classmethod
    def _proto_prefix(cls) -> str:
        return ""

    @classmethod
    def _from_proto(cls, number: int):
        try:
            return cls(number)
        except ValueError:  # a value from a newer server than this client knows
            return cls.UNSPECIFIED  # type: ignore[attr-defined]

    def __str__(self) -> str:
        return self.name


class JobState(_ProtoEnum):
    """Where a job is in its life (crms.v1.JobState without the JOB_STATE_ prefix)."""

    UNSPECIFIED = job_pb2.JOB_STATE_UNSPECIFIED
    PENDING = job_pb2.JOB_STATE_PENDING
    HELD = job_pb2.JOB_STATE_HELD
    ASSIGNED = job_pb2.JOB_STATE_ASSIGNED
    RUNNING = job_pb2.JOB_STATE_RUNNING
    SUCCEEDED = job_pb2.JOB_STATE_SUCCEEDED
    FAILED = job_pb2.JOB_STATE_FAILED
    KILLED = job_pb2.JOB_STATE_KILLED
    LOST = job_pb2.JOB_STATE_LOST
    #: Only an attempt's outcome, never a job's state: the scheduler stopped the
    #: run to give another queue its fair share, and the job went back to PENDING.
    PREEMPTED = job_pb2.JOB_STATE_PREEMPTED

    @classmethod
    def _proto_prefix(cls) -> str:
        return "JOB_STATE_"

    @property
    def is_final(self) -> bool:
        """True for states a stored job never leaves (a LOST job that was requeued is PENDING)."""
        return self in (JobState.SUCCEEDED, JobState.FAILED, JobState.KILLED, JobState.LOST)


class WorkerState(_ProtoEnum):
    """A worker's liveness (crms.v1.WorkerState without the WORKER_STATE_ prefix)."""

    UNSPECIFIED = worker_pb2.WORKER_STATE_UNSPECIFIED
    UP = worker_pb2.WORKER_STATE_UP
    DRAINING = worker_pb2.WORKER_STATE_DRAINING
    DISCONNECTED = worker_pb2.WORKER_STATE_DISCONNECTED
    DOWN = worker_pb2.WORKER_STATE_DOWN

    @classmethod
    def _proto_prefix(cls) -> str:
        return "WORKER_STATE_"


class WatchEventType(_ProtoEnum):
    """What a watch event means (crms.v1.WatchEventType without its prefix)."""

    UNSPECIFIED = job_pb2.WATCH_EVENT_TYPE_UNSPECIFIED
    EXISTING = job_pb2.WATCH_EVENT_TYPE_EXISTING
    SYNCED = job_pb2.WATCH_EVENT_TYPE_SYNCED
    PUT = job_pb2.WATCH_EVENT_TYPE_PUT
    DELETED = job_pb2.WATCH_EVENT_TYPE_DELETED

    @classmethod
    def _proto_prefix(cls) -> str:
        return "WATCH_EVENT_TYPE_"


class OutputStream(_ProtoEnum):
    """Which stream output came from (crms.v1.OutputStream without its prefix)."""

    UNSPECIFIED = job_pb2.OUTPUT_STREAM_UNSPECIFIED
    STDOUT = job_pb2.OUTPUT_STREAM_STDOUT
    STDERR = job_pb2.OUTPUT_STREAM_STDERR

    @classmethod
    def _proto_prefix(cls) -> str:
        return "OUTPUT_STREAM_"


class DependencyCondition(_ProtoEnum):
    """Which end of a dependency lets the dependant run (crms.v1.DependencyCondition without its prefix)."""

    UNSPECIFIED = job_pb2.DEPENDENCY_CONDITION_UNSPECIFIED
    SUCCEEDED = job_pb2.DEPENDENCY_CONDITION_SUCCEEDED
    FAILED = job_pb2.DEPENDENCY_CONDITION_FAILED
    FINISHED = job_pb2.DEPENDENCY_CONDITION_FINISHED

    @classmethod
    def _proto_prefix(cls) -> str:
        return "DEPENDENCY_CONDITION_"


class UsageGrouping(_ProtoEnum):
    """What :meth:`crms.Client.get_usage` groups by (crms.v1.UsageGrouping without its prefix)."""

    UNSPECIFIED = job_pb2.USAGE_GROUPING_UNSPECIFIED
    USER = job_pb2.USAGE_GROUPING_USER
    QUEUE = job_pb2.USAGE_GROUPING_QUEUE
    WORKER = job_pb2.USAGE_GROUPING_WORKER

    @classmethod
    def _proto_prefix(cls) -> str:
        return "USAGE_GROUPING_"


_MEMORY = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(?:([kmgt])(?:ib|i|b)?|b)?\s*$", re.IGNORECASE)
_MEMORY_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def parse_memory(value: Union[int, str]) -> int:
    """Bytes from an int (bytes) or a size string: ``"4G"``, ``"512M"``, ``"1.5GiB"``, ``"100"``.

    The suffixes K, M, G, T are powers of 1024, with or without ``i``, ``iB``
    or ``B``, in any case; a fraction is rounded down to whole bytes and needs
    a suffix. The same sizes as ``crms submit --memory``.
    """
    if isinstance(value, bool):
        raise TypeError(f"memory must be bytes or a size like '4G' (got {value!r})")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"memory must not be negative (got {value})")
        return value
    if isinstance(value, str):
        m = _MEMORY.match(value)
        unit = (m.group(2) or "").lower() if m else ""
        if not m or (not unit and "." in m.group(1)):
            raise ValueError(f"memory {value!r}: expected bytes or a size like 512M, 4G, 1.5GiB")
        number = m.group(1)
        if "." in number:
            return int(float(number) * _MEMORY_UNITS[unit])
        return int(number) * _MEMORY_UNITS[unit]
    raise TypeError(f"memory must be bytes or a size like '4G' (got {value!r})")


@dataclass(frozen=True)
class Resources:
    """What a job asks for or a worker offers (crms.v1.Resources).

    In a job's spec 0 cpus means the default, 1, and 0 memory means no
    reservation; ``named`` holds countable resources such as licenses.
    """

    cpus: int = 0
    memory_bytes: int = 0
    gpus: int = 0
    named: Dict[str, int] = field(default_factory=dict)

    @classmethod
    def of(
        cls,
        cpus: Optional[int] = None,
        memory: Union[None, int, str] = None,
        gpus: Optional[int] = None,
        named: Optional[Mapping[str, int]] = None,
    ) -> "Resources":
        """Resources from loose arguments: ``memory`` is bytes or a size string (``"4G"``)."""
        for what, n in (("cpus", cpus), ("gpus", gpus)):
            if n is not None and n < 0:
                raise ValueError(f"{what} must not be negative (got {n})")
        for key, n in (named or {}).items():
            if n < 0:
                raise ValueError(f"resource {key} must not be negative (got {n})")
        return cls(
            cpus=cpus or 0,
            memory_bytes=parse_memory(memory) if memory is not None else 0,
            gpus=gpus or 0,
            named=dict(named or {}),
        )

    @property
    def empty(self) -> bool:
        """True when nothing is set (in a spec: the defaults, 1 cpu)."""
        return not (self.cpus or self.memory_bytes or self.gpus or self.named)

    @classmethod
    def from_proto(cls, r: job_pb2.Resources) -> "Resources":
        return _same_names(cls, r, named=dict(r.named))

    def to_proto(self) -> job_pb2.Resources:
        return job_pb2.Resources(cpus=self.cpus, memory_bytes=self.memory_bytes, gpus=self.gpus, named=dict(self.named))


@dataclass(frozen=True)
class Usage:
    """What a run (or every run of a job, summed) used, as its worker measured it (crms.v1.Usage)."""

    cpu_seconds: float = 0.0
    max_rss_bytes: int = 0
    wall_seconds: float = 0.0
    gpu_seconds: float = 0.0

    @classmethod
    def from_proto(cls, u: job_pb2.Usage) -> "Usage":
        return _same_names(cls, u)


@dataclass(frozen=True)
class ArraySpec:
    """The index range of an array job (crms.v1.ArraySpec), like ``--array 1-1000%50``."""

    first: int
    last: int
    max_running: int = 0

    @classmethod
    def parse(cls, value: Union["ArraySpec", str, range]) -> "ArraySpec":
        """Accepts an ArraySpec, ``"FIRST-LAST[%MAX]"`` / ``"N"``, or a ``range`` with step 1."""
        if isinstance(value, ArraySpec):
            return value
        if isinstance(value, range):
            if value.step != 1 or len(value) == 0:
                raise ValueError("array range must be non-empty with step 1")
            return cls(value.start, value.stop - 1)
        if isinstance(value, str):
            text, _, limit = value.partition("%")
            first, _, last = text.partition("-")
            try:
                return cls(int(first), int(last or first), int(limit or 0))
            except ValueError:
                raise ValueError(f"array {value!r}: expected FIRST-LAST or FIRST-LAST%MAX, e.g. 1-1000%50") from None
        raise TypeError(f"cannot make an ArraySpec from {value!r}")

    def to_proto(self) -> job_pb2.ArraySpec:
        return job_pb2.ArraySpec(first=self.first, last=self.last, max_running=self.max_running)

    def __str__(self) -> str:
        return f"{self.first}-{self.last}" + (f"%{self.max_running}" if self.max_running else "")


@dataclass(frozen=True)
class Dependency:
    """A job another waits for (crms.v1.Dependency)."""

    job_id: str
    condition: DependencyCondition = DependencyCondition.SUCCEEDED

    @classmethod
    def parse(cls, value: Union["Dependency", str, int]) -> "Dependency":
        """Accepts a Dependency, a job id, or ``"ID:succeeded|failed|finished"``."""
        if isinstance(value, Dependency):
            return value
        if isinstance(value, int):
            return cls(str(value))
        if isinstance(value, str):
            job_id, _, word = value.partition(":")
            return cls(job_id, DependencyCondition.parse(word) if word else DependencyCondition.SUCCEEDED)
        raise TypeError(f"cannot make a Dependency from {value!r}")

    def to_proto(self) -> job_pb2.Dependency:
        return job_pb2.Dependency(job_id=self.job_id, condition=int(self.condition))

    def __str__(self) -> str:
        return f"{self.job_id}:{self.condition.name.lower()}"


@dataclass(frozen=True)
class ArrayCounts:
    """An array parent's tasks by state (crms.v1.ArrayCounts)."""

    total: int = 0
    created: int = 0
    pending: int = 0
    held: int = 0
    running: int = 0
    succeeded: int = 0
    failed: int = 0
    killed: int = 0
    lost: int = 0

    @classmethod
    def from_proto(cls, c: job_pb2.ArrayCounts) -> "ArrayCounts":
        return cls(
            total=c.total,
            created=c.created,
            pending=c.pending,
            held=c.held,
            running=c.running,
            succeeded=c.succeeded,
            failed=c.failed,
            killed=c.killed,
            lost=c.lost,
        )


def _time(msg, name: str) -> Optional[datetime]:
    if not msg.HasField(name):
        return None
    return getattr(msg, name).ToDatetime(tzinfo=timezone.utc)


def _opt_int(msg, name: str) -> Optional[int]:
    return getattr(msg, name) if msg.HasField(name) else None


def _same_names(cls, msg, **converted):
    """An instance of dataclass ``cls`` whose fields are the message's fields of
    the same names, except those given already ``converted``."""
    values = {f.name: getattr(msg, f.name) for f in dataclasses.fields(cls) if f.name not in converted}
    return cls(**values, **converted)


@dataclass(frozen=True)
class JobSpec:
    """What was submitted (crms.v1.JobSpec). Timeouts are in seconds, None for none."""

    command: List[str]
    name: str = ""
    env: Dict[str, str] = field(default_factory=dict)
    cwd: str = ""
    labels: Dict[str, str] = field(default_factory=dict)
    constraints: Dict[str, str] = field(default_factory=dict)
    worker: str = ""
    priority: int = 0
    retries: int = 0
    timeout: Optional[int] = None
    hold: bool = False
    lost_retries: int = 0
    retention: Optional[int] = None
    array: Optional[ArraySpec] = None
    after: Tuple[Dependency, ...] = ()
    #: What one run asks for; None when the spec left it unset (1 cpu, no memory reservation).
    resources: Optional[Resources] = None
    #: The queue named at submit ("" means "default"; the job's queue is ``Job.queue``).
    queue: str = ""
    preemptible: bool = False

    @classmethod
    def from_proto(cls, spec: job_pb2.JobSpec) -> "JobSpec":
        return cls(
            command=list(spec.command),
            name=spec.name,
            env=dict(spec.env),
            cwd=spec.working_dir,
            labels=dict(spec.labels),
            constraints=dict(spec.constraints),
            worker=spec.target_worker,
            priority=spec.priority,
            retries=spec.max_retries,
            timeout=spec.timeout_seconds or None,
            hold=spec.hold,
            lost_retries=spec.max_lost_retries,
            retention=spec.retention_seconds or None,
            array=(
                ArraySpec(spec.array.first, spec.array.last, spec.array.max_running)
                if spec.HasField("array")
                else None
            ),
            after=tuple(
                Dependency(d.job_id, DependencyCondition._from_proto(d.condition) or DependencyCondition.SUCCEEDED)
                for d in spec.after
            ),
            resources=Resources.from_proto(spec.resources) if spec.HasField("resources") else None,
            queue=spec.queue,
            preemptible=spec.preemptible,
        )


@dataclass(frozen=True)
class Attempt:
    """One run of a job on a worker (crms.v1.Attempt)."""

    number: int
    worker: str
    assign_time: Optional[datetime]
    start_time: Optional[datetime]
    end_time: Optional[datetime]
    outcome: JobState
    exit_code: Optional[int]
    signal: str
    error: str
    timed_out: bool = False
    #: What the run used; None while it runs or when its worker could not tell.
    usage: Optional[Usage] = None
    #: The GPU indices reserved for the run (its CUDA_VISIBLE_DEVICES).
    gpu_indices: Tuple[int, ...] = ()

    @classmethod
    def from_proto(cls, a: job_pb2.Attempt) -> "Attempt":
        return cls(
            number=a.number,
            worker=a.worker,
            assign_time=_time(a, "assign_time"),
            start_time=_time(a, "start_time"),
            end_time=_time(a, "end_time"),
            outcome=JobState._from_proto(a.outcome),
            exit_code=_opt_int(a, "exit_code"),
            signal=a.signal,
            error=a.error,
            timed_out=a.timed_out,
            usage=Usage.from_proto(a.usage) if a.HasField("usage") else None,
            gpu_indices=tuple(a.gpu_indices),
        )


@dataclass(frozen=True)
class Job:
    """A submitted job and its current status (crms.v1.Job)."""

    id: str
    spec: JobSpec
    state: JobState
    attempt: int = 0
    worker: str = ""
    pid: int = 0
    exit_code: Optional[int] = None
    signal: str = ""
    error: str = ""
    pending_reason: str = ""
    submit_time: Optional[datetime] = None
    start_time: Optional[datetime] = None
    end_time: Optional[datetime] = None
    stdout_tail: bytes = b""
    stderr_tail: bytes = b""
    attempts: Tuple[Attempt, ...] = ()
    failures: int = 0
    lost_count: int = 0
    request_id: str = ""
    kill_requested: bool = False
    kill_grace_seconds: int = 0
    array_parent: str = ""
    array_index: int = 0
    array_counts: Optional[ArrayCounts] = None
    array_created: int = 0
    run_on: str = ""
    kill_force: bool = False
    requeues: int = 0
    #: Who submitted it: the token's name, or on an open server the crms.io/owner label.
    user: str = ""
    #: Its queue ("default" when the spec named none).
    queue: str = ""
    #: What every run so far used, summed; None before any run reported.
    usage: Optional[Usage] = None
    #: The scheduler is stopping the run to give another queue its share.
    preempt_requested: bool = False
    #: Runs preempted so far (charged to no retry budget).
    preemptions: int = 0
    #: For a PENDING job, its place in its queue (1 = next); 0 when not known.
    queue_position: int = 0

    @classmethod
    def from_proto(cls, j: job_pb2.Job) -> "Job":
        return cls(
            id=j.id,
            spec=JobSpec.from_proto(j.spec),
            state=JobState._from_proto(j.state),
            attempt=j.attempt,
            worker=j.worker,
            pid=j.pid,
            exit_code=_opt_int(j, "exit_code"),
            signal=j.signal,
            error=j.error,
            pending_reason=j.pending_reason,
            submit_time=_time(j, "submit_time"),
            start_time=_time(j, "start_time"),
            end_time=_time(j, "end_time"),
            stdout_tail=bytes(j.stdout_tail),
            stderr_tail=bytes(j.stderr_tail),
            attempts=tuple(Attempt.from_proto(a) for a in j.attempts),
            failures=j.failures,
            lost_count=j.lost_count,
            request_id=j.request_id,
            kill_requested=j.kill_requested,
            kill_grace_seconds=j.kill_grace_seconds,
            array_parent=j.array_parent,
            array_index=j.array_index,
            array_counts=ArrayCounts.from_proto(j.array_counts) if j.HasField("array_counts") else None,
            array_created=j.array_created,
            run_on=j.run_on,
            kill_force=j.kill_force,
            requeues=j.requeues,
            user=j.user,
            queue=j.queue,
            usage=Usage.from_proto(j.usage) if j.HasField("usage") else None,
            preempt_requested=j.preempt_requested,
            preemptions=j.preemptions,
            queue_position=j.queue_position,
        )

    @property
    def is_array(self) -> bool:
        """True for an array parent (its tasks: ``client.jobs(array=job.id)``)."""
        return self.spec.array is not None

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def command(self) -> List[str]:
        return self.spec.command

    @property
    def done(self) -> bool:
        """True once the job is in a final state."""
        return self.state.is_final

    @property
    def succeeded(self) -> bool:
        return self.state is JobState.SUCCEEDED


@dataclass(frozen=True)
class Worker:
    """A machine (or process) that runs jobs in slots (crms.v1.Worker)."""

    name: str
    slots: int
    labels: Dict[str, str]
    hostname: str
    version: str
    state: WorkerState
    used_slots: int
    running_jobs: Tuple[str, ...]
    attach_time: Optional[datetime]
    last_heartbeat: Optional[datetime]
    disconnect_time: Optional[datetime]
    replica: str
    stop_requested: bool
    down_time: Optional[datetime] = None
    down_reason: str = ""
    last_jobs: Tuple[str, ...] = ()
    #: What it offers in all, and what its ASSIGNED and RUNNING jobs hold.
    capacity: Resources = field(default_factory=Resources)
    allocated: Resources = field(default_factory=Resources)

    @classmethod
    def from_proto(cls, w: worker_pb2.Worker) -> "Worker":
        return cls(
            name=w.name,
            slots=w.slots,
            labels=dict(w.labels),
            hostname=w.hostname,
            version=w.version,
            state=WorkerState._from_proto(w.state),
            used_slots=w.used_slots,
            running_jobs=tuple(w.running_jobs),
            attach_time=_time(w, "attach_time"),
            last_heartbeat=_time(w, "last_heartbeat"),
            disconnect_time=_time(w, "disconnect_time"),
            replica=w.replica,
            stop_requested=w.stop_requested,
            down_time=_time(w, "down_time"),
            down_reason=w.down_reason,
            last_jobs=tuple(w.last_jobs),
            capacity=Resources.from_proto(w.capacity),
            allocated=Resources.from_proto(w.allocated),
        )

    @property
    def free_slots(self) -> int:
        return max(0, self.slots - self.used_slots)


@dataclass(frozen=True)
class WatchEvent:
    """One event of :meth:`crms.Client.watch_jobs`. ``job`` is None for SYNCED."""

    type: WatchEventType
    job: Optional[Job]
    revision: int

    @classmethod
    def from_proto(cls, r: job_pb2.WatchJobsResponse) -> "WatchEvent":
        return cls(
            type=WatchEventType._from_proto(r.type),
            job=Job.from_proto(r.job) if r.HasField("job") else None,
            revision=r.revision,
        )


@dataclass(frozen=True)
class OutputChunk:
    """A chunk of a job's output from :meth:`crms.Client.output`."""

    stream: OutputStream
    data: bytes
    offset: int = 0
    truncated: bool = False

    @property
    def stream_name(self) -> str:
        """``"stdout"`` or ``"stderr"``."""
        return self.stream.name.lower()

    @classmethod
    def from_proto(cls, r: job_pb2.StreamOutputResponse) -> "OutputChunk":
        return cls(
            stream=OutputStream._from_proto(r.stream),
            data=bytes(r.data),
            offset=r.offset,
            truncated=r.truncated,
        )


@dataclass(frozen=True)
class EtcdMember:
    """Status of one etcd member (crms.v1.EtcdMember)."""

    endpoint: str
    id: str
    name: str
    version: str
    db_size: int
    db_size_in_use: int
    leader: bool
    raft_index: int
    alarms: Tuple[str, ...]
    error: str

    @classmethod
    def from_proto(cls, m: admin_pb2.EtcdMember) -> "EtcdMember":
        return cls(
            endpoint=m.endpoint,
            id=m.id,
            name=m.name,
            version=m.version,
            db_size=m.db_size,
            db_size_in_use=m.db_size_in_use,
            leader=m.leader,
            raft_index=m.raft_index,
            alarms=tuple(m.alarms),
            error=m.error,
        )


@dataclass(frozen=True)
class ClusterStatus:
    """etcd and the cluster's jobs and workers (crms.v1.GetClusterStatusResponse)."""

    members: Tuple[EtcdMember, ...]
    revision: int
    quota_bytes: int
    alarms: Tuple[str, ...]
    workers: int
    workers_up: int
    slots_total: int
    slots_used: int
    jobs: Dict[JobState, int]
    replica: str
    scheduler_leader: str
    workers_down: int = 0
    # Unfinished jobs (array tasks included) against the cap (crms server --max-jobs; 0: no cap).
    unfinished_jobs: int = 0
    max_jobs: int = 0

    @classmethod
    def from_proto(cls, r: admin_pb2.GetClusterStatusResponse) -> "ClusterStatus":
        return cls(
            members=tuple(EtcdMember.from_proto(m) for m in r.members),
            revision=r.revision,
            quota_bytes=r.quota_bytes,
            alarms=tuple(r.alarms),
            workers=r.workers,
            workers_up=r.workers_up,
            slots_total=r.slots_total,
            slots_used=r.slots_used,
            jobs={JobState._from_proto(c.state): c.count for c in r.jobs},
            replica=r.replica,
            scheduler_leader=r.scheduler_leader,
            workers_down=r.workers_down,
            unfinished_jobs=r.unfinished_jobs,
            max_jobs=r.max_jobs,
        )


@dataclass(frozen=True)
class UserShare:
    """One user's standing in a queue (crms.v1.UserShare)."""

    user: str
    running: int = 0
    pending: int = 0
    share: float = 0.0
    target_share: float = 0.0
    decayed_usage: float = 0.0

    @classmethod
    def from_proto(cls, u: queue_pb2.UserShare) -> "UserShare":
        return _same_names(cls, u)


@dataclass(frozen=True)
class QueueStatus:
    """A queue's current load and share, computed when read (crms.v1.QueueStatus)."""

    running: int = 0
    pending: int = 0
    cpus: int = 0
    gpus: int = 0
    share: float = 0.0
    target_share: float = 0.0
    users: Tuple[UserShare, ...] = ()

    @classmethod
    def from_proto(cls, s: queue_pb2.QueueStatus) -> "QueueStatus":
        return _same_names(cls, s, users=tuple(UserShare.from_proto(u) for u in s.users))


@dataclass(frozen=True)
class Queue:
    """A share of the cluster (crms.v1.Queue). Limits of 0 mean none."""

    name: str
    weight: float = 1.0
    max_running: int = 0
    max_cpus: int = 0
    max_gpus: int = 0
    preemptible: bool = False
    #: None for the built-in "default" queue.
    create_time: Optional[datetime] = None
    #: None when the server sent none (e.g. in a create's answer).
    status: Optional[QueueStatus] = None

    @classmethod
    def from_proto(cls, q: queue_pb2.Queue) -> "Queue":
        return _same_names(
            cls,
            q,
            create_time=_time(q, "create_time"),
            status=QueueStatus.from_proto(q.status) if q.HasField("status") else None,
        )

    def to_proto(self) -> queue_pb2.Queue:
        """The settings (name, weight, limits, preemptible); create_time and status are the server's."""
        settings = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        del settings["create_time"], settings["status"]
        return queue_pb2.Queue(**settings)


@dataclass(frozen=True)
class UsageRow:
    """What one user's, queue's or worker's finished jobs used (crms.v1.UsageRow)."""

    key: str
    jobs: int = 0
    succeeded: int = 0
    failed: int = 0
    killed: int = 0
    cpu_hours: float = 0.0
    gpu_hours: float = 0.0
    wall_hours: float = 0.0
    max_rss_bytes: int = 0

    @classmethod
    def from_proto(cls, r: job_pb2.UsageRow) -> "UsageRow":
        return _same_names(cls, r)


@dataclass(frozen=True)
class UsageReport:
    """The answer of :meth:`crms.Client.get_usage`: one row per group, largest CPU hours first."""

    rows: Tuple[UsageRow, ...]
    #: The lower bound of end times the server used.
    since: Optional[datetime] = None

    @classmethod
    def from_proto(cls, r: job_pb2.GetUsageResponse) -> "UsageReport":
        return cls(rows=tuple(UsageRow.from_proto(x) for x in r.rows), since=_time(r, "since"))

    def __iter__(self):
        return iter(self.rows)

    def __len__(self) -> int:
        return len(self.rows)

    def get(self, key: str) -> Optional[UsageRow]:
        """The row of one user, queue or worker, or None."""
        return next((r for r in self.rows if r.key == key), None)
