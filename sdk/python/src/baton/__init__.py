"""Baton's Python SDK: `Workflow` defines a workflow in Python, `Worker` runs step handlers
(docs/worker-protocol.md) and registers its workflows, `Client` and `AsyncClient` call the
coordinator's gRPC API."""

from baton._rpc import Tls
from baton.client import RUN_STATUSES, AsyncClient, Client, Run, RunEvent, RunPage, StepRun, Submitted
from baton.context import Context
from baton.logs import LogLine, StepLogs
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
    RunFailed,
    StepError,
    Suspend,
    Unauthenticated,
    Unavailable,
)
from baton.worker import Worker, WorkerStopped
from baton.workflow import Concurrency, RateLimit, RetryPolicy, Step, Workflow

__all__ = [
    "RUN_STATUSES",
    "AlreadyExists",
    "AsyncClient",
    "BatonError",
    "Concurrency",
    "Client",
    "Context",
    "FailedPrecondition",
    "InputError",
    "InvalidArgument",
    "LogLine",
    "NonRetryableError",
    "NotFound",
    "PermissionDenied",
    "RateLimit",
    "RetryPolicy",
    "RetryableError",
    "Run",
    "RunEvent",
    "RunFailed",
    "RunPage",
    "Step",
    "StepError",
    "StepLogs",
    "StepRun",
    "Submitted",
    "Suspend",
    "Tls",
    "Unauthenticated",
    "Unavailable",
    "Worker",
    "WorkerStopped",
    "Workflow",
]
