"""A Python worker for `baton bench`: one handler that returns its input, named by
BATON_BENCH_HANDLER (default `py.echo`), settings from the usual BATON_* variables.

    BATON_CONCURRENCY=64 python -m baton.worker echo_worker:worker      # from this directory
    baton bench --handler py.echo --only one,chain
"""

from __future__ import annotations

import os
from typing import Any

from baton import Worker

worker = Worker()


@worker.handler(os.environ.get("BATON_BENCH_HANDLER", "py.echo"))
async def echo(value: Any) -> Any:
    return value
