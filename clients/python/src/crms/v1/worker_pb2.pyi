import datetime

from crms.v1 import job_pb2 as _job_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class WorkerState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    WORKER_STATE_UNSPECIFIED: _ClassVar[WorkerState]
    WORKER_STATE_UP: _ClassVar[WorkerState]
    WORKER_STATE_DRAINING: _ClassVar[WorkerState]
    WORKER_STATE_DISCONNECTED: _ClassVar[WorkerState]
    WORKER_STATE_DOWN: _ClassVar[WorkerState]
WORKER_STATE_UNSPECIFIED: WorkerState
WORKER_STATE_UP: WorkerState
WORKER_STATE_DRAINING: WorkerState
WORKER_STATE_DISCONNECTED: WorkerState
WORKER_STATE_DOWN: WorkerState

class Worker(_message.Message):
    __slots__ = ("name", "slots", "labels", "hostname", "version", "state", "used_slots", "running_jobs", "attach_time", "last_heartbeat", "disconnect_time", "replica", "stop_requested", "down_time", "down_reason", "last_jobs", "incarnation", "stop_keep_runs", "capacity", "allocated")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    SLOTS_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    HOSTNAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    USED_SLOTS_FIELD_NUMBER: _ClassVar[int]
    RUNNING_JOBS_FIELD_NUMBER: _ClassVar[int]
    ATTACH_TIME_FIELD_NUMBER: _ClassVar[int]
    LAST_HEARTBEAT_FIELD_NUMBER: _ClassVar[int]
    DISCONNECT_TIME_FIELD_NUMBER: _ClassVar[int]
    REPLICA_FIELD_NUMBER: _ClassVar[int]
    STOP_REQUESTED_FIELD_NUMBER: _ClassVar[int]
    DOWN_TIME_FIELD_NUMBER: _ClassVar[int]
    DOWN_REASON_FIELD_NUMBER: _ClassVar[int]
    LAST_JOBS_FIELD_NUMBER: _ClassVar[int]
    INCARNATION_FIELD_NUMBER: _ClassVar[int]
    STOP_KEEP_RUNS_FIELD_NUMBER: _ClassVar[int]
    CAPACITY_FIELD_NUMBER: _ClassVar[int]
    ALLOCATED_FIELD_NUMBER: _ClassVar[int]
    name: str
    slots: int
    labels: _containers.ScalarMap[str, str]
    hostname: str
    version: str
    state: WorkerState
    used_slots: int
    running_jobs: _containers.RepeatedScalarFieldContainer[str]
    attach_time: _timestamp_pb2.Timestamp
    last_heartbeat: _timestamp_pb2.Timestamp
    disconnect_time: _timestamp_pb2.Timestamp
    replica: str
    stop_requested: bool
    down_time: _timestamp_pb2.Timestamp
    down_reason: str
    last_jobs: _containers.RepeatedScalarFieldContainer[str]
    incarnation: str
    stop_keep_runs: bool
    capacity: _job_pb2.Resources
    allocated: _job_pb2.Resources
    def __init__(self, name: _Optional[str] = ..., slots: _Optional[int] = ..., labels: _Optional[_Mapping[str, str]] = ..., hostname: _Optional[str] = ..., version: _Optional[str] = ..., state: _Optional[_Union[WorkerState, str]] = ..., used_slots: _Optional[int] = ..., running_jobs: _Optional[_Iterable[str]] = ..., attach_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., last_heartbeat: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., disconnect_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., replica: _Optional[str] = ..., stop_requested: _Optional[bool] = ..., down_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., down_reason: _Optional[str] = ..., last_jobs: _Optional[_Iterable[str]] = ..., incarnation: _Optional[str] = ..., stop_keep_runs: _Optional[bool] = ..., capacity: _Optional[_Union[_job_pb2.Resources, _Mapping]] = ..., allocated: _Optional[_Union[_job_pb2.Resources, _Mapping]] = ...) -> None: ...

class RunningJob(_message.Message):
    __slots__ = ("job_id", "attempt", "pid", "adopted")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    PID_FIELD_NUMBER: _ClassVar[int]
    ADOPTED_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    attempt: int
    pid: int
    adopted: bool
    def __init__(self, job_id: _Optional[str] = ..., attempt: _Optional[int] = ..., pid: _Optional[int] = ..., adopted: _Optional[bool] = ...) -> None: ...

class Hello(_message.Message):
    __slots__ = ("name", "slots", "labels", "hostname", "version", "running", "finished", "incarnation", "heartbeat_acks", "resources")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    SLOTS_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    HOSTNAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    RUNNING_FIELD_NUMBER: _ClassVar[int]
    FINISHED_FIELD_NUMBER: _ClassVar[int]
    INCARNATION_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_ACKS_FIELD_NUMBER: _ClassVar[int]
    RESOURCES_FIELD_NUMBER: _ClassVar[int]
    name: str
    slots: int
    labels: _containers.ScalarMap[str, str]
    hostname: str
    version: str
    running: _containers.RepeatedCompositeFieldContainer[RunningJob]
    finished: _containers.RepeatedCompositeFieldContainer[JobFinished]
    incarnation: str
    heartbeat_acks: bool
    resources: _job_pb2.Resources
    def __init__(self, name: _Optional[str] = ..., slots: _Optional[int] = ..., labels: _Optional[_Mapping[str, str]] = ..., hostname: _Optional[str] = ..., version: _Optional[str] = ..., running: _Optional[_Iterable[_Union[RunningJob, _Mapping]]] = ..., finished: _Optional[_Iterable[_Union[JobFinished, _Mapping]]] = ..., incarnation: _Optional[str] = ..., heartbeat_acks: _Optional[bool] = ..., resources: _Optional[_Union[_job_pb2.Resources, _Mapping]] = ...) -> None: ...

class Heartbeat(_message.Message):
    __slots__ = ("running",)
    RUNNING_FIELD_NUMBER: _ClassVar[int]
    running: int
    def __init__(self, running: _Optional[int] = ...) -> None: ...

class JobStarted(_message.Message):
    __slots__ = ("job_id", "attempt", "pid")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    PID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    attempt: int
    pid: int
    def __init__(self, job_id: _Optional[str] = ..., attempt: _Optional[int] = ..., pid: _Optional[int] = ...) -> None: ...

class JobFinished(_message.Message):
    __slots__ = ("job_id", "attempt", "exit_code", "signal", "error", "stdout_tail", "stderr_tail", "timed_out", "killed", "pid", "fenced", "usage")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    EXIT_CODE_FIELD_NUMBER: _ClassVar[int]
    SIGNAL_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    STDOUT_TAIL_FIELD_NUMBER: _ClassVar[int]
    STDERR_TAIL_FIELD_NUMBER: _ClassVar[int]
    TIMED_OUT_FIELD_NUMBER: _ClassVar[int]
    KILLED_FIELD_NUMBER: _ClassVar[int]
    PID_FIELD_NUMBER: _ClassVar[int]
    FENCED_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    attempt: int
    exit_code: int
    signal: str
    error: str
    stdout_tail: bytes
    stderr_tail: bytes
    timed_out: bool
    killed: bool
    pid: int
    fenced: bool
    usage: _job_pb2.Usage
    def __init__(self, job_id: _Optional[str] = ..., attempt: _Optional[int] = ..., exit_code: _Optional[int] = ..., signal: _Optional[str] = ..., error: _Optional[str] = ..., stdout_tail: _Optional[bytes] = ..., stderr_tail: _Optional[bytes] = ..., timed_out: _Optional[bool] = ..., killed: _Optional[bool] = ..., pid: _Optional[int] = ..., fenced: _Optional[bool] = ..., usage: _Optional[_Union[_job_pb2.Usage, _Mapping]] = ...) -> None: ...

class OutputData(_message.Message):
    __slots__ = ("request_id", "stream", "data", "offset", "eof", "error")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    STREAM_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    EOF_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    request_id: int
    stream: _job_pb2.OutputStream
    data: bytes
    offset: int
    eof: bool
    error: str
    def __init__(self, request_id: _Optional[int] = ..., stream: _Optional[_Union[_job_pb2.OutputStream, str]] = ..., data: _Optional[bytes] = ..., offset: _Optional[int] = ..., eof: _Optional[bool] = ..., error: _Optional[str] = ...) -> None: ...

class AttachRequest(_message.Message):
    __slots__ = ("hello", "heartbeat", "started", "finished", "output")
    HELLO_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_FIELD_NUMBER: _ClassVar[int]
    STARTED_FIELD_NUMBER: _ClassVar[int]
    FINISHED_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FIELD_NUMBER: _ClassVar[int]
    hello: Hello
    heartbeat: Heartbeat
    started: JobStarted
    finished: JobFinished
    output: OutputData
    def __init__(self, hello: _Optional[_Union[Hello, _Mapping]] = ..., heartbeat: _Optional[_Union[Heartbeat, _Mapping]] = ..., started: _Optional[_Union[JobStarted, _Mapping]] = ..., finished: _Optional[_Union[JobFinished, _Mapping]] = ..., output: _Optional[_Union[OutputData, _Mapping]] = ...) -> None: ...

class Welcome(_message.Message):
    __slots__ = ("replica", "heartbeat_seconds", "draining", "grace_seconds")
    REPLICA_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    DRAINING_FIELD_NUMBER: _ClassVar[int]
    GRACE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    replica: str
    heartbeat_seconds: int
    draining: bool
    grace_seconds: int
    def __init__(self, replica: _Optional[str] = ..., heartbeat_seconds: _Optional[int] = ..., draining: _Optional[bool] = ..., grace_seconds: _Optional[int] = ...) -> None: ...

class HeartbeatAck(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Assign(_message.Message):
    __slots__ = ("job_id", "attempt", "spec", "gpu_indices")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    GPU_INDICES_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    attempt: int
    spec: _job_pb2.JobSpec
    gpu_indices: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, job_id: _Optional[str] = ..., attempt: _Optional[int] = ..., spec: _Optional[_Union[_job_pb2.JobSpec, _Mapping]] = ..., gpu_indices: _Optional[_Iterable[int]] = ...) -> None: ...

class Kill(_message.Message):
    __slots__ = ("job_id", "attempt", "grace_seconds", "reason")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    GRACE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    attempt: int
    grace_seconds: int
    reason: str
    def __init__(self, job_id: _Optional[str] = ..., attempt: _Optional[int] = ..., grace_seconds: _Optional[int] = ..., reason: _Optional[str] = ...) -> None: ...

class Ack(_message.Message):
    __slots__ = ("job_id", "attempt")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    attempt: int
    def __init__(self, job_id: _Optional[str] = ..., attempt: _Optional[int] = ...) -> None: ...

class Drain(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Resume(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Shutdown(_message.Message):
    __slots__ = ("reason", "keep_runs")
    REASON_FIELD_NUMBER: _ClassVar[int]
    KEEP_RUNS_FIELD_NUMBER: _ClassVar[int]
    reason: str
    keep_runs: bool
    def __init__(self, reason: _Optional[str] = ..., keep_runs: _Optional[bool] = ...) -> None: ...

class OutputRequest(_message.Message):
    __slots__ = ("request_id", "job_id", "attempt", "follow")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    FOLLOW_FIELD_NUMBER: _ClassVar[int]
    request_id: int
    job_id: str
    attempt: int
    follow: bool
    def __init__(self, request_id: _Optional[int] = ..., job_id: _Optional[str] = ..., attempt: _Optional[int] = ..., follow: _Optional[bool] = ...) -> None: ...

class OutputCancel(_message.Message):
    __slots__ = ("request_id",)
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    request_id: int
    def __init__(self, request_id: _Optional[int] = ...) -> None: ...

class AttachResponse(_message.Message):
    __slots__ = ("welcome", "assign", "kill", "ack", "drain", "shutdown", "output_request", "output_cancel", "resume", "heartbeat_ack")
    WELCOME_FIELD_NUMBER: _ClassVar[int]
    ASSIGN_FIELD_NUMBER: _ClassVar[int]
    KILL_FIELD_NUMBER: _ClassVar[int]
    ACK_FIELD_NUMBER: _ClassVar[int]
    DRAIN_FIELD_NUMBER: _ClassVar[int]
    SHUTDOWN_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_REQUEST_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_CANCEL_FIELD_NUMBER: _ClassVar[int]
    RESUME_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_ACK_FIELD_NUMBER: _ClassVar[int]
    welcome: Welcome
    assign: Assign
    kill: Kill
    ack: Ack
    drain: Drain
    shutdown: Shutdown
    output_request: OutputRequest
    output_cancel: OutputCancel
    resume: Resume
    heartbeat_ack: HeartbeatAck
    def __init__(self, welcome: _Optional[_Union[Welcome, _Mapping]] = ..., assign: _Optional[_Union[Assign, _Mapping]] = ..., kill: _Optional[_Union[Kill, _Mapping]] = ..., ack: _Optional[_Union[Ack, _Mapping]] = ..., drain: _Optional[_Union[Drain, _Mapping]] = ..., shutdown: _Optional[_Union[Shutdown, _Mapping]] = ..., output_request: _Optional[_Union[OutputRequest, _Mapping]] = ..., output_cancel: _Optional[_Union[OutputCancel, _Mapping]] = ..., resume: _Optional[_Union[Resume, _Mapping]] = ..., heartbeat_ack: _Optional[_Union[HeartbeatAck, _Mapping]] = ...) -> None: ...

class ListWorkersRequest(_message.Message):
    __slots__ = ("page_size", "page_token")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListWorkersResponse(_message.Message):
    __slots__ = ("workers", "next_page_token")
    WORKERS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    workers: _containers.RepeatedCompositeFieldContainer[Worker]
    next_page_token: str
    def __init__(self, workers: _Optional[_Iterable[_Union[Worker, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class GetWorkerRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class GetWorkerResponse(_message.Message):
    __slots__ = ("worker",)
    WORKER_FIELD_NUMBER: _ClassVar[int]
    worker: Worker
    def __init__(self, worker: _Optional[_Union[Worker, _Mapping]] = ...) -> None: ...

class WatchWorkersRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class WatchWorkersResponse(_message.Message):
    __slots__ = ("type", "worker", "revision")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    WORKER_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    type: _job_pb2.WatchEventType
    worker: Worker
    revision: int
    def __init__(self, type: _Optional[_Union[_job_pb2.WatchEventType, str]] = ..., worker: _Optional[_Union[Worker, _Mapping]] = ..., revision: _Optional[int] = ...) -> None: ...

class DrainWorkerRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class DrainWorkerResponse(_message.Message):
    __slots__ = ("worker",)
    WORKER_FIELD_NUMBER: _ClassVar[int]
    worker: Worker
    def __init__(self, worker: _Optional[_Union[Worker, _Mapping]] = ...) -> None: ...

class StopWorkerRequest(_message.Message):
    __slots__ = ("name", "keep_runs")
    NAME_FIELD_NUMBER: _ClassVar[int]
    KEEP_RUNS_FIELD_NUMBER: _ClassVar[int]
    name: str
    keep_runs: bool
    def __init__(self, name: _Optional[str] = ..., keep_runs: _Optional[bool] = ...) -> None: ...

class StopWorkerResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ResumeWorkerRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class ResumeWorkerResponse(_message.Message):
    __slots__ = ("worker",)
    WORKER_FIELD_NUMBER: _ClassVar[int]
    worker: Worker
    def __init__(self, worker: _Optional[_Union[Worker, _Mapping]] = ...) -> None: ...

class ForgetWorkerRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class ForgetWorkerResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class UploadOutputRequest(_message.Message):
    __slots__ = ("job_id", "attempt", "stream", "offset", "data", "last", "cut_bytes")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    STREAM_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    LAST_FIELD_NUMBER: _ClassVar[int]
    CUT_BYTES_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    attempt: int
    stream: _job_pb2.OutputStream
    offset: int
    data: bytes
    last: bool
    cut_bytes: int
    def __init__(self, job_id: _Optional[str] = ..., attempt: _Optional[int] = ..., stream: _Optional[_Union[_job_pb2.OutputStream, str]] = ..., offset: _Optional[int] = ..., data: _Optional[bytes] = ..., last: _Optional[bool] = ..., cut_bytes: _Optional[int] = ...) -> None: ...

class UploadOutputResponse(_message.Message):
    __slots__ = ("received",)
    RECEIVED_FIELD_NUMBER: _ClassVar[int]
    received: int
    def __init__(self, received: _Optional[int] = ...) -> None: ...
