"""The Python worker the end-to-end tests run (`python -m baton.worker workers:worker`), settings
from the environment the fixture sets. Handlers append a line to files under BATON_TEST_DIR when
they start or see something, so a test waits on what really happened instead of sleeping."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from baton import Context, NonRetryableError, RetryableError, Suspend, Worker

worker = Worker()
DIR = Path(os.environ.get("BATON_TEST_DIR", "."))


def mark(name: str, line: str) -> None:
    with open(DIR / name, "a") as f:
        f.write(line + "\n")


class Numbers(BaseModel):
    a: int
    b: int


@dataclass
class Sleep:
    ms: int
    marker: str = ""
    # Attempts from this one on return at once (for the stale-result test).
    fast_from_attempt: int = 0
    # Return at once when the marker file already has a line (a redelivery, for the drain test).
    fast_if_marked: bool = False


@worker.handler("py.echo")
async def echo(value: Any, ctx: Context) -> Any:
    return {"input": value, "attempt": ctx.attempt, "worker": ctx.worker_id}


@worker.handler("py.add")
def add(n: Numbers) -> dict[str, int]:
    """A sync handler with a typed input: a wrong input is an InputError."""
    return {"sum": n.a + n.b}


@worker.handler("py.inc")
async def inc(value: Any, ctx: Context) -> dict[str, int]:
    parents = list(ctx.parent_outputs.values())
    base = parents[0]["n"] if parents else value["n"]
    return {"n": base + 1}


@worker.handler("py.double")
def double(value: Any, ctx: Context) -> dict[str, int]:
    parents = list(ctx.parent_outputs.values())
    base = parents[0]["n"] if parents else value["n"]
    return {"n": base * 2}


@worker.handler("py.join")
async def join(_: Any, ctx: Context) -> dict[str, Any]:
    """Fan-in: the sum of its parents' `n`, and which parents it saw."""
    return {"sum": sum(int(v["n"]) for v in ctx.parent_outputs.values()), "parents": sorted(ctx.parent_outputs)}


@worker.handler("py.flaky")
async def flaky(value: dict[str, int], ctx: Context) -> dict[str, int]:
    mark("flaky", f"{ctx.run_id} {ctx.attempt}")
    if ctx.attempt < value["succeed_on_attempt"]:
        raise RetryableError(f"attempt {ctx.attempt} fails", type="Flaky")
    return {"attempt": ctx.attempt}


@worker.handler("py.boom")
async def boom(value: Any, ctx: Context) -> None:
    """Raises a plain exception (retryable, its class name as the error type)."""
    raise ValueError(f"boom on attempt {ctx.attempt}")


@worker.handler("py.fatal")
async def fatal(_: Any, ctx: Context) -> None:
    mark("fatal", f"{ctx.run_id} {ctx.attempt}")
    raise NonRetryableError("asked to fail for good", type="Fatal")


@worker.handler("py.sleep")
async def sleep(s: Sleep, ctx: Context) -> dict[str, Any]:
    if s.marker:
        mark(s.marker, f"{ctx.run_id} {ctx.attempt} {ctx.worker_id}")
    if s.fast_from_attempt and ctx.attempt >= s.fast_from_attempt:
        return {"slept_ms": 0, "attempt": ctx.attempt}
    await asyncio.sleep(s.ms / 1000)
    return {"slept_ms": s.ms, "attempt": ctx.attempt, "worker": ctx.worker_id}


@worker.handler("py.sync_sleep")
def sync_sleep(s: Sleep, ctx: Context) -> dict[str, Any]:
    """A blocking handler: it runs in the worker's thread pool."""
    if s.fast_if_marked and (DIR / s.marker).exists():
        mark(s.marker, f"{ctx.run_id} {ctx.attempt} {ctx.worker_id}")
        return {"slept_ms": 0, "worker": ctx.worker_id}
    if s.marker:
        mark(s.marker, f"{ctx.run_id} {ctx.attempt} {ctx.worker_id}")
    time.sleep(s.ms / 1000)
    return {"slept_ms": s.ms, "worker": ctx.worker_id}


@worker.handler("py.heartbeat")
async def heartbeat(s: Sleep, ctx: Context) -> dict[str, Any]:
    beats = 0
    deadline = time.monotonic() + s.ms / 1000
    while time.monotonic() < deadline:
        await asyncio.sleep(0.1)
        await ctx.heartbeat()
        beats += 1
    await ctx.emit({"beats": beats})
    return {"beats": beats, "attempt": ctx.attempt}


@worker.handler("py.approve")
async def approve(_: Any, ctx: Context) -> dict[str, Any]:
    mark("approve", f"{ctx.run_id} {ctx.attempt} resumed={ctx.resumed}")
    if ctx.resumed:
        return {"approved": ctx.resume_data}
    raise Suspend("approval", ctx.run_id, timeout=60)


@worker.handler("py.cancellable")
async def cancellable(_: Any, ctx: Context) -> dict[str, Any]:
    mark("cancellable", ctx.run_id)
    try:
        await asyncio.wait_for(ctx.cancelled.wait(), timeout=60)
    except asyncio.TimeoutError:
        return {"cancelled": False}
    mark("saw-cancel", ctx.run_id)
    return {"cancelled": True}


@dataclass
class Charge:
    order: str
    amount: int = 0
    # Attempts before this one log and raise; this one succeeds.
    succeed_on_attempt: int = 2


@worker.handler("py.charge")
async def charge(c: Charge, ctx: Context) -> dict[str, Any]:
    """Writes its step log (ctx.log at each level, and the stdlib logging, captured when the worker
    has BATON_CAPTURE_LOGGING=true), then raises a plain exception until `succeed_on_attempt`."""
    ctx.info(f"charging order {c.order}: {c.amount} EUR")
    ctx.debug(f"attempt {ctx.attempt}")
    logging.getLogger("shop.payments").warning("gateway slow for %s", c.order)
    if ctx.attempt < c.succeed_on_attempt:
        ctx.error("the card was declined")
        raise LookupError(f"card declined for order {c.order}")
    ctx.log("charged", level="warn")
    return {"charged": c.amount}


@worker.handler("py.ticker")
async def ticker(s: Sleep, ctx: Context) -> dict[str, int]:
    """Logs `tick <i>` every `ms` milliseconds, 10 times (a line at a time: the live stream)."""
    for i in range(10):
        ctx.info(f"tick {i}")
        await asyncio.sleep(s.ms / 1000)
    return {"ticks": 10}


@worker.handler("py.eager_probe")
async def eager_probe(s: Sleep, ctx: Context) -> dict[str, Any]:
    """Marks `<marker>` as it starts, `<marker>-cancelled` when it is cancelled (an abandoned
    eager start) and `<marker>-finished` when it returns."""
    mark(s.marker, f"{ctx.run_id} {ctx.attempt} started")
    try:
        await asyncio.sleep(s.ms / 1000)
    except asyncio.CancelledError:
        mark(f"{s.marker}-cancelled", f"{ctx.run_id} {ctx.attempt}")
        raise
    mark(f"{s.marker}-finished", f"{ctx.run_id} {ctx.attempt}")
    return {"slept_ms": s.ms}
