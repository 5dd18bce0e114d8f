"""crms: Python client of the crms cluster resource manager.

    import crms

    with crms.Client("localhost:7070") as c:
        job = c.wait(c.submit(["echo", "hello"]).id)
        print(job.state, c.read_output(job.id))

The generated protobuf and gRPC modules are ``crms.v1.job_pb2``,
``crms.v1.job_pb2_grpc``, ``crms.v1.worker_pb2``, ``crms.v1.queue_pb2``, ...
for direct use.
"""

from crms.client import DEFAULT_ADDRESS, Client
from crms.errors import (
    AlreadyExists,
    CrmsError,
    DeadlineExceeded,
    FailedPrecondition,
    InvalidArgument,
    JobNotFound,
    NotFound,
    QueueNotFound,
    ResourceExhausted,
    Unavailable,
    Unauthenticated,
    PermissionDenied,
    WaitTimeout,
    WorkerNotFound,
)
from crms.types import (
    ArrayCounts,
    ArraySpec,
    Attempt,
    ClusterStatus,
    Dependency,
    DependencyCondition,
    EtcdMember,
    Job,
    JobSpec,
    JobState,
    OutputChunk,
    OutputStream,
    Queue,
    QueueStatus,
    Resources,
    Usage,
    UsageGrouping,
    UsageReport,
    UsageRow,
    UserShare,
    WatchEvent,
    WatchEventType,
    Worker,
    WorkerState,
    parse_memory,
)

__version__ = "0.1.0"

__all__ = [
    "Client",
    "DEFAULT_ADDRESS",
    "CrmsError",
    "NotFound",
    "JobNotFound",
    "WorkerNotFound",
    "QueueNotFound",
    "InvalidArgument",
    "AlreadyExists",
    "FailedPrecondition",
    "ResourceExhausted",
    "Unavailable",
    "Unauthenticated",
    "PermissionDenied",
    "DeadlineExceeded",
    "WaitTimeout",
    "ArrayCounts",
    "ArraySpec",
    "Attempt",
    "ClusterStatus",
    "Dependency",
    "DependencyCondition",
    "EtcdMember",
    "Job",
    "JobSpec",
    "JobState",
    "OutputChunk",
    "OutputStream",
    "Queue",
    "QueueStatus",
    "Resources",
    "Usage",
    "UsageGrouping",
    "UsageReport",
    "UsageRow",
    "UserShare",
    "WatchEvent",
    "WatchEventType",
    "Worker",
    "WorkerState",
    "parse_memory",
]
