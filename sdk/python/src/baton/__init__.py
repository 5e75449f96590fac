"""Baton's Python SDK: `Worker` runs step handlers (docs/worker-protocol.md), `Client` and
`AsyncClient` call the coordinator's gRPC API."""

from baton._rpc import Tls
from baton.client import AsyncClient, Client, Run, RunEvent, StepRun, Submitted
from baton.context import Context
from baton.errors import (
    AlreadyExists,
    BatonError,
    FailedPrecondition,
    InputError,
    InvalidArgument,
    NonRetryableError,
    NotFound,
    PermissionDenied,
    RetryableError,
    StepError,
    Suspend,
    Unauthenticated,
    Unavailable,
)
from baton.worker import Worker, WorkerStopped

__all__ = [
    "AlreadyExists",
    "AsyncClient",
    "BatonError",
    "Client",
    "Context",
    "FailedPrecondition",
    "InputError",
    "InvalidArgument",
    "NonRetryableError",
    "NotFound",
    "PermissionDenied",
    "RetryableError",
    "Run",
    "RunEvent",
    "StepError",
    "StepRun",
    "Submitted",
    "Suspend",
    "Tls",
    "Unauthenticated",
    "Unavailable",
    "Worker",
    "WorkerStopped",
]
