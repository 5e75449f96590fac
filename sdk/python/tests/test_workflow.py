"""Workflows defined in Python (`Workflow`, `@wf.step`): the definition equals the YAML's, through a
real coordinator's GetWorkflow; a worker registers it at start; `client.run`/`wait` follow the run
and return typed results; `list_runs` pages. The example sdk/python/examples/orders.py runs."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import threading
import time
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import SDK, Cluster
from pydantic import BaseModel

from baton import (
    AsyncClient,
    Client,
    Concurrency,
    Context,
    RateLimit,
    RetryPolicy,
    RunFailed,
    Worker,
    WorkerStopped,
    Workflow,
)
from baton.workflow import duration_text

EXAMPLES = SDK / "examples"
sys.path.insert(0, str(EXAMPLES))

import orders  # noqa: E402  (the example module: its workflow, models and worker)


def flow(name: str, *steps: dict[str, object]) -> dict[str, object]:
    return {"name": name, "version": 1, "steps": list(steps)}


# ---------------------------------------------------------------------------- without a server


def test_the_python_orders_workflow_is_the_yaml_document() -> None:
    assert orders.wf.definition() == yaml.safe_load((EXAMPLES / "orders.yaml").read_text())
    assert sorted(orders.wf.handlers) == ["orders.charge", "orders.receipt", "orders.ship"]
    assert sorted(orders.worker.handlers) == ["orders.charge", "orders.receipt", "orders.ship"]
    assert orders.worker.workflows == [orders.wf]


def test_durations_are_written_in_the_largest_exact_units() -> None:
    assert duration_text(30, "t") == "30s"
    assert duration_text(90, "t") == "1m 30s"
    assert duration_text(0.25, "t") == "250ms"
    assert duration_text(1.5, "t") == "1s 500ms"
    assert duration_text(timedelta(days=14), "t") == "14d"
    assert duration_text(timedelta(hours=25), "t") == "1d 1h"
    assert duration_text(" 5m ", "t") == "5m"
    with pytest.raises(ValueError, match=r"^steps\[0\]\.timeout: 0\.0 s is not more than 0"):
        duration_text(0, "steps[0].timeout")
    with pytest.raises(ValueError, match="whole number of milliseconds"):
        duration_text(0.0004, "t")
    with pytest.raises(ValueError, match="ten years"):
        duration_text(timedelta(days=4000), "t")
    with pytest.raises(ValueError, match="not a duration"):
        duration_text(True, "t")


def test_every_step_kind_writes_the_fields_yaml_would() -> None:
    class Form(BaseModel):
        approved: bool

    wf = Workflow("kinds", version=3, description="d", max_concurrent_runs=2, concurrency_key="input.k")
    first = wf.task(
        "first",
        handler="echo",
        for_each="input.items",
        max_parallel=4,
        concurrency=Concurrency(limit=2, key="input.k"),
        rate_limit=RateLimit(limit=10, period=60),
        schedule_to_start=timedelta(minutes=5),
        retry=RetryPolicy(backoff_coefficient=1.5, jitter=0.0, non_retryable_errors=("Bad",)),
    )
    wf.sleep("nap", 2, depends_on=[first])
    wf.wait_for_event("go", "orders.go", key="input.id", timeout="1h", on_timeout="skip", depends_on=["nap"])
    wf.human("ok", title="Approve", assignees=["ann"], form=Form, depends_on=["go"], when="input.ask")
    wf.child("sub", "other", version=2, input={"x": 1}, depends_on=["ok"])
    assert wf.definition() == {
        "name": "kinds",
        "version": 3,
        "description": "d",
        "max_concurrent_runs": 2,
        "concurrency_key": "input.k",
        "steps": [
            {
                "id": "first",
                "handler": "echo",
                "for_each": "input.items",
                "max_parallel": 4,
                "concurrency": {"limit": 2, "key": "input.k"},
                "rate_limit": {"limit": 10, "period": "1m"},
                "schedule_to_start": "5m",
                "retry": {"backoff_coefficient": 1.5, "jitter": 0, "non_retryable_errors": ["Bad"]},
            },
            {"id": "nap", "depends_on": ["first"], "sleep": "2s"},
            {
                "id": "go",
                "depends_on": ["nap"],
                "wait_for_event": {"event": "orders.go", "key": "input.id", "timeout": "1h", "on_timeout": "skip"},
            },
            {
                "id": "ok",
                "depends_on": ["go"],
                "when": "input.ask",
                "human": {"title": "Approve", "assignees": ["ann"], "form": Form.model_json_schema()},
            },
            {"id": "sub", "depends_on": ["ok"], "workflow": {"name": "other", "version": 2}, "input": {"x": 1}},
        ],
    }


def test_mistakes_are_refused_naming_the_field() -> None:
    wf = Workflow("m")

    @wf.step
    async def a(x: Any) -> Any:
        return x

    with pytest.raises(ValueError, match=r"^steps\[1\]\.id: step 'a' is declared twice"):
        wf.task("a", handler="h")
    with pytest.raises(ValueError, match=r"^steps\[1\]\.depends_on\[1\]: no step 'zz'"):
        wf.task("b", handler="h", depends_on=[a, "zz"])
    other = Workflow("other")

    @other.step
    async def elsewhere(x: Any) -> Any:
        return x

    with pytest.raises(ValueError, match=r"^steps\[1\]\.depends_on\[0\]: .* is not a step of workflow 'm'"):
        wf.task("c", handler="h", depends_on=[elsewhere])
    with pytest.raises(ValueError, match=r"^steps\[1\]\.depends_on: a list of steps"):
        wf.task("d", handler="h", depends_on="a")
    with pytest.raises(ValueError, match=r"^steps\[1\]\.id: 'no spaces'"):
        wf.task("no spaces", handler="h")
    with pytest.raises(ValueError, match=r"^steps\[1\]\.retry\.max_interval: "):
        wf.task("e", handler="h", retry=RetryPolicy(max_interval=-1))
    with pytest.raises(ValueError, match="^version: "):
        Workflow("v", version=0)
    with pytest.raises(ValueError, match="^steps: workflow 'empty' has no step"):
        Worker(workflows=[Workflow("empty")])
    with pytest.raises(TypeError):
        RetryPolicy(3)  # type: ignore[misc]  # keyword-only
    # Nothing refused was kept.
    assert [s.id for s in wf.steps] == ["a"] and wf.definition()["steps"] == [{"id": "a", "handler": "m.a"}]


# ---------------------------------------------------------------------------- against a coordinator


def test_the_worker_registers_the_python_workflow_at_start_and_it_equals_the_yaml(cluster: Cluster, tmp_path: Path) -> None:
    proc = cluster._spawn(
        "orders-worker",
        [sys.executable, "-m", "baton.worker", "orders:worker"],
        {"BATON_WORKER_ID": "orders-py", "PYTHONPATH": str(EXAMPLES)},
    )
    cluster.handlers.update(orders.wf.handlers)
    proc.wait_log("registered workflow orders version 1")
    for handler in orders.wf.handlers:
        proc.wait_log(f"consuming {cluster.namespace}.step.{handler} ")
    from_python = cluster.client.get_workflow("orders")

    # The YAML, registered in another namespace by its own coordinator.
    other = Cluster("yaml-orders", tmp_path / "yaml")
    try:
        other.client.register_workflow_file(EXAMPLES / "orders.yaml")
        from_yaml = other.client.get_workflow("orders")
    finally:
        other.close()
    assert json.loads(from_python.definition_json) == json.loads(from_yaml.definition_json)
    assert list(from_python.steps) == list(from_yaml.steps)
    assert from_python.input_schema_json and from_python.input_schema_json == from_yaml.input_schema_json
    assert (from_python.name, from_python.version, from_python.description) == (
        from_yaml.name,
        from_yaml.version,
        from_yaml.description,
    )
    # The same document again is the same workflow; another under the same version is refused.
    cluster.client.register_workflow_file(EXAMPLES / "orders.yaml")

    # The worker serves it: a run through the three Python handlers.
    shipment = cluster.client.run(
        "orders", {"item": "lamp", "quantity": 3, "email": "b@example.com"}, result_type=orders.Shipment, step="ship"
    )
    assert isinstance(shipment, orders.Shipment)
    assert (shipment.item, shipment.quantity) == ("lamp", 3) and shipment.tracking.startswith("TRK-")


class Leaves(BaseModel):
    e: dict[str, Any]


def test_run_and_wait_follow_the_run_and_return_typed_results_or_raise_run_failed(cluster: Cluster) -> None:
    cluster.python_worker()
    c = cluster.client
    c.register_workflow(flow("typed-run", {"id": "e", "handler": "py.echo"}))
    c.register_workflow(flow("typed-fail", {"id": "f", "handler": "py.fatal"}))
    c.register_workflow(flow("typed-slow", {"id": "s", "handler": "py.sleep"}))

    run = c.run("typed-run", {"x": 1})
    assert run.status == "succeeded" and run.output["e"]["input"] == {"x": 1}
    leaves = c.run("typed-run", {"x": 2}, result_type=Leaves)
    assert isinstance(leaves, Leaves) and leaves.e["input"] == {"x": 2}
    assert c.run("typed-run", {"x": 3}, result_type=dict, step="e")["input"] == {"x": 3}

    with pytest.raises(RunFailed) as failed:
        c.run("typed-fail", {}, result_type=Leaves)
    assert failed.value.run.status == "failed" and "asked to fail for good" in str(failed.value)
    with pytest.raises(RunFailed, match="does not validate as int"):
        c.run("typed-run", {}, result_type=int)

    # No default time limit, but one may be given; the run goes on.
    slow = c.submit("typed-slow", {"ms": 1500}).run_id
    with pytest.raises(TimeoutError, match=f"run {slow} did not finish within 0.2s"):
        c.wait(slow, timeout=0.2)
    assert c.wait(slow).steps["s"].output["slept_ms"] == 1500
    # A finished run answers at once, and so does a retried one that finished again.
    assert c.wait(slow).status == "succeeded"


async def test_list_runs_iterates_over_every_page(cluster: Cluster) -> None:
    cluster.python_worker()
    c = cluster.client
    c.register_workflow(flow("paged", {"id": "e", "handler": "py.echo"}))
    ids = [c.submit("paged", {"i": i}, idempotency_key=str(uuid.uuid4())).run_id for i in range(5)]
    for run_id in ids:
        c.wait(run_id, timeout=60)
    listed = [r.id for r in c.list_runs("paged", page_size=2)]
    assert sorted(listed) == sorted(ids) and len(listed) == 5
    assert [len(p.runs) for p in c.list_run_pages("paged", page_size=2)] == [2, 2, 1]
    assert len(list(c.list_runs("paged", page_size=2, max_runs=3))) == 3
    with pytest.raises(ValueError, match="^page_size: must be from 1 to 1000"):
        c.list_runs("paged", page_size=0)
    async with AsyncClient(cluster.addr) as a:
        assert [r.id async for r in a.list_runs("paged", page_size=4)] == listed
        assert [len(p.runs) async for p in a.list_run_pages("paged", page_size=4)] == [4, 1]


def test_the_orders_example_runs_with_a_host_port_address(cluster: Cluster) -> None:
    cluster.handlers.update(orders.wf.handlers)
    env = cluster.env({"BATON_ADDR": f"127.0.0.1:{cluster.port}", "BATON_WORKER_ID": "orders-example"})
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / "orders.py"), "--item", "pen", "--quantity", "4"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "shipped: Shipment(item='pen', quantity=4, tracking='TRK-" in done.stdout, done.stdout
    assert done.stdout.count(": succeeded") == 1, done.stdout
    failed = subprocess.run(
        [sys.executable, str(EXAMPLES / "orders.py"), "--item", "yacht"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert "order failed: failed: " in failed.stdout and "no price for 'yacht'" in failed.stdout, failed.stdout


def test_a_worker_whose_workflow_the_coordinator_refuses_exits_with_one_line(cluster: Cluster) -> None:
    cluster.client.register_workflow(flow("taken", {"id": "x", "handler": "echo"}))
    wf = Workflow("taken")

    @wf.step
    async def x(value: Any, ctx: Context) -> Any:
        return value

    worker = Worker(coordinator=cluster.addr, namespace=cluster.namespace, workflows=[wf], worker_id="refused")
    with pytest.raises(WorkerStopped, match=r"refused workflow 'taken' version 1 \(ALREADY_EXISTS"):
        asyncio.run(asyncio.wait_for(worker.serve(asyncio.Event()), 60))


def test_wait_follows_the_run_again_when_its_coordinator_dies(cluster: Cluster) -> None:
    second = cluster.another_coordinator()
    both = f"{cluster.addr},{second}"
    cluster.python_worker(BATON_ADDR=both)
    cluster.client.register_workflow(flow("outlive", {"id": "s", "handler": "py.sleep"}))
    run_id = cluster.client.submit("outlive", {"ms": 3000}).run_id
    cluster.wait_step(run_id, "s", "running")
    answer: dict[str, Any] = {}

    def follow() -> None:
        # The client's own channel over both coordinators: the first is in use when it dies.
        with Client(both) as c:
            try:
                answer["run"] = c.wait(run_id)
            except Exception as e:  # reported below
                answer["error"] = e

    waiter = threading.Thread(target=follow)
    waiter.start()
    # Most likely the stream is open on the first coordinator by then; if not, the wait starts on
    # the second, and the run must still be followed to its end.
    time.sleep(0.5)
    cluster.coordinator.signal(signal.SIGKILL)
    waiter.join(timeout=90)
    assert not waiter.is_alive(), "wait did not return"
    assert "error" not in answer, answer
    assert answer["run"].status == "succeeded" and answer["run"].steps["s"].output["slept_ms"] == 3000
