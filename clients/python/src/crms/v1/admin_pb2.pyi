import datetime

from crms.v1 import job_pb2 as _job_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class EtcdMember(_message.Message):
    __slots__ = ("endpoint", "id", "name", "version", "db_size", "db_size_in_use", "leader", "raft_index", "alarms", "error")
    ENDPOINT_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    DB_SIZE_FIELD_NUMBER: _ClassVar[int]
    DB_SIZE_IN_USE_FIELD_NUMBER: _ClassVar[int]
    LEADER_FIELD_NUMBER: _ClassVar[int]
    RAFT_INDEX_FIELD_NUMBER: _ClassVar[int]
    ALARMS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    endpoint: str
    id: str
    name: str
    version: str
    db_size: int
    db_size_in_use: int
    leader: bool
    raft_index: int
    alarms: _containers.RepeatedScalarFieldContainer[str]
    error: str
    def __init__(self, endpoint: _Optional[str] = ..., id: _Optional[str] = ..., name: _Optional[str] = ..., version: _Optional[str] = ..., db_size: _Optional[int] = ..., db_size_in_use: _Optional[int] = ..., leader: _Optional[bool] = ..., raft_index: _Optional[int] = ..., alarms: _Optional[_Iterable[str]] = ..., error: _Optional[str] = ...) -> None: ...

class JobCount(_message.Message):
    __slots__ = ("state", "count")
    STATE_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    state: _job_pb2.JobState
    count: int
    def __init__(self, state: _Optional[_Union[_job_pb2.JobState, str]] = ..., count: _Optional[int] = ...) -> None: ...

class GetClusterStatusRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetClusterStatusResponse(_message.Message):
    __slots__ = ("members", "revision", "quota_bytes", "alarms", "workers", "workers_up", "slots_total", "slots_used", "jobs", "replica", "scheduler_leader", "workers_down", "etcd_reachable", "last_etcd_outage", "history", "retention_waiting", "unfinished_jobs", "max_jobs")
    MEMBERS_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    QUOTA_BYTES_FIELD_NUMBER: _ClassVar[int]
    ALARMS_FIELD_NUMBER: _ClassVar[int]
    WORKERS_FIELD_NUMBER: _ClassVar[int]
    WORKERS_UP_FIELD_NUMBER: _ClassVar[int]
    SLOTS_TOTAL_FIELD_NUMBER: _ClassVar[int]
    SLOTS_USED_FIELD_NUMBER: _ClassVar[int]
    JOBS_FIELD_NUMBER: _ClassVar[int]
    REPLICA_FIELD_NUMBER: _ClassVar[int]
    SCHEDULER_LEADER_FIELD_NUMBER: _ClassVar[int]
    WORKERS_DOWN_FIELD_NUMBER: _ClassVar[int]
    ETCD_REACHABLE_FIELD_NUMBER: _ClassVar[int]
    LAST_ETCD_OUTAGE_FIELD_NUMBER: _ClassVar[int]
    HISTORY_FIELD_NUMBER: _ClassVar[int]
    RETENTION_WAITING_FIELD_NUMBER: _ClassVar[int]
    UNFINISHED_JOBS_FIELD_NUMBER: _ClassVar[int]
    MAX_JOBS_FIELD_NUMBER: _ClassVar[int]
    members: _containers.RepeatedCompositeFieldContainer[EtcdMember]
    revision: int
    quota_bytes: int
    alarms: _containers.RepeatedScalarFieldContainer[str]
    workers: int
    workers_up: int
    slots_total: int
    slots_used: int
    jobs: _containers.RepeatedCompositeFieldContainer[JobCount]
    replica: str
    scheduler_leader: str
    workers_down: int
    etcd_reachable: bool
    last_etcd_outage: EtcdOutage
    history: HistoryStatus
    retention_waiting: str
    unfinished_jobs: int
    max_jobs: int
    def __init__(self, members: _Optional[_Iterable[_Union[EtcdMember, _Mapping]]] = ..., revision: _Optional[int] = ..., quota_bytes: _Optional[int] = ..., alarms: _Optional[_Iterable[str]] = ..., workers: _Optional[int] = ..., workers_up: _Optional[int] = ..., slots_total: _Optional[int] = ..., slots_used: _Optional[int] = ..., jobs: _Optional[_Iterable[_Union[JobCount, _Mapping]]] = ..., replica: _Optional[str] = ..., scheduler_leader: _Optional[str] = ..., workers_down: _Optional[int] = ..., etcd_reachable: _Optional[bool] = ..., last_etcd_outage: _Optional[_Union[EtcdOutage, _Mapping]] = ..., history: _Optional[_Union[HistoryStatus, _Mapping]] = ..., retention_waiting: _Optional[str] = ..., unfinished_jobs: _Optional[int] = ..., max_jobs: _Optional[int] = ...) -> None: ...

class EtcdOutage(_message.Message):
    __slots__ = ("lost_time", "restored_time", "seconds", "error", "lease_renewed", "workers_reregistered", "reregistered_workers")
    LOST_TIME_FIELD_NUMBER: _ClassVar[int]
    RESTORED_TIME_FIELD_NUMBER: _ClassVar[int]
    SECONDS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    LEASE_RENEWED_FIELD_NUMBER: _ClassVar[int]
    WORKERS_REREGISTERED_FIELD_NUMBER: _ClassVar[int]
    REREGISTERED_WORKERS_FIELD_NUMBER: _ClassVar[int]
    lost_time: _timestamp_pb2.Timestamp
    restored_time: _timestamp_pb2.Timestamp
    seconds: float
    error: str
    lease_renewed: bool
    workers_reregistered: int
    reregistered_workers: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, lost_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., restored_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., seconds: _Optional[float] = ..., error: _Optional[str] = ..., lease_renewed: _Optional[bool] = ..., workers_reregistered: _Optional[int] = ..., reregistered_workers: _Optional[_Iterable[str]] = ...) -> None: ...

class HistoryStatus(_message.Message):
    __slots__ = ("kind", "location", "up", "error", "pending_jobs", "lag_seconds", "schema_version")
    KIND_FIELD_NUMBER: _ClassVar[int]
    LOCATION_FIELD_NUMBER: _ClassVar[int]
    UP_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    PENDING_JOBS_FIELD_NUMBER: _ClassVar[int]
    LAG_SECONDS_FIELD_NUMBER: _ClassVar[int]
    SCHEMA_VERSION_FIELD_NUMBER: _ClassVar[int]
    kind: str
    location: str
    up: bool
    error: str
    pending_jobs: int
    lag_seconds: float
    schema_version: int
    def __init__(self, kind: _Optional[str] = ..., location: _Optional[str] = ..., up: _Optional[bool] = ..., error: _Optional[str] = ..., pending_jobs: _Optional[int] = ..., lag_seconds: _Optional[float] = ..., schema_version: _Optional[int] = ...) -> None: ...

class CompactRequest(_message.Message):
    __slots__ = ("revision",)
    REVISION_FIELD_NUMBER: _ClassVar[int]
    revision: int
    def __init__(self, revision: _Optional[int] = ...) -> None: ...

class CompactResponse(_message.Message):
    __slots__ = ("revision",)
    REVISION_FIELD_NUMBER: _ClassVar[int]
    revision: int
    def __init__(self, revision: _Optional[int] = ...) -> None: ...

class DefragmentRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class DefragmentResponse(_message.Message):
    __slots__ = ("before", "after")
    BEFORE_FIELD_NUMBER: _ClassVar[int]
    AFTER_FIELD_NUMBER: _ClassVar[int]
    before: _containers.RepeatedCompositeFieldContainer[EtcdMember]
    after: _containers.RepeatedCompositeFieldContainer[EtcdMember]
    def __init__(self, before: _Optional[_Iterable[_Union[EtcdMember, _Mapping]]] = ..., after: _Optional[_Iterable[_Union[EtcdMember, _Mapping]]] = ...) -> None: ...

class DisarmAlarmsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class DisarmAlarmsResponse(_message.Message):
    __slots__ = ("disarmed",)
    DISARMED_FIELD_NUMBER: _ClassVar[int]
    disarmed: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, disarmed: _Optional[_Iterable[str]] = ...) -> None: ...

class RecoverRequest(_message.Message):
    __slots__ = ("keep_finished",)
    KEEP_FINISHED_FIELD_NUMBER: _ClassVar[int]
    keep_finished: int
    def __init__(self, keep_finished: _Optional[int] = ...) -> None: ...

class RecoverResponse(_message.Message):
    __slots__ = ("deleted_jobs", "compacted_revision", "members", "disarmed", "writable")
    DELETED_JOBS_FIELD_NUMBER: _ClassVar[int]
    COMPACTED_REVISION_FIELD_NUMBER: _ClassVar[int]
    MEMBERS_FIELD_NUMBER: _ClassVar[int]
    DISARMED_FIELD_NUMBER: _ClassVar[int]
    WRITABLE_FIELD_NUMBER: _ClassVar[int]
    deleted_jobs: int
    compacted_revision: int
    members: _containers.RepeatedCompositeFieldContainer[EtcdMember]
    disarmed: _containers.RepeatedScalarFieldContainer[str]
    writable: bool
    def __init__(self, deleted_jobs: _Optional[int] = ..., compacted_revision: _Optional[int] = ..., members: _Optional[_Iterable[_Union[EtcdMember, _Mapping]]] = ..., disarmed: _Optional[_Iterable[str]] = ..., writable: _Optional[bool] = ...) -> None: ...

class RunRetentionRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class RunRetentionResponse(_message.Message):
    __slots__ = ("deleted",)
    DELETED_FIELD_NUMBER: _ClassVar[int]
    deleted: int
    def __init__(self, deleted: _Optional[int] = ...) -> None: ...

class ApiToken(_message.Message):
    __slots__ = ("id", "name", "role", "worker", "create_time")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    WORKER_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    role: str
    worker: str
    create_time: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., role: _Optional[str] = ..., worker: _Optional[str] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class CreateTokenRequest(_message.Message):
    __slots__ = ("name", "role", "worker", "bootstrap")
    NAME_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    WORKER_FIELD_NUMBER: _ClassVar[int]
    BOOTSTRAP_FIELD_NUMBER: _ClassVar[int]
    name: str
    role: str
    worker: str
    bootstrap: bool
    def __init__(self, name: _Optional[str] = ..., role: _Optional[str] = ..., worker: _Optional[str] = ..., bootstrap: _Optional[bool] = ...) -> None: ...

class CreateTokenResponse(_message.Message):
    __slots__ = ("token", "secret")
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    SECRET_FIELD_NUMBER: _ClassVar[int]
    token: ApiToken
    secret: str
    def __init__(self, token: _Optional[_Union[ApiToken, _Mapping]] = ..., secret: _Optional[str] = ...) -> None: ...

class ListTokensRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListTokensResponse(_message.Message):
    __slots__ = ("tokens",)
    TOKENS_FIELD_NUMBER: _ClassVar[int]
    tokens: _containers.RepeatedCompositeFieldContainer[ApiToken]
    def __init__(self, tokens: _Optional[_Iterable[_Union[ApiToken, _Mapping]]] = ...) -> None: ...

class RevokeTokenRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class RevokeTokenResponse(_message.Message):
    __slots__ = ("token",)
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    token: ApiToken
    def __init__(self, token: _Optional[_Union[ApiToken, _Mapping]] = ...) -> None: ...
