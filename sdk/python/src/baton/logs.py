"""Step logs: the lines a handler writes with `ctx.log` (or, opted in, with the stdlib `logging`),
buffered per attempt and sent to the coordinator with AppendLogs, and the `LogLine` the clients
read back (`Client.step_logs`, `Client.follow_logs`).

Bounds (the coordinator's, docs/src/python.md): a message is cut to 4 KiB (ending `… (cut)`), one
AppendLogs call carries at most 500 lines, the coordinator keeps at most 1,000 lines and 256 KiB
per attempt (dropping the oldest). The worker holds at most `MAX_BUFFERED_LINES` unsent lines per
attempt, dropping the oldest and counting them (then a `warn` line says how many were dropped)."""

from __future__ import annotations

import contextvars
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING

from google.protobuf.timestamp_pb2 import Timestamp

from baton.v1 import baton_pb2 as pb

if TYPE_CHECKING:
    from baton.context import Context

__all__ = [
    "LEVELS",
    "LogLine",
    "StepLogs",
    "MAX_MESSAGE_BYTES",
    "MAX_LINES_PER_CALL",
    "MAX_BUFFERED_LINES",
    "FLUSH_INTERVAL",
    "FLUSH_LINES",
]

LEVELS = ("debug", "info", "warn", "error")
"""The levels of a log line, least severe first."""

MAX_MESSAGE_BYTES = 4096
"""Longest message sent, in UTF-8 bytes (the coordinator's bound); longer ones end `… (cut)`."""

MAX_LINES_PER_CALL = 500
"""Most lines one AppendLogs call carries (the coordinator's bound)."""

MAX_BUFFERED_LINES = 2000
"""Most unsent lines the worker holds per attempt; the oldest are dropped first, and counted."""

FLUSH_INTERVAL = 1.0
"""Seconds between two sends of an attempt's buffered lines."""

FLUSH_LINES = 100
"""Buffered lines that trigger a send at once, before the interval is up."""

_CUT = "… (cut)"
_ALIASES = {"warning": "warn", "critical": "error", "fatal": "error", "err": "error"}


def level_word(level: str) -> str:
    """The level word of `level` (case-insensitive; `warning` means `warn`, `critical` `error`).
    ValueError naming `level` and listing the levels otherwise."""
    word = level.strip().lower() if isinstance(level, str) else ""
    word = _ALIASES.get(word, word)
    if word not in LEVELS:
        raise ValueError(f"level: unknown log level {str(level)[:100]!r}; levels are {', '.join(LEVELS)}")
    return word


def cut_message(message: str, limit: int = MAX_MESSAGE_BYTES) -> str:
    """`message` when it fits in `limit` UTF-8 bytes, else its head ending `… (cut)`, in `limit`
    bytes with no character split."""
    data = message.encode("utf-8", "replace")
    if len(data) <= limit:
        return message
    room = limit - len(_CUT.encode())
    return data[:room].decode("utf-8", "ignore") + _CUT


def cut_details(text: str, limit: int = 16 * 1024) -> str:
    """A traceback cut to `limit` UTF-8 bytes: its head and its tail (where the exception is),
    with the middle replaced by a line saying how many bytes were left out."""
    data = text.encode("utf-8", "replace")
    if len(data) <= limit:
        return text
    head_room = limit // 4
    tail_room = limit - head_room - 64  # 64 bytes for the note
    note = f"\n… ({len(data) - head_room - tail_room} bytes cut) …\n"
    head = data[:head_room].decode("utf-8", "ignore")
    tail = data[len(data) - tail_room :].decode("utf-8", "ignore")
    return head + note + tail


@dataclass(frozen=True)
class LogLine:
    """One line a handler logged: `time` (UTC, the worker's clock), `level` (`debug`, `info`,
    `warn` or `error`), `message` (at most 4 KiB), and the `step_id` (`<step>#<index>` for a
    fan-out element) and `attempt` (1-based) it belongs to. `str(line)` is the CLI's form:
    `2026-12-06T07:01:02.123Z INFO  step#1  message`."""

    time: datetime
    level: str
    message: str
    step_id: str
    attempt: int

    @staticmethod
    def of(line: pb.LogLine) -> LogLine:
        when = datetime.fromtimestamp(line.time.seconds, tz=timezone.utc) + timedelta(microseconds=line.time.nanos // 1000)
        return LogLine(
            time=when,
            level=line.level,
            message=line.message,
            step_id=line.step_id,
            attempt=line.attempt,
        )

    def __str__(self) -> str:
        stamp = self.time.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.") + f"{self.time.microsecond // 1000:03d}Z"
        return f"{stamp} {self.level.upper():<5} {self.step_id}#{self.attempt}  {self.message}"


@dataclass(frozen=True)
class StepLogs:
    """The answer of `step_logs`: `lines` oldest first, and `omitted`, how many older lines the
    `limit` left out. Iterating it iterates the lines."""

    lines: list[LogLine]
    omitted: int

    def __iter__(self) -> Iterator[LogLine]:
        return iter(self.lines)

    def __len__(self) -> int:
        return len(self.lines)

    def __getitem__(self, i: int) -> LogLine:
        return self.lines[i]


class LogBuffer:
    """The unsent lines of one attempt. `add` may be called from any thread (a sync handler runs in
    the worker's thread pool) and never blocks on the network; the worker's flusher `take`s them.
    At most `capacity` lines are held: the oldest are dropped first and counted in `dropped`.
    `wake` is called (from the adding thread) when `FLUSH_LINES` lines are waiting."""

    def __init__(self, wake: Callable[[], None], capacity: int = MAX_BUFFERED_LINES) -> None:
        self._lines: deque[pb.LogLine] = deque()
        self._lock = threading.Lock()
        self._wake = wake
        self._capacity = capacity
        self._closed = False
        self.dropped = 0
        self._unreported = 0

    def add(self, level: str, message: str) -> None:
        """Buffers one line stamped now (`level` already checked). Nothing once closed."""
        stamp = Timestamp()
        stamp.FromNanoseconds(time.time_ns())
        line = pb.LogLine(time=stamp, level=level, message=cut_message(message))
        with self._lock:
            if self._closed:
                return
            self._lines.append(line)
            if len(self._lines) > self._capacity:
                self._lines.popleft()
                self.dropped += 1
                self._unreported += 1
            full = len(self._lines) == FLUSH_LINES
        if full:
            self._wake()

    def take(self, n: int = MAX_LINES_PER_CALL) -> list[pb.LogLine]:
        """Up to `n` of the oldest lines, removed; first a `warn` line saying how many lines were
        dropped since the last take, when some were."""
        with self._lock:
            out: list[pb.LogLine] = []
            if self._unreported:
                stamp = Timestamp()
                stamp.FromNanoseconds(time.time_ns())
                out.append(
                    pb.LogLine(
                        time=stamp,
                        level="warn",
                        message=f"{self._unreported} log lines dropped by the worker (more than {self._capacity} waiting to be sent)",
                    )
                )
                self._unreported = 0
            while self._lines and len(out) < n:
                out.append(self._lines.popleft())
            return out

    def put_back(self, lines: list[pb.LogLine]) -> None:
        """Returns lines a failed send took, ahead of the rest (the oldest dropped beyond capacity)."""
        with self._lock:
            if self._closed:
                return
            self._lines.extendleft(reversed(lines))
            while len(self._lines) > self._capacity:
                self._lines.popleft()
                self.dropped += 1
                self._unreported += 1

    def __len__(self) -> int:
        with self._lock:
            return len(self._lines)

    def close(self) -> None:
        """Takes no more lines (the attempt was reported or abandoned) and forgets the unsent ones."""
        with self._lock:
            self._closed = True
            self._lines.clear()


# The attempt whose handler is running in this task or thread (set by the worker around the
# handler), read by `CaptureHandler`.
current_context: contextvars.ContextVar[Context | None] = contextvars.ContextVar("baton_step_context", default=None)


def _record_level(levelno: int) -> str:
    if levelno >= logging.ERROR:
        return "error"
    if levelno >= logging.WARNING:
        return "warn"
    if levelno >= logging.INFO:
        return "info"
    return "debug"


class CaptureHandler(logging.Handler):
    """A stdlib `logging` handler that copies the records a step's handler logs (in its task or
    its thread) into that attempt's step log, as `ctx.log` would: `logger: message` with the
    record's level (WARNING → warn, CRITICAL → error). Records outside a handler, and the SDK's own
    (`baton.*`), are left alone. Installed on the root logger by a worker made with
    `capture_logging=True` (or `BATON_CAPTURE_LOGGING=true`); the records still reach every other
    handler as before."""

    def emit(self, record: logging.LogRecord) -> None:
        ctx = current_context.get()
        if ctx is None or record.name == "baton" or record.name.startswith("baton."):
            return
        try:
            text = record.getMessage()
            if record.exc_info and record.exc_info[0] is not None:
                text += "\n" + logging.Formatter().formatException(record.exc_info)
            ctx._add_log(_record_level(record.levelno), f"{record.name}: {text}")
        except Exception:
            self.handleError(record)
