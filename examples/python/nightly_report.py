#!/usr/bin/env python3
"""Nightly report (Centaur's durable workflow) with Baton's Python SDK: collect figures, sleep
durably (a timer in Redis, no worker held), wait for the upstream data to be published (an
event), then summarize.

    ./deploy/local/up.sh                              # once: Redis, RabbitMQ, a coordinator
    ./examples/python/run.sh nightly_report           # this script, in a venv with the SDK

The script registers the workflow `nightly-report`, runs a Python worker for its handlers in the
background, submits the report of today's date, and when the run waits for the event
`report.data-ready` (key: the date) publishes it, as the upstream job would. `--sleep 5s` sets the
durable sleep (default 3s); `--schedule` also creates a schedule that runs the report every night
at 02:00 UTC (paused, so it starts nothing until `baton schedule resume nightly-report/02h`). The
directory summarized is --dir (default /usr/share/common-licenses). Settings: BATON_ADDR (default
http://127.0.0.1:7450), BATON_TOKEN, BATON_AMQP_URL, BATON_NAMESPACE.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import os
from pathlib import Path

from pydantic import BaseModel

from baton import AsyncClient, Context, NonRetryableError, Worker

ADDR = os.environ.get("BATON_ADDR") or os.environ.get("BATON_COORDINATOR") or "http://127.0.0.1:7450"


def workflow(sleep: str) -> dict[str, object]:
    return {
        "name": "nightly-report",
        "version": 1,
        "description": "Collect figures, sleep durably, wait for the upstream data, summarize.",
        "input_schema": {
            "type": "object",
            "required": ["date", "dir"],
            "properties": {"date": {"type": "string"}, "dir": {"type": "string"}},
        },
        "steps": [
            {"id": "collect", "handler": "report.collect", "timeout": "1m"},
            {"id": "cool_down", "depends_on": ["collect"], "sleep": sleep},
            {
                "id": "data_ready",
                "depends_on": ["collect"],
                "wait_for_event": {"event": "report.data-ready", "key": "input.date", "timeout": "1h"},
            },
            {
                "id": "summarize",
                "handler": "report.summarize",
                "depends_on": ["collect", "cool_down", "data_ready"],
                "timeout": "1m",
                "retry": {"max_attempts": 3, "initial_interval": "1s"},
            },
        ],
    }


class Job(BaseModel):
    date: str
    dir: str


class Collected(BaseModel):
    files: int
    bytes: int
    largest: str


worker = Worker(coordinator=ADDR, worker_id=f"report-example-{os.getpid()}")


@worker.handler("report.collect")
def collect(job: Job, ctx: Context) -> Collected:
    """Walks the directory (a blocking handler: it runs in the worker's thread pool)."""
    root = Path(job.dir)
    if not root.is_dir():
        raise NonRetryableError(f"{job.dir} is not a directory", type="NotFound")
    sizes = {p.name: p.stat().st_size for p in root.iterdir() if p.is_file()}
    largest = max(sizes, key=lambda name: sizes[name]) if sizes else ""
    return Collected(files=len(sizes), bytes=sum(sizes.values()), largest=largest)


@worker.handler("report.summarize")
async def summarize(job: Job, ctx: Context) -> dict[str, object]:
    figures = ctx.parent_output("collect", Collected)
    upstream = ctx.parent_output("data_ready")
    await ctx.emit({"summarizing": job.date})
    return {
        "date": job.date,
        "line": f"{figures.files} files, {figures.bytes} bytes; largest {figures.largest}",
        "upstream": upstream,
    }


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--date", default=datetime.date.today().isoformat())
    parser.add_argument("--dir", default="/usr/share/common-licenses")
    parser.add_argument("--sleep", default="3s", help="the durable sleep between collect and summarize")
    parser.add_argument("--schedule", action="store_true", help="also create a paused nightly schedule")
    args = parser.parse_args()

    stop = asyncio.Event()
    serving = asyncio.create_task(worker.serve(stop))
    try:
        async with AsyncClient(ADDR) as client:
            await client.register_workflow(workflow(args.sleep))
            if args.schedule:
                s = await client.create_schedule(
                    "nightly-report", "0 2 * * *", id="nightly-report/02h", input={"date": "nightly", "dir": args.dir}
                )
                await client.pause_schedule(s.id)
                print(f"schedule {s.id} created (paused)")
            job = {"date": args.date, "dir": args.dir}
            run_id = (await client.submit("nightly-report", job, idempotency_key=f"nightly-report/{args.date}")).run_id
            print(f"run {run_id} for {args.date}")
            published = False
            async for event in client.watch(run_id):
                if event.kind == "step":
                    print(f"  step {event.step_id}: {event.status} {event.detail}".rstrip())
                elif event.kind == "custom":
                    print(f"  event from {event.step_id}: {event.payload}")
                if event.step_id == "data_ready" and event.status == "waiting" and not published:
                    await client.publish_event("report.data-ready", args.date, {"rows": 1234, "source": "warehouse"})
                    published = True
                    print(f"  published report.data-ready for {args.date}")
            run = await client.get_run(run_id)
            print(f"run {run.status}: {run.output if run.status == 'succeeded' else run.error}")
            return 0 if run.status == "succeeded" else 1
    finally:
        stop.set()
        await serving


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
