"""What a handler sees of its step: ids, attempt, parent outputs, resume data, the cancellation
event, and the calls it may make while it runs (heartbeat, emit, log)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar, overload

import pydantic
import pydantic_core

from baton.errors import InputError, NonRetryableError
from baton.logs import LogBuffer, level_word

T = TypeVar("T")

# Calls the context makes through its worker: (kind, payload_json or None) -> disposition name.
Caller = Callable[[str, "str | None"], Awaitable[int]]

_ANY: pydantic.TypeAdapter[Any] = pydantic.TypeAdapter(Any)

# AttemptDisposition values (proto/baton/v1/baton.proto). Anything but PROCEED means: do not run
# (or stop running) the handler; a value this SDK does not know counts as STALE.
PROCEED = 1
DUPLICATE = 4


class Context:
    """One attempt of one step, as its handler sees it.

    - `run_id`, `step_id` (a fan-out element's step id without its `#<index>`), `attempt` (1-based),
      `workflow`, `workflow_version`, `worker_id`;
    - `item_index`: for an element of a fan-out (`for_each`) step, its 0-based index, else None;
    - `idempotency_key`: `<run>/<step>` (`<run>/<step>#<index>` for a fan-out element), the same for
      every attempt: key external writes with it so a retried or redelivered step writes once;
    - `attempt_key`: `<run>/<step>/<attempt>`;
    - `input`: the step's input as JSON (what the typed input was validated from);
    - `parent_outputs`: the outputs of the steps this one depends on, by step id;
    - `resumed` and `resume_data`: whether the handler suspended itself and was resumed, and the
      payload of the event that resumed it (None on the first run);
    - `timeout` and `heartbeat_timeout`: seconds (the latter None when the step has none);
    - `cancelled`: an asyncio.Event set when the run is cancelled or this attempt is superseded
      (`is_cancelled` reads it from a sync handler's thread).

    `log` (and `debug`, `info`, `warn`, `error`) write the step's log: lines kept with the attempt
    by the coordinator, shown by the console's step panel, `baton run logs` and
    `Client.step_logs`.
    """

    def __init__(
        self,
        *,
        run_id: str,
        step_id: str,
        attempt: int,
        workflow: str,
        workflow_version: int,
        worker_id: str,
        input: Any,  # noqa: A002
        parent_outputs: Mapping[str, Any],
        resume_data: Any,
        resumed: bool,
        item_index: int | None,
        timeout: float,
        heartbeat_timeout: float | None,
        caller: Caller,
        loop: asyncio.AbstractEventLoop,
        logs: LogBuffer | None = None,
    ) -> None:
        self.run_id = run_id
        self._raw_step_id = step_id
        self.step_id = step_id.split("#", 1)[0]
        self.attempt = attempt
        self.workflow = workflow
        self.workflow_version = workflow_version
        self.worker_id = worker_id
        self.input = input
        self.parent_outputs: dict[str, Any] = dict(parent_outputs)
        self.resume_data = resume_data
        self.resumed = resumed
        self.item_index = item_index
        self.timeout = timeout
        self.heartbeat_timeout = heartbeat_timeout
        self.cancelled = asyncio.Event()
        self._caller = caller
        self._loop = loop
        self._logs = logs
        # The coordinator's answer to StartStep: True for PROCEED. With eager start the handler
        # runs before it comes; heartbeats, events and log lines wait for it.
        self._started: asyncio.Future[bool] = loop.create_future()

    @property
    def idempotency_key(self) -> str:
        return f"{self.run_id}/{self._raw_step_id}"

    @property
    def attempt_key(self) -> str:
        return f"{self.run_id}/{self._raw_step_id}/{self.attempt}"

    @property
    def is_cancelled(self) -> bool:
        return self.cancelled.is_set()

    @overload
    def parent_output(self, step_id: str) -> Any: ...

    @overload
    def parent_output(self, step_id: str, type: type[T]) -> T: ...  # noqa: A002

    def parent_output(self, step_id: str, type: Any = None) -> Any:  # noqa: A002
        """The output of `step_id` (a step this one depends on), validated as `type` when given (a
        pydantic model, a dataclass or any type pydantic validates). Raises InputError (not
        retryable) when there is no such parent or its output does not validate."""
        if step_id not in self.parent_outputs:
            raise InputError(f"step {self.step_id!r} has no parent {step_id!r}")
        value = self.parent_outputs[step_id]
        if type is None:
            return value
        try:
            return pydantic.TypeAdapter(type).validate_python(value)
        except pydantic.ValidationError as e:
            raise InputError(f"output of {step_id!r}: {e}") from None

    def log(self, message: str, level: str = "info") -> None:
        """Adds a line to the step's log: `level` is `debug`, `info` (the default), `warn` or
        `error` (`warning` and `critical` are taken too), the time is now. Returns at once, from an
        async or a sync handler (any thread): lines are buffered and sent by the worker every
        second, at 100 lines, and before the result. A message over 4 KiB is cut (ending
        `… (cut)`); the coordinator keeps the last 1,000 lines and 256 KiB of an attempt.
        ValueError naming `level` for another level."""
        self._add_log(level_word(level), str(message))

    def debug(self, message: str) -> None:
        """`log(message, level="debug")`."""
        self._add_log("debug", str(message))

    def info(self, message: str) -> None:
        """`log(message, level="info")`."""
        self._add_log("info", str(message))

    def warn(self, message: str) -> None:
        """`log(message, level="warn")`."""
        self._add_log("warn", str(message))

    warning = warn

    def error(self, message: str) -> None:
        """`log(message, level="error")`."""
        self._add_log("error", str(message))

    def _add_log(self, level: str, message: str) -> None:
        if self._logs is not None:
            self._logs.add(level, message)

    async def heartbeat(self) -> None:
        """Tells the coordinator this attempt is alive (call it more often than
        `heartbeat_timeout`). Raises NonRetryableError type `Cancelled` (and sets `cancelled`) when
        the attempt is no longer current or the run is over; RetryableError when the coordinator
        cannot be reached."""
        await self._await_start()
        self._check(await self._caller("heartbeat", None))

    async def emit(self, payload: Any) -> None:
        """Adds a custom progress event (any JSON-serializable value) to the run's history,
        streamed by `watch`. NonRetryableError type `InvalidEvent` when it does not serialize or
        the coordinator refuses it (over its size limit); `Cancelled` as for heartbeat."""
        try:
            text = json.dumps(_ANY.dump_python(payload, mode="json"))
        except (TypeError, ValueError, pydantic_core.PydanticSerializationError) as e:
            raise NonRetryableError(f"event: {e}", type="InvalidEvent") from None
        await self._await_start()
        self._check(await self._caller("emit", text))

    def heartbeat_sync(self) -> None:
        """`heartbeat` for a sync handler (it runs in a worker thread)."""
        asyncio.run_coroutine_threadsafe(self.heartbeat(), self._loop).result()

    def emit_sync(self, payload: Any) -> None:
        """`emit` for a sync handler (it runs in a worker thread)."""
        asyncio.run_coroutine_threadsafe(self.emit(payload), self._loop).result()

    async def _await_start(self) -> None:
        """Waits for the answer to StartStep (an eager handler starts before it): a heartbeat or
        an event of an attempt not yet marked started would be answered stale. NonRetryableError
        type `Cancelled` when the start was refused (stale, cancelled or a duplicate)."""
        if not await asyncio.shield(self._started):
            self.cancelled.set()
            raise NonRetryableError(
                "the attempt is not to run (its start was refused: stale, cancelled or a duplicate)", type="Cancelled"
            )

    def _set_started(self, proceed: bool) -> None:
        """Called on the event loop with the start's answer (True: PROCEED)."""
        if not self._started.done():
            self._started.set_result(proceed)
        if not proceed:
            self.cancelled.set()

    def _check(self, disposition: int) -> None:
        if disposition != PROCEED:
            self.cancelled.set()
            raise NonRetryableError(
                "the attempt is no longer current (run finished, cancelled or retried)", type="Cancelled"
            )

    def _cancel(self) -> None:
        """Called on the event loop when a cancel notice names this run."""
        self.cancelled.set()


__all__ = ["Context"]
