"""Errors: what a handler raises to fail or suspend its step, and what the clients raise when the
coordinator refuses a call (with the gRPC status code and the field path it names)."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import grpc

if TYPE_CHECKING:
    from baton.client import Run

__all__ = [
    "StepError",
    "RetryableError",
    "NonRetryableError",
    "InputError",
    "Suspend",
    "BatonError",
    "InvalidArgument",
    "NotFound",
    "AlreadyExists",
    "FailedPrecondition",
    "PermissionDenied",
    "Unauthenticated",
    "Unavailable",
    "RunFailed",
    "error_from_rpc",
]


class StepError(Exception):
    """A handler's failure, reported to the coordinator as a `StepFailure`: `message` (shown in
    `baton run get`), `type` (matched against the step's `retry.non_retryable_errors`) and
    `retryable` (whether another attempt may succeed)."""

    retryable: bool = True

    def __init__(self, message: str, *, type: str = "") -> None:  # noqa: A002 (the issue's name)
        super().__init__(message)
        self.message = message
        self.type = type

    def __str__(self) -> str:
        return f"{self.type}: {self.message}" if self.type else self.message


class RetryableError(StepError):
    """A failure another attempt may not have: the step is tried again per its retry policy
    (unless its `type` is listed in `non_retryable_errors`)."""

    retryable = True


class NonRetryableError(StepError):
    """A failure every attempt would have: the step fails at once."""

    retryable = False


class InputError(NonRetryableError):
    """The step's input (or a parent's output) does not validate as the handler's input type;
    type `InvalidInput`, not retryable."""

    def __init__(self, message: str) -> None:
        super().__init__(message, type="InvalidInput")


class Suspend(Exception):
    """Not a failure: raised by a handler, it suspends the step until an event named `event` with
    key `key` is published (`Client.publish_event`), holding no worker meanwhile. The handler then
    runs again as a new attempt (not counted by the retry policy) with `ctx.resume_data` holding
    the event's payload. With `timeout` (seconds or a timedelta), the step fails with a `Timeout`
    error when no event came in time; `None` waits for ever."""

    def __init__(self, event: str, key: str, timeout: float | timedelta | None = None) -> None:
        super().__init__(f"suspended until event {event!r} with key {key!r}")
        if not event:
            raise ValueError("Suspend: event must not be empty")
        seconds = timeout.total_seconds() if isinstance(timeout, timedelta) else timeout
        if seconds is not None and not (0 < seconds <= 3650 * 86400):
            raise ValueError(f"Suspend: timeout must be from 1 ms to 10 years, not {seconds!r} s")
        self.event = event
        self.key = key
        self.timeout: float | None = seconds

    @property
    def timeout_ms(self) -> int:
        """The timeout in milliseconds, 0 for none (as `Suspend.timeout_ms` in the protocol)."""
        return 0 if self.timeout is None else max(1, round(self.timeout * 1000))


# A field path as the coordinator writes it at the start of an INVALID_ARGUMENT message:
# `steps[2].retry.max_interval`, `input_json`, `suspend.timeout_ms`.
_FIELD = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(?:\[[0-9]+\])*(?:\.[A-Za-z_][A-Za-z0-9_]*(?:\[[0-9]+\])*)*$")


def field_paths(message: str) -> list[str]:
    """The field paths an INVALID_ARGUMENT message names: each `; `-separated problem that starts
    with `<path>: `."""
    out: list[str] = []
    for problem in message.split("; "):
        head, sep, _ = problem.partition(": ")
        if sep and _FIELD.match(head) and head not in out:
            out.append(head)
    return out


class BatonError(Exception):
    """A call the coordinator refused or that could not reach it. `code` is the gRPC status code,
    `details` the coordinator's message (at most 2 KiB), `field` the first field path it names
    (INVALID_ARGUMENT: `steps[2].retry.max_interval`, `input_json`; else None) and `fields` all of
    them. `from_coordinator` tells an answer of the coordinator itself (e.g. UNAVAILABLE because its
    Redis is away) from a coordinator that could not be reached."""

    def __init__(self, code: grpc.StatusCode, details: str, *, from_coordinator: bool = False) -> None:
        super().__init__(f"{code.name}: {details}")
        self.code = code
        self.details = details
        self.fields = field_paths(details) if code == grpc.StatusCode.INVALID_ARGUMENT else []
        self.field: str | None = self.fields[0] if self.fields else None
        self.from_coordinator = from_coordinator


class InvalidArgument(BatonError):
    """INVALID_ARGUMENT: the request is wrong; `field` names where."""


class NotFound(BatonError):
    """NOT_FOUND: no such workflow, version, run, task or schedule."""


class AlreadyExists(BatonError):
    """ALREADY_EXISTS: e.g. the same workflow name and version with another content."""


class FailedPrecondition(BatonError):
    """FAILED_PRECONDITION: the operation does not fit the state (cancelling a finished run)."""


class PermissionDenied(BatonError):
    """PERMISSION_DENIED: the token's role may not do this."""


class Unauthenticated(BatonError):
    """UNAUTHENTICATED: no token, or one the coordinator does not know."""


class Unavailable(BatonError):
    """UNAVAILABLE: the coordinator cannot be reached, or its Redis or RabbitMQ is away; retry."""


class RunFailed(Exception):
    """A run waited for with a `result_type` (`Client.run`, `Client.wait`) did not give one: it
    ended `failed`, `cancelled` or `timed_out` (`run.error` says why), or its output does not
    validate as the type asked for. `run` is the finished `Run`, with its steps."""

    def __init__(self, run: Run, why: str | None = None) -> None:
        reason = why or (f"{run.status}: {run.error}" if run.error else run.status)
        super().__init__(f"run {run.id} of {run.workflow!r}: {reason}")
        self.run = run


_BY_CODE: dict[grpc.StatusCode, type[BatonError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgument,
    grpc.StatusCode.NOT_FOUND: NotFound,
    grpc.StatusCode.ALREADY_EXISTS: AlreadyExists,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPrecondition,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDenied,
    grpc.StatusCode.UNAUTHENTICATED: Unauthenticated,
    grpc.StatusCode.UNAVAILABLE: Unavailable,
}


def has_source(metadata: Any) -> bool:
    """Whether call metadata carries `baton-source` (an error the coordinator itself answered)."""
    for item in metadata or ():
        key = getattr(item, "key", None)
        if key is None and isinstance(item, tuple) and item:
            key = item[0]
        if key == "baton-source":
            return True
    return False


def error_from_rpc(e: grpc.aio.AioRpcError | grpc.RpcError) -> BatonError:
    """The BatonError subclass for a failed call (BatonError itself for codes without one)."""
    code = e.code() if callable(getattr(e, "code", None)) else grpc.StatusCode.UNKNOWN
    details = e.details() if callable(getattr(e, "details", None)) else str(e)
    trailing = e.trailing_metadata() if callable(getattr(e, "trailing_metadata", None)) else None
    source = has_source(trailing)
    cls = _BY_CODE.get(code, BatonError)
    return cls(code, details or "", from_coordinator=source)
