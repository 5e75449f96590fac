"""The Python worker against a real coordinator, Redis and RabbitMQ: the behaviours the Rust SDK's
end-to-end tests prove, seen as a user sees them (run status, outputs, attempts, how often a
handler really ran)."""

from __future__ import annotations

import asyncio
import json
import signal
import time

import aio_pika
from baton import Client
from conftest import AMQP_URL, Cluster


def flow(name: str, *steps: dict[str, object]) -> dict[str, object]:
    return {"name": name, "version": 1, "steps": list(steps)}


def test_a_dag_with_fan_in_gets_every_parent_output(cluster: Cluster) -> None:
    cluster.python_worker()
    cluster.client.register_workflow(
        flow(
            "fan-in",
            {"id": "start", "handler": "py.inc"},
            {"id": "left", "handler": "py.inc", "depends_on": ["start"]},
            {"id": "right", "handler": "py.double", "depends_on": ["start"]},
            {"id": "join", "handler": "py.join", "depends_on": ["left", "right"]},
        )
    )
    run_id = cluster.client.submit("fan-in", {"n": 1}).run_id
    run = cluster.client.wait(run_id, timeout=60)
    assert run.status == "succeeded", run
    # start: 2; left: 3; right: 4; join: 7.
    assert run.output == {"join": {"sum": 7, "parents": ["left", "right"]}}
    assert run.steps["right"].output == {"n": 4}


def test_retryable_errors_are_retried_per_policy_with_attempt_counts(cluster: Cluster) -> None:
    cluster.python_worker()
    retry = {"max_attempts": 4, "initial_interval": "50ms", "backoff_coefficient": 1, "jitter": 0}
    cluster.client.register_workflow(flow("flaky", {"id": "f", "handler": "py.flaky", "retry": retry}))
    ok = cluster.client.submit("flaky", {"succeed_on_attempt": 3}).run_id
    bad = cluster.client.submit("flaky", {"succeed_on_attempt": 9}).run_id
    run = cluster.client.wait(ok, timeout=60)
    assert run.status == "succeeded", run
    assert run.output == {"f": {"attempt": 3}}
    assert run.steps["f"].attempt == 3
    assert [a.outcome for a in run.steps["f"].attempts] == ["failed", "failed", "succeeded"]
    assert "Flaky" in run.steps["f"].attempts[0].error
    failed = cluster.client.wait(bad, timeout=60)
    assert failed.status == "failed"
    assert failed.steps["f"].attempt == 4
    ran = [line for line in cluster.wait_file("flaky", 7) if line.startswith(bad)]
    assert len(ran) == 4


def test_a_non_retryable_error_fails_the_step_at_once(cluster: Cluster) -> None:
    cluster.python_worker()
    cluster.client.register_workflow(
        flow(
            "fatal",
            {"id": "f", "handler": "py.fatal", "retry": {"max_attempts": 5, "initial_interval": "10ms"}},
        )
    )
    cluster.client.register_workflow(flow("typed", {"id": "add", "handler": "py.add"}))
    run = cluster.client.wait(cluster.client.submit("fatal", {}).run_id, timeout=60)
    assert run.status == "failed"
    assert run.steps["f"].attempt == 1
    assert "Fatal" in run.steps["f"].error and "asked to fail for good" in run.steps["f"].error
    assert len(cluster.wait_file("fatal")) == 1

    # A typed input that does not validate is an InputError: not retried either.
    good = cluster.client.wait(cluster.client.submit("typed", {"a": 2, "b": 40}).run_id, timeout=60)
    assert good.output == {"add": {"sum": 42}}
    bad = cluster.client.wait(cluster.client.submit("typed", {"a": "two"}).run_id, timeout=60)
    assert bad.status == "failed"
    assert bad.steps["add"].attempt == 1
    assert "InvalidInput" in bad.steps["add"].error


def test_a_handler_over_its_timeout_fails_with_timeout_and_is_retried(cluster: Cluster) -> None:
    cluster.python_worker()
    cluster.client.register_workflow(
        flow(
            "slow",
            {
                "id": "s",
                "handler": "py.sleep",
                "timeout": "500ms",
                "retry": {"max_attempts": 2, "initial_interval": "10ms"},
            },
        )
    )
    run = cluster.client.wait(cluster.client.submit("slow", {"ms": 20000}).run_id, timeout=60)
    assert run.status == "failed"
    assert run.steps["s"].attempt == 2
    assert all("Timeout" in a.error for a in run.steps["s"].attempts), run.steps["s"].attempts


def test_a_python_worker_killed_mid_step_has_its_task_redelivered_and_the_run_succeeds(cluster: Cluster) -> None:
    first = cluster.python_worker("first")
    cluster.client.register_workflow(flow("killed", {"id": "s", "handler": "py.sleep", "timeout": "1m"}))
    run_id = cluster.client.submit("killed", {"ms": 2000, "marker": "kill"}).run_id
    cluster.wait_file("kill")
    first.signal(signal.SIGKILL)
    first.popen.wait(timeout=10)
    second = cluster.python_worker("second")
    run = cluster.client.wait(run_id, timeout=60)
    assert run.status == "succeeded", run
    starts = cluster.wait_file("kill", 2)
    assert len(starts) == 2
    # The same attempt, redelivered to the second worker (not a retry: the first never reported).
    assert run.steps["s"].attempt == 1
    assert run.steps["s"].output["worker"].startswith("second")
    assert second.popen.poll() is None


def publish_copy(cluster: Cluster, run_id: str, workflow: str, payload: dict[str, object]) -> None:
    """Publishes a copy of attempt 1 of step `s` (handler `py.sleep`) of `run_id`, as a re-send
    after a lost publisher confirm would."""
    from baton.v1 import task_pb2

    task = task_pb2.StepTask(
        run_id=run_id,
        step_id="s",
        attempt=1,
        handler="py.sleep",
        workflow=workflow,
        workflow_version=1,
        input_json=json.dumps(payload),
        timeout_ms=60_000,
    )

    async def publish() -> None:
        conn = await aio_pika.connect(AMQP_URL)
        async with conn:
            ch = await conn.channel()
            steps = await ch.get_exchange(f"{cluster.namespace}.steps")
            await steps.publish(aio_pika.Message(body=task.SerializeToString()), routing_key="py.sleep")

    asyncio.run(publish())


def test_a_duplicate_copy_of_a_running_task_is_acked_without_running_the_handler(cluster: Cluster) -> None:
    # One task at a time each: the copy goes to the worker that does not hold the attempt.
    workers = [cluster.python_worker(name, BATON_CONCURRENCY="1") for name in ("dup-a", "dup-b")]
    cluster.client.register_workflow(flow("dup", {"id": "s", "handler": "py.sleep", "timeout": "1m"}))
    payload = {"ms": 3000, "marker": "dup"}
    run_id = cluster.client.submit("dup", payload).run_id
    cluster.wait_file("dup")
    publish_copy(cluster, run_id, "dup", payload)
    deadline = time.monotonic() + 30
    while not any("dropping a duplicate copy" in w.text() for w in workers):
        assert time.monotonic() < deadline, "no worker dropped the copy"
        time.sleep(0.05)
    run = cluster.client.wait(run_id, timeout=60)
    assert run.status == "succeeded", run
    assert len(cluster.wait_file("dup")) == 1, "the handler ran once"
    assert len(run.steps["s"].attempts) == 1


def test_a_copy_of_an_attempt_the_same_worker_runs_is_acked_without_running_the_handler_again(
    cluster: Cluster,
) -> None:
    # A re-send after a lost confirm (as in a Redis failover) may reach the worker that runs the
    # attempt: the coordinator would let it start (the same worker starting an attempt again is
    # how a restarted worker takes its attempts back), so the worker itself drops it.
    worker = cluster.python_worker("dup-self", BATON_CONCURRENCY="2")
    cluster.client.register_workflow(flow("dup-self", {"id": "s", "handler": "py.sleep", "timeout": "1m"}))
    payload = {"ms": 3000, "marker": "dup-self"}
    run_id = cluster.client.submit("dup-self", payload).run_id
    cluster.wait_file("dup-self")
    publish_copy(cluster, run_id, "dup-self", payload)
    deadline = time.monotonic() + 30
    while "this worker is handling it" not in worker.text():
        assert time.monotonic() < deadline, "the worker did not drop the copy: " + worker.text()[-3000:]
        time.sleep(0.05)
    run = cluster.client.wait(run_id, timeout=60)
    assert run.status == "succeeded", run
    assert len(cluster.wait_file("dup-self")) == 1, "the handler ran once"
    assert len(run.steps["s"].attempts) == 1


def test_sigterm_finishes_the_step_in_flight_hands_back_the_rest_and_exits(cluster: Cluster) -> None:
    first = cluster.python_worker("draining", BATON_CONCURRENCY="1")
    cluster.client.register_workflow(flow("drain", {"id": "s", "handler": "py.sync_sleep", "timeout": "1m"}))
    running = cluster.client.submit("drain", {"ms": 1500, "marker": "drain"}).run_id
    cluster.wait_file("drain")
    waiting = cluster.client.submit("drain", {"ms": 10, "marker": "drain"}).run_id
    first.signal(signal.SIGTERM)
    assert first.popen.wait(timeout=30) == 0, first.text()[-3000:]
    done = cluster.client.get_run(running)
    assert done.status == "succeeded", done
    assert done.steps["s"].output["worker"].startswith("draining")
    # The run that was not started goes to the next worker.
    assert cluster.client.get_run(waiting).status != "succeeded"
    cluster.python_worker("next")
    later = cluster.client.wait(waiting, timeout=60)
    assert later.status == "succeeded"
    assert later.steps["s"].output["worker"].startswith("next")
    assert "stopping: waiting up to" in first.text()


def test_a_step_still_running_after_the_shutdown_grace_is_given_back_to_the_queue(cluster: Cluster) -> None:
    first = cluster.python_worker("stuck", BATON_SHUTDOWN_GRACE="500ms")
    cluster.client.register_workflow(flow("stuck", {"id": "s", "handler": "py.sync_sleep", "timeout": "5m"}))
    run_id = cluster.client.submit("stuck", {"ms": 120000, "marker": "stuck", "fast_if_marked": True}).run_id
    cluster.wait_file("stuck")
    began = time.monotonic()
    first.signal(signal.SIGTERM)
    # The blocking handler is abandoned in its thread after the grace; the worker does not wait for it.
    assert first.popen.wait(timeout=30) == 0, first.text()[-3000:]
    assert time.monotonic() - began < 20
    assert "abandoning them" in first.text()
    cluster.python_worker("rescuer")
    run = cluster.client.wait(run_id, timeout=60)
    assert run.status == "succeeded", run
    assert run.steps["s"].attempt == 1
    assert run.steps["s"].output["worker"].startswith("rescuer")


def test_a_poison_message_goes_to_the_dead_letter_queue_and_the_worker_goes_on(cluster: Cluster) -> None:
    proc = cluster.python_worker()
    ns = cluster.namespace

    async def poison_and_count() -> int:
        conn = await aio_pika.connect(AMQP_URL)
        async with conn:
            ch = await conn.channel()
            steps = await ch.get_exchange(f"{ns}.steps")
            await steps.publish(aio_pika.Message(body=b"\xff\x00 not a StepTask"), routing_key="py.echo")
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                dlq = await ch.declare_queue(f"{ns}.dead-letter", passive=True)
                count = dlq.declaration_result.message_count or 0
                if count:
                    return count
                await asyncio.sleep(0.1)
            return 0

    assert asyncio.run(poison_and_count()) == 1
    proc.wait_log("malformed step task")
    cluster.client.register_workflow(flow("after-poison", {"id": "e", "handler": "py.echo"}))
    run = cluster.client.wait(cluster.client.submit("after-poison", {"x": 1}).run_id, timeout=60)
    assert run.status == "succeeded"
    assert proc.popen.poll() is None


def test_a_result_for_a_superseded_attempt_is_answered_stale_and_changes_nothing(cluster: Cluster) -> None:
    proc = cluster.python_worker()
    # Attempt 1 sends no heartbeat, so the coordinator fails it (HeartbeatTimeout) and runs attempt
    # 2, which returns at once; attempt 1's late result is then stale.
    cluster.client.register_workflow(
        flow(
            "stale",
            {
                "id": "s",
                "handler": "py.sleep",
                "timeout": "1m",
                "heartbeat_timeout": "300ms",
                "retry": {"max_attempts": 3, "initial_interval": "10ms"},
            },
        )
    )
    run_id = cluster.client.submit("stale", {"ms": 2500, "fast_from_attempt": 2}).run_id
    run = cluster.client.wait(run_id, timeout=60)
    assert run.status == "succeeded", run
    assert run.output == {"s": {"slept_ms": 0, "attempt": 2}}
    assert "HeartbeatTimeout" in run.steps["s"].attempts[0].error
    proc.wait_log(f"result of {run_id}/s attempt 1 was stale", within=30)
    assert cluster.client.get_run(run_id).output == {"s": {"slept_ms": 0, "attempt": 2}}


def test_heartbeats_keep_a_long_step_alive_and_emitted_events_are_watched(cluster: Cluster) -> None:
    cluster.python_worker()
    cluster.client.register_workflow(
        flow("beats", {"id": "h", "handler": "py.heartbeat", "timeout": "1m", "heartbeat_timeout": "400ms"})
    )
    run_id = cluster.client.submit("beats", {"ms": 1500}).run_id
    run = cluster.client.wait(run_id, timeout=60)
    assert run.status == "succeeded", run
    assert run.steps["h"].attempt == 1
    assert run.output["h"]["beats"] >= 10
    custom = [e for e in cluster.client.watch(run_id) if e.kind == "custom"]
    assert [e.payload for e in custom] == [{"beats": run.output["h"]["beats"]}]


def test_a_suspended_handler_is_resumed_by_its_event(cluster: Cluster) -> None:
    cluster.python_worker()
    cluster.client.register_workflow(flow("suspend", {"id": "a", "handler": "py.approve"}))
    run_id = cluster.client.submit("suspend", {}).run_id
    cluster.wait_step(run_id, "a", "waiting")
    delivered = cluster.client.publish_event("approval", run_id, {"by": "ann"})
    assert [(d.run_id, d.step_id) for d in delivered.delivered] == [(run_id, "a")]
    run = cluster.client.wait(run_id, timeout=60)
    assert run.status == "succeeded", run
    assert run.output == {"a": {"approved": {"by": "ann"}}}
    assert cluster.wait_file("approve", 2) == [f"{run_id} 1 resumed=False", f"{run_id} 2 resumed=True"]


def test_a_cancelled_run_is_seen_by_its_running_handler(cluster: Cluster) -> None:
    cluster.python_worker()
    cluster.client.register_workflow(flow("cancel", {"id": "c", "handler": "py.cancellable", "timeout": "2m"}))
    run_id = cluster.client.submit("cancel", {}).run_id
    cluster.wait_file("cancellable")
    cluster.client.cancel(run_id, reason="changed my mind")
    assert cluster.wait_file("saw-cancel", within=30) == [run_id]
    run = cluster.client.get_run(run_id)
    assert run.status == "cancelled"
    assert "changed my mind" in run.error


def test_a_run_alternating_rust_and_python_workers_passes_outputs_between_them(cluster: Cluster) -> None:
    cluster.python_worker()
    cluster.rust_worker()
    cluster.client.register_workflow(
        flow(
            "mixed",
            {"id": "r1", "handler": "echo", "input": {"n": "${{ input.n }}"}},
            {"id": "p1", "handler": "py.double", "depends_on": ["r1"]},
            {"id": "r2", "handler": "echo", "depends_on": ["p1"], "input": {"n": "${{ steps.p1.output.n }}"}},
            {"id": "p2", "handler": "py.inc", "depends_on": ["r2"]},
        )
    )
    run = cluster.client.wait(cluster.client.submit("mixed", {"n": 5}).run_id, timeout=60)
    assert run.status == "succeeded", run
    assert run.steps["r1"].output == {"n": 5}
    assert run.steps["p1"].output == {"n": 10}
    assert run.steps["r2"].output == {"n": 10}
    assert run.output == {"p2": {"n": 11}}
    assert run.steps["r1"].worker.startswith("rs") and run.steps["p1"].worker.startswith("py")


def test_a_worker_with_two_coordinators_keeps_working_when_the_first_is_killed_for_good(cluster: Cluster) -> None:
    second = cluster.another_coordinator()
    # The list in BATON_COORDINATOR, BATON_ADDR's alias (BATON_ADDR itself unset).
    cluster.python_worker(BATON_ADDR="", BATON_COORDINATOR=f"{cluster.addr},{second}")
    cluster.client.register_workflow(
        flow(
            "pair",
            {"id": "a", "handler": "py.sleep"},
            {"id": "b", "handler": "py.echo", "depends_on": ["a"]},
        )
    )
    before = cluster.client.submit("pair", {"ms": 50}).run_id
    assert cluster.client.wait(before, timeout=60).status == "succeeded"
    # A run in flight when the first coordinator dies, and runs submitted to the second after.
    during = cluster.client.submit("pair", {"ms": 1500}).run_id
    cluster.wait_step(during, "a", "running")
    cluster.coordinator.signal(signal.SIGKILL)
    with Client(second) as client:
        after = [client.submit("pair", {"ms": 50, "i": i}).run_id for i in range(3)]
        for run_id in [during, *after]:
            run = client.wait(run_id, timeout=90)
            assert run.status == "succeeded", run
            assert run.steps["b"].worker.startswith("py-"), run
