"""Exceptions raised by :class:`crms.Client`.

Every failed call raises a :class:`CrmsError` (or a subclass) that keeps the
gRPC status code (``err.code``, a :class:`grpc.StatusCode`) and the server's
message (``err.details``).
"""

from __future__ import annotations

from typing import Dict, Optional, Type

import grpc

__all__ = [
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
]


class CrmsError(Exception):
    """A crms call failed. ``code`` is the gRPC status code, ``details`` the message."""

    default_code: grpc.StatusCode = grpc.StatusCode.UNKNOWN

    def __init__(self, details: str = "", code: Optional[grpc.StatusCode] = None) -> None:
        self.code: grpc.StatusCode = code if code is not None else self.default_code
        self.details: str = details
        super().__init__(f"{self.code.name}: {details}" if details else self.code.name)

    @property
    def code_name(self) -> str:
        """The status code's name, e.g. ``"NOT_FOUND"``."""
        return self.code.name


class NotFound(CrmsError):
    """NOT_FOUND: the job, worker or queue does not exist."""

    default_code = grpc.StatusCode.NOT_FOUND


class JobNotFound(NotFound):
    """NOT_FOUND from a job call: never submitted, deleted, or expired by retention."""


class WorkerNotFound(NotFound):
    """NOT_FOUND from a worker call: no worker of that name is known."""


class QueueNotFound(NotFound):
    """NOT_FOUND from a queue call, or a submit to a queue that does not exist."""


class InvalidArgument(CrmsError, ValueError):
    """INVALID_ARGUMENT: a malformed request (empty command, bad id, oversized field...)."""

    default_code = grpc.StatusCode.INVALID_ARGUMENT


class AlreadyExists(CrmsError):
    """ALREADY_EXISTS."""

    default_code = grpc.StatusCode.ALREADY_EXISTS


class FailedPrecondition(CrmsError):
    """FAILED_PRECONDITION: the job or worker is not in a state that allows the call."""

    default_code = grpc.StatusCode.FAILED_PRECONDITION


class ResourceExhausted(CrmsError):
    """RESOURCE_EXHAUSTED: e.g. etcd is out of space (NOSPACE) or a limit was hit."""

    default_code = grpc.StatusCode.RESOURCE_EXHAUSTED


class Unavailable(CrmsError, ConnectionError):
    """UNAVAILABLE: the control plane (or etcd behind it) cannot be reached."""

    default_code = grpc.StatusCode.UNAVAILABLE


class DeadlineExceeded(CrmsError, TimeoutError):
    """DEADLINE_EXCEEDED: the call took longer than its deadline."""

    default_code = grpc.StatusCode.DEADLINE_EXCEEDED


class WaitTimeout(DeadlineExceeded):
    """:meth:`crms.Client.wait` gave up before the job ended."""


class Unauthenticated(CrmsError, PermissionError):
    """Missing, unknown or revoked API token (UNAUTHENTICATED)."""


class PermissionDenied(CrmsError, PermissionError):
    """The token's role may not make this call (PERMISSION_DENIED)."""


_BY_CODE: Dict[grpc.StatusCode, Type[CrmsError]] = {
    grpc.StatusCode.UNAUTHENTICATED: Unauthenticated,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDenied,
    grpc.StatusCode.NOT_FOUND: NotFound,
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgument,
    grpc.StatusCode.ALREADY_EXISTS: AlreadyExists,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPrecondition,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ResourceExhausted,
    grpc.StatusCode.UNAVAILABLE: Unavailable,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceeded,
}


def from_rpc_error(err: grpc.RpcError, subject: str = "") -> CrmsError:
    """Maps a gRPC error to the matching :class:`CrmsError` subclass.

    ``subject`` is "job", "worker" or "queue" and picks :class:`JobNotFound`,
    :class:`WorkerNotFound` or :class:`QueueNotFound` for NOT_FOUND.
    """
    code = err.code() if hasattr(err, "code") else grpc.StatusCode.UNKNOWN
    details = err.details() if hasattr(err, "details") else str(err)
    if code is None:
        code = grpc.StatusCode.UNKNOWN
    cls = _BY_CODE.get(code, CrmsError)
    if cls is NotFound:
        cls = {"job": JobNotFound, "worker": WorkerNotFound, "queue": QueueNotFound}.get(subject, NotFound)
    return cls(details or "", code)
