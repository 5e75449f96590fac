"""Step logs, resolved inputs, failure details and eager start of the Python worker, against a real
coordinator, Redis and RabbitMQ: what `Client.step_logs`, `follow_logs` and `get_run` show of a
handler that logs and raises, and a stale copy started eagerly that is abandoned."""

from __future__ import annotations

import asyncio
import json
import signal
import threading
import time

import aio_pika
import pytest

from baton import Client, NotFound
from baton.v1 import task_pb2
from conftest import AMQP_URL, Cluster


def flow(name: str, *steps: dict[str, object]) -> dict[str, object]:
    return {"name": name, "version": 1, "steps": list(steps)}


def test_a_handler_that_logs_and_raises_shows_its_lines_traceback_and_input(cluster: Cluster) -> None:
    cluster.python_worker(BATON_CAPTURE_LOGGING="true")
    cluster.client.register_workflow(
        flow(
            "pay",
            {
                "id": "charge",
                "handler": "py.charge",
                "input": {"order": "${{ input.order }}", "amount": 42},
                "retry": {"max_attempts": 2, "initial_interval": "50ms"},
            },
        )
    )
    run_id = cluster.client.submit("pay", {"order": "A-17"}).run_id
    run = cluster.client.wait(run_id, timeout=60)
    assert run.status == "succeeded", run

    # GetRun: each attempt's resolved input (the template rendered), the first one's error type,
    # message and traceback, and how many lines each kept.
    first, second = run.steps["charge"].attempts
    assert json.loads(first.input_json) == {"order": "A-17", "amount": 42}
    assert json.loads(second.input_json) == {"order": "A-17", "amount": 42}
    assert first.error_type == "LookupError"
    assert "card declined for order A-17" in first.error
    assert first.error_details.startswith("Traceback (most recent call last):")
    assert 'raise LookupError(f"card declined for order {c.order}")' in first.error_details
    assert first.error_details.rstrip().endswith("LookupError: card declined for order A-17")
    assert second.error_type == "" and second.error_details == ""

    # The lines, oldest first, with their levels, attempts and the worker's times.
    logs = cluster.client.step_logs(run_id, "charge")
    got = [(line.attempt, line.level, line.message) for line in logs]
    assert got == [
        (1, "info", "charging order A-17: 42 EUR"),
        (1, "debug", "attempt 1"),
        (1, "warn", "shop.payments: gateway slow for A-17"),
        (1, "error", "the card was declined"),
        (2, "info", "charging order A-17: 42 EUR"),
        (2, "debug", "attempt 2"),
        (2, "warn", "shop.payments: gateway slow for A-17"),
        (2, "warn", "charged"),
    ], got
    assert logs.omitted == 0
    assert all(line.step_id == "charge" for line in logs)
    times = [line.time for line in logs]
    assert times == sorted(times) and time.time() - times[0].timestamp() < 120
    assert first.log_lines == 4 and second.log_lines == 4

    # One attempt; the newest lines within a limit; the whole run.
    assert [line.message for line in cluster.client.step_logs(run_id, "charge", 1)][-1] == "the card was declined"
    newest = cluster.client.step_logs(run_id, "charge", limit=3)
    assert [line.message for line in newest] == ["attempt 2", "shop.payments: gateway slow for A-17", "charged"]
    assert newest.omitted == 5
    assert len(cluster.client.step_logs(run_id)) == 8
    with pytest.raises(NotFound) as missing:
        cluster.client.step_logs(run_id, "nope")
    assert "step_id" in missing.value.details
    with pytest.raises(ValueError, match="^attempt: needs a step$"):
        cluster.client.step_logs(run_id, attempt=1)


def test_follow_logs_gives_the_lines_so_far_then_live_ones_once_each(cluster: Cluster) -> None:
    cluster.python_worker()
    cluster.client.register_workflow(flow("ticks", {"id": "t", "handler": "py.ticker"}))
    run_id = cluster.client.submit("ticks", {"ms": 150}).run_id
    cluster.wait_step(run_id, "t", "running")
    assert cluster.client.get_run(run_id).steps["t"].input == {"ms": 150}, "the input of the attempt in flight"
    seen = [f"{line.step_id}#{line.attempt} {line.level} {line.message}" for line in cluster.client.follow_logs(run_id)]
    assert seen == [f"t#1 info tick {i}" for i in range(10)], seen
    assert cluster.client.get_run(run_id).status == "succeeded"


def test_follow_logs_goes_on_across_a_coordinator_restart(cluster: Cluster) -> None:
    cluster.python_worker()
    cluster.client.register_workflow(flow("ticks-restart", {"id": "t", "handler": "py.ticker"}))
    run_id = cluster.client.submit("ticks-restart", {"ms": 400}).run_id
    cluster.wait_step(run_id, "t", "running")
    seen: list[str] = []
    failure: list[BaseException] = []

    def follow() -> None:
        try:
            for line in Client(cluster.addr).follow_logs(run_id):
                seen.append(f"{line.step_id}#{line.attempt} {line.level} {line.message}")
        except BaseException as e:  # noqa: BLE001 - handed to the test's thread
            failure.append(e)

    follower = threading.Thread(target=follow, daemon=True)
    follower.start()
    deadline = time.monotonic() + 30
    while len(seen) < 2:
        assert time.monotonic() < deadline, f"no lines followed: {seen}"
        time.sleep(0.02)
    # The coordinator dies mid-stream; a new one comes up on the same address.
    cluster.coordinator.signal(signal.SIGKILL)
    cluster.coordinator.popen.wait(timeout=30)
    cluster.coordinator = cluster.restart_coordinator()
    follower.join(timeout=120)
    assert not follower.is_alive(), f"follow_logs did not end with the run: {seen}"
    assert not failure, failure
    assert cluster.client.get_run(run_id).status == "succeeded"
    kept = [f"{line.step_id}#{line.attempt} {line.level} {line.message}" for line in cluster.client.step_logs(run_id)]
    assert seen == kept, (seen, kept)
    assert "t#1 info tick 9" in seen, "lines written after the restart were followed"


async def _publish_copy(cluster: Cluster, run_id: str, input_json: str) -> None:
    """A second copy of attempt 1 of step `s`, as a re-send after a lost confirm would make."""
    task = task_pb2.StepTask(
        run_id=run_id,
        step_id="s",
        attempt=1,
        handler="py.eager_probe",
        workflow="eager",
        workflow_version=1,
        input_json=input_json,
        timeout_ms=60_000,
    )
    conn = await aio_pika.connect(AMQP_URL)
    async with conn:
        channel = await conn.channel()
        steps = await channel.get_exchange(f"{cluster.namespace}.steps")
        await steps.publish(aio_pika.Message(body=task.SerializeToString()), routing_key="py.eager_probe")


def test_an_eager_worker_abandons_a_stale_copy_it_started(cluster: Cluster) -> None:
    worker = cluster.python_worker("eager", BATON_EAGER_START="true")
    worker.wait_log("(eager start)")
    cluster.client.register_workflow(flow("eager", {"id": "s", "handler": "py.eager_probe"}))
    run_id = cluster.client.submit("eager", {"ms": 50, "marker": "probe"}).run_id
    run = cluster.client.wait(run_id, timeout=60)
    assert run.status == "succeeded", run
    assert cluster.wait_file("probe-finished") == [f"{run_id} 1"]

    # The run is over: a copy of its attempt 1 is stale. The eager worker starts the handler at
    # once, then hears STALE: it cancels the handler and reports nothing.
    asyncio.run(_publish_copy(cluster, run_id, json.dumps({"ms": 5000, "marker": "probe"})))
    worker.wait_log(f"dropping {run_id}/s attempt 1: no longer current")
    assert cluster.wait_file("probe", 2) == [f"{run_id} 1 started"] * 2, "the copy's handler started eagerly"
    assert cluster.wait_file("probe-cancelled", within=4) == [f"{run_id} 1"], "and was cancelled"
    after = cluster.client.get_run(run_id)
    assert after.status == "succeeded"
    assert after.steps["s"].output == {"slept_ms": 50}
    assert len(after.steps["s"].attempts) == 1, after.steps["s"].attempts
    assert cluster.marker("probe-finished").read_text().splitlines() == [f"{run_id} 1"]
    assert "result of" not in worker.text(), "nothing was reported for the copy"


def test_an_eager_worker_reports_a_quick_handler_with_its_start_in_one_call(cluster: Cluster) -> None:
    # The longest window, so that on a loaded machine the quick handler still finishes within it.
    worker = cluster.python_worker("eager-report", BATON_EAGER_START="true", BATON_EAGER_REPORT_WINDOW="1s")
    worker.wait_log("(eager start)")
    retry = {"max_attempts": 2, "initial_interval": "10ms", "backoff_coefficient": 1, "jitter": 0}
    cluster.client.register_workflow(flow("eager-report", {"id": "a", "handler": "py.flaky", "retry": retry}))
    run_id = cluster.client.submit("eager-report", {"succeed_on_attempt": 2}).run_id
    run = cluster.client.wait(run_id, timeout=60)
    assert run.status == "succeeded", run
    assert run.output == {"a": {"attempt": 2}}
    attempts = run.steps["a"].attempts
    assert [a.outcome for a in attempts] == ["failed", "succeeded"], attempts
    # The input each attempt ran with came with its report, as StartStep would have kept it.
    assert [json.loads(a.input_json) for a in attempts] == [{"succeed_on_attempt": 2}] * 2
    assert attempts[0].error_type == "Flaky"
    worker.wait_log(f"py.flaky {run_id}/a attempt 1 failed: Flaky: attempt 1 fails (eager report)")
    worker.wait_log(f"py.flaky {run_id}/a attempt 2 succeeded (eager report)")
