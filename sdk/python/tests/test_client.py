"""The clients against a real coordinator: every call, and the errors a user meets (with the gRPC
code and the field path)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncGenerator
from pathlib import Path
from typing import Any

import grpc
import pytest
from conftest import Cluster

from baton import AlreadyExists, AsyncClient, FailedPrecondition, InvalidArgument, NotFound, Run, Unavailable

ECHO = {"name": "client-echo", "version": 1, "steps": [{"id": "e", "handler": "py.echo"}]}


def test_register_from_a_dict_and_a_file_and_read_them_back(cluster: Cluster, tmp_path: Path) -> None:
    c = cluster.client
    wf = c.register_workflow(ECHO)
    assert (wf.name, wf.version) == ("client-echo", 1)
    path = tmp_path / "two.yaml"
    path.write_text("name: client-two\nversion: 3\nsteps:\n  - id: a\n    handler: py.echo\n")
    assert c.register_workflow_file(path).version == 3
    assert c.get_workflow("client-two").version == 3
    assert {w.name for w in c.list_workflows()} >= {"client-echo", "client-two"}
    # The same name and version with other content is refused.
    with pytest.raises(AlreadyExists) as e:
        c.register_workflow({**ECHO, "description": "changed"})
    assert e.value.code == grpc.StatusCode.ALREADY_EXISTS


def test_an_invalid_definition_raises_invalid_argument_naming_the_field(cluster: Cluster) -> None:
    bad = {
        "name": "client-bad",
        "version": 1,
        "steps": [{"id": "a", "handler": "py.echo", "retry": {"max_interval": "-1s"}}],
    }
    with pytest.raises(InvalidArgument) as e:
        cluster.client.register_workflow(bad)
    assert e.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert e.value.field == "steps[0].retry.max_interval", e.value.details
    with pytest.raises(NotFound):
        cluster.client.get_workflow("no-such-workflow")


def test_submit_with_an_idempotency_key_get_list_watch(cluster: Cluster) -> None:
    cluster.python_worker(handlers=None)
    c = cluster.client
    c.register_workflow(ECHO)
    first = c.submit("client-echo", {"x": 1}, idempotency_key="order-7")
    again = c.submit("client-echo", {"x": 1}, idempotency_key="order-7")
    other = c.submit("client-echo", {"x": 2}, idempotency_key="order-7")
    assert first.created and not again.created and again.run_id == first.run_id
    assert other.run_id == first.run_id and other.input_differs
    run = c.wait(first.run_id)
    assert run.status == "succeeded" and run.input == {"x": 1}
    assert run.output["e"]["input"] == {"x": 1}
    runs, _ = c.list_runs_page("client-echo")
    assert [r.id for r in runs] == [first.run_id]
    assert [r.id for r in c.list_runs("client-echo")] == [first.run_id]
    events = list(c.watch(first.run_id))
    assert (events[-1].kind, events[-1].status) == ("run", "succeeded")
    assert any(e.kind == "step" and e.step_id == "e" and e.status == "succeeded" for e in events)
    with pytest.raises(InvalidArgument) as bad_id:
        c.get_run("no-such-run")
    assert bad_id.value.field == "run_id"
    with pytest.raises(NotFound):
        c.get_run(str(uuid.uuid4()))
    with pytest.raises(NotFound):
        c.submit("no-such-workflow", {})
    # A finished run cannot be cancelled.
    with pytest.raises(FailedPrecondition):
        c.cancel(first.run_id)


async def test_the_async_client_cancels_retries_and_reruns(cluster: Cluster) -> None:
    cluster.python_worker()
    async with AsyncClient(cluster.addr) as c:
        await c.register_workflow(
            {
                "name": "client-ops",
                "version": 1,
                "steps": [
                    {"id": "first", "handler": "py.echo"},
                    {"id": "fail", "handler": "py.fatal", "depends_on": ["first"]},
                ],
            }
        )
        run_id = (await c.submit("client-ops", {})).run_id
        run = await c.wait(run_id)
        assert run.status == "failed" and run.steps["first"].status == "succeeded"
        retried = await c.retry(run_id)
        assert list(retried.dispatched_steps) == ["fail"]
        assert (await c.wait(run_id)).steps["fail"].attempt == 2
        rerun = await c.rerun(run_id, "first")
        assert "first" in rerun.dispatched_steps
        assert (await c.wait(run_id)).steps["first"].attempt == 2
        with pytest.raises(InvalidArgument) as e:
            await c.rerun(run_id, "no-such-step")
        assert e.value.field == "from_step"
        events = [e.status async for e in c.watch(run_id) if e.kind == "run"]
        assert events.count("failed") == 3


async def test_wait_takes_the_run_from_the_stream_and_reads_it_where_the_stream_has_none(
    cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`wait` asks WatchRun for the finished run (`include_run`) and returns the stream's final
    message without a GetRun; from a stream that ends without one (a coordinator before
    `include_run`) it reads the run with GetRun. Either way the run is GetRun's answer."""
    cluster.python_worker(handlers=None)
    async with AsyncClient(cluster.addr) as c:
        await c.register_workflow({**ECHO, "name": "client-final"})
        get_run = c.get_run
        reads: list[str] = []

        async def counted_get_run(run_id: str) -> Run:
            reads.append(run_id)
            return await get_run(run_id)

        monkeypatch.setattr(c, "get_run", counted_get_run)

        first = await c.submit("client-final", {"x": 1})
        run = await c.wait(first.run_id, timeout=60)
        assert run.status == "succeeded" and run.output["e"]["input"] == {"x": 1}
        assert reads == [], "wait read the run with GetRun although the stream ended with it"
        assert run.proto == (await get_run(first.run_id)).proto

        # A coordinator that does not know `include_run` sends the same stream without the final message.
        watch_raw = c._watch_raw

        async def without_final(run_id: str, after: str, *, include_run: bool) -> AsyncGenerator[Any, None]:
            async for event in watch_raw(run_id, after, include_run=include_run):
                if event.kind != "final":
                    yield event

        monkeypatch.setattr(c, "_watch_raw", without_final)
        second = await c.submit("client-final", {"x": 2})
        run = await c.wait(second.run_id, timeout=60)
        assert run.status == "succeeded" and run.output["e"]["input"] == {"x": 2}
        assert reads == [second.run_id], reads
        assert run.proto == (await get_run(second.run_id)).proto


def test_events_human_tasks_and_schedules(cluster: Cluster) -> None:
    c = cluster.client
    c.register_workflow(
        {
            "name": "client-human",
            "version": 1,
            "steps": [
                {
                    "id": "approve",
                    "human": {
                        "title": "Approve",
                        "assignees": ["ann"],
                        "form": {
                            "type": "object",
                            "required": ["approved"],
                            "properties": {"approved": {"type": "boolean"}},
                        },
                    },
                },
                {"id": "wait", "depends_on": ["approve"], "wait_for_event": {"event": "client.go", "key": "input.k"}},
            ],
        }
    )
    run_id = c.submit("client-human", {"k": "k1"}).run_id
    cluster.wait_step(run_id, "approve", "waiting")
    tasks = c.list_human_tasks(assignee="ann", status="open")
    assert [(t.run_id, t.step_id, t.title) for t in tasks] == [(run_id, "approve", "Approve")]
    with pytest.raises(InvalidArgument) as e:
        c.complete_human_task(run_id, "approve", "ann", {"approved": "yes"})
    assert "approved" in e.value.details
    done = c.complete_human_task(run_id, "approve", "ann", {"approved": True})
    assert done.status == "completed" and done.completed_by == "ann"
    with pytest.raises(FailedPrecondition):
        c.complete_human_task(run_id, "approve", "ann", {"approved": True})
    cluster.wait_step(run_id, "wait", "waiting")
    published = c.publish_event("client.go", "k1", {"go": True})
    assert [(d.run_id, d.step_id) for d in published.delivered] == [(run_id, "wait")]
    run = c.wait(run_id)
    assert run.output == {"wait": {"go": True}}
    assert c.publish_event("client.go", "nobody-waits", {}).buffered

    s = c.create_schedule("client-human", "0 3 * * *", id="nightly", input={"k": "s"}, timezone="Europe/Paris")
    assert (s.id, s.paused) == ("nightly", False)
    assert [x.id for x in c.list_schedules("client-human")] == ["nightly"]
    assert c.pause_schedule("nightly").paused
    assert not c.resume_schedule("nightly").paused
    tick = c.trigger_schedule("nightly")
    assert tick.outcome == "triggered" and tick.run_id
    with pytest.raises(InvalidArgument) as e:
        c.create_schedule("client-human", "every tuesday")
    assert e.value.field == "cron"
    c.delete_schedule("nightly")
    with pytest.raises(NotFound):
        c.get_schedule("nightly")


def test_a_coordinator_that_cannot_be_reached_is_unavailable() -> None:
    from baton import Client
    from conftest import free_port

    with Client(f"http://127.0.0.1:{free_port()}", timeout=2) as c:
        with pytest.raises(Unavailable) as e:
            c.list_workflows()
    assert not e.value.from_coordinator
    with pytest.raises(ValueError, match="unsupported scheme"):
        Client("ftp://127.0.0.1:1")


def test_list_runs_with_a_query_counts_by_status_and_names_the_column_of_a_bad_filter(cluster: Cluster) -> None:
    cluster.python_worker(handlers=None)
    c = cluster.client
    c.register_workflow({"name": "client-query", "version": 1, "steps": [{"id": "e", "handler": "py.echo"}]})
    ids = {n: c.submit("client-query", {"n": n, "tag": "even" if n % 2 == 0 else "odd"}).run_id for n in range(5)}
    for run_id in ids.values():
        assert c.wait(run_id).status == "succeeded"
    page = c.list_runs_page(query='workflow = "client-query" AND input.tag = "even"', with_counts=True)
    assert sorted(r.id for r in page.runs) == sorted(ids[n] for n in (0, 2, 4))
    assert page.status_counts == {"succeeded": 3}
    assert not page.partial and page.partial_reason == ""
    runs, token = page  # still unpacks as (runs, next_page_token)
    assert token == "" and len(runs) == 3
    assert [r.id for r in c.list_runs(query="input.n >= 3", page_size=1)] == [ids[4], ids[3]]
    with pytest.raises(InvalidArgument) as e:
        c.list_runs_page(query="input.n >>= 3")
    assert e.value.field == "query", e.value.details
    assert "column" in e.value.details
    with pytest.raises(ValueError, match="^query: at most 4096 bytes, not 4097$"):
        c.list_runs_page(query="x" * 4097)
