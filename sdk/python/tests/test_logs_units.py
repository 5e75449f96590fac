"""Pure logic of step logs and failure details, without servers: levels, cuts, the bounded buffer,
the stdlib logging capture, and the traceback a failed attempt carries."""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timezone
from typing import Any

import pytest

from baton import Context, LogLine, Worker
from baton.logs import (
    MAX_LINES_PER_CALL,
    CaptureHandler,
    LogBuffer,
    current_context,
    cut_details,
    cut_message,
    level_word,
)
from baton.v1 import baton_pb2 as pb
from baton.worker import _flag


def test_levels_are_the_four_words_and_a_wrong_one_is_named() -> None:
    assert [level_word(w) for w in ("debug", "INFO", "warn", "Warning", "error", "critical")] == [
        "debug",
        "info",
        "warn",
        "warn",
        "error",
        "error",
    ]
    with pytest.raises(ValueError, match=r"^level: unknown log level 'loud'; levels are debug, info, warn, error$"):
        level_word("loud")


def test_long_messages_and_tracebacks_are_cut_to_their_bounds_without_splitting_a_character() -> None:
    assert cut_message("short") == "short"
    cut = cut_message("é" * 5000)
    assert cut.endswith("… (cut)") and len(cut.encode()) <= 4096
    trace = "Traceback (most recent call last):\n" + "  frame\n" * 5000 + "ValueError: the end\n"
    details = cut_details(trace)
    assert len(details.encode()) <= 16 * 1024
    assert details.startswith("Traceback") and details.endswith("ValueError: the end\n")
    assert "bytes cut" in details
    assert cut_details("small") == "small"


def test_the_buffer_drops_the_oldest_lines_counts_them_and_says_so() -> None:
    wakes: list[int] = []
    buf = LogBuffer(lambda: wakes.append(1), capacity=150)
    for i in range(200):
        buf.add("info", f"line {i}")
    assert buf.dropped == 50
    assert wakes == [1], "woken once, when 100 lines waited"
    first = buf.take()
    assert first[0].level == "warn" and first[0].message.startswith("50 log lines dropped by the worker")
    assert [line.message for line in first[1:3]] == ["line 50", "line 51"]
    assert len(first) == 151 and len(buf) == 0
    buf.close()
    buf.add("info", "after the report")
    assert len(buf) == 0
    # At most one call's worth per take.
    big = LogBuffer(lambda: None)
    for i in range(MAX_LINES_PER_CALL + 10):
        big.add("debug", str(i))
    assert len(big.take()) == MAX_LINES_PER_CALL and len(big.take()) == 10


def test_lines_put_back_after_a_failed_send_go_first() -> None:
    buf = LogBuffer(lambda: None)
    buf.add("info", "a")
    taken = buf.take()
    buf.add("info", "b")
    buf.put_back(taken)
    assert [line.message for line in buf.take()] == ["a", "b"]


def _context(loop: asyncio.AbstractEventLoop, buf: LogBuffer) -> Context:
    async def caller(kind: str, payload: str | None) -> int:
        return 1

    return Context(
        run_id="r",
        step_id="s#2",
        attempt=1,
        workflow="w",
        workflow_version=1,
        worker_id="wk",
        input={},
        parent_outputs={},
        resume_data=None,
        resumed=False,
        item_index=2,
        timeout=10,
        heartbeat_timeout=None,
        caller=caller,
        loop=loop,
        logs=buf,
    )


async def test_ctx_log_and_the_level_shortcuts_buffer_lines_with_level_and_time() -> None:
    buf = LogBuffer(lambda: None)
    ctx = _context(asyncio.get_running_loop(), buf)
    ctx.log("charging", level="info")
    ctx.debug("d")
    ctx.warn("w")
    ctx.error("e")
    with pytest.raises(ValueError, match="level"):
        ctx.log("x", level="loud")
    lines = buf.take()
    assert [(line.level, line.message) for line in lines] == [
        ("info", "charging"),
        ("debug", "d"),
        ("warn", "w"),
        ("error", "e"),
    ]
    assert all(line.time.seconds > 1_700_000_000 for line in lines)


async def test_heartbeats_wait_for_the_start_and_a_refused_start_cancels() -> None:
    buf = LogBuffer(lambda: None)
    ctx = _context(asyncio.get_running_loop(), buf)
    beat = asyncio.create_task(ctx.heartbeat())
    await asyncio.sleep(0.01)
    assert not beat.done(), "a heartbeat waits for the start's answer"
    ctx._set_started(False)
    with pytest.raises(Exception, match="start was refused"):
        await beat
    assert ctx.is_cancelled


async def test_captured_stdlib_logging_reaches_the_step_log_of_its_task_only() -> None:
    buf = LogBuffer(lambda: None)
    ctx = _context(asyncio.get_running_loop(), buf)
    capture = CaptureHandler()
    root = logging.getLogger()
    root.addHandler(capture)
    old = root.level
    root.setLevel(logging.INFO)
    try:
        logging.getLogger("shop").info("outside any handler")

        async def handler() -> None:
            current_context.set(ctx)
            logging.getLogger("shop").warning("stock low: %d", 3)
            logging.getLogger("baton.worker").info("the SDK's own")

        await asyncio.create_task(handler())
        logging.getLogger("shop").info("after")
    finally:
        root.removeHandler(capture)
        root.setLevel(old)
    assert [(line.level, line.message) for line in buf.take()] == [("warn", "shop: stock low: 3")]


def test_a_raised_exception_fails_with_its_class_name_message_and_traceback() -> None:
    worker = Worker(coordinator="127.0.0.1:1")

    def charge() -> None:
        raise KeyError("card")

    loop = asyncio.new_event_loop()
    try:
        future: asyncio.Future[Any] = loop.create_future()
        try:
            charge()
        except KeyError as e:
            future.set_exception(e)
        outcome = worker._outcome(future)
    finally:
        loop.close()
    assert outcome.failure is not None
    assert outcome.failure.error_type == "KeyError"
    assert outcome.failure.message == "KeyError: 'card'"
    assert outcome.failure.details.startswith("Traceback (most recent call last):")
    assert 'raise KeyError("card")' in outcome.failure.details
    assert outcome.failure.details.rstrip().endswith("KeyError: 'card'")


def test_the_eager_start_switch_reads_the_rust_workers_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BATON_EAGER_START", raising=False)
    assert Worker(coordinator="127.0.0.1:1").eager_start is False
    monkeypatch.setenv("BATON_EAGER_START", "true")
    assert Worker(coordinator="127.0.0.1:1").eager_start is True
    assert Worker(coordinator="127.0.0.1:1", eager_start=False).eager_start is False
    monkeypatch.setenv("BATON_EAGER_START", "maybe")
    with pytest.raises(ValueError, match="^BATON_EAGER_START='maybe' is not true or false$"):
        _flag("BATON_EAGER_START", None)


def test_the_eager_report_window_reads_the_rust_workers_variable_within_its_bounds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BATON_EAGER_REPORT_WINDOW", raising=False)
    assert Worker(coordinator="127.0.0.1:1").eager_report_window == 0.005
    monkeypatch.setenv("BATON_EAGER_REPORT_WINDOW", "250ms")
    assert Worker(coordinator="127.0.0.1:1").eager_report_window == 0.25
    assert Worker(coordinator="127.0.0.1:1", eager_report_window=0).eager_report_window == 0
    monkeypatch.setenv("BATON_EAGER_REPORT_WINDOW", "2s")
    with pytest.raises(ValueError, match="^eager_report_window must be from 0 to 1 second, not 2.0$"):
        Worker(coordinator="127.0.0.1:1")
    monkeypatch.setenv("BATON_EAGER_REPORT_WINDOW", "soon")
    with pytest.raises(ValueError, match="^BATON_EAGER_REPORT_WINDOW='soon' is not a duration"):
        Worker(coordinator="127.0.0.1:1")


def test_a_log_line_prints_as_the_cli_does() -> None:
    stamp = pb.LogLine(level="warn", message="low stock", step_id="reserve", attempt=2)
    stamp.time.FromDatetime(datetime(2026, 12, 6, 7, 1, 2, 123000, tzinfo=timezone.utc))
    line = LogLine.of(stamp)
    assert line.time == datetime(2026, 12, 6, 7, 1, 2, 123000, tzinfo=timezone.utc)
    assert str(line) == "2026-12-06T07:01:02.123Z WARN  reserve#2  low stock"


async def test_a_sync_handler_logs_from_its_thread_and_its_stdlib_logging_is_captured() -> None:
    import concurrent.futures

    worker = Worker(coordinator="127.0.0.1:1", capture_logging=True)
    loop = asyncio.get_running_loop()
    worker._loop = loop
    worker._pool = concurrent.futures.ThreadPoolExecutor(2)

    @worker.handler("sync.logger")
    def sync_logger(value: Any, ctx: Context) -> dict[str, bool]:
        ctx.info("from the handler's thread")
        logging.getLogger("shop").warning("captured in the thread")
        return {"ok": True}

    buf = LogBuffer(lambda: None)
    ctx = _context(loop, buf)
    capture = CaptureHandler()
    root = logging.getLogger()
    root.addHandler(capture)
    try:
        outcome = await worker._supervise(worker.handlers["sync.logger"], ctx)
    finally:
        root.removeHandler(capture)
        worker._pool.shutdown()
    assert outcome.output_json == '{"ok":true}'
    assert [(line.level, line.message) for line in buf.take()] == [
        ("info", "from the handler's thread"),
        ("warn", "shop: captured in the thread"),
    ]
