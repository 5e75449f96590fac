"""Issue 19, defects 7 and 8, as a user meets them against a real coordinator: an unknown run
status is refused naming the field and the valid statuses (as the CLI does); the client, the
Python worker and the Rust worker read the CLI's `BATON_ADDR` (`BATON_COORDINATOR` is its alias)
and take `host:port` as the CLI and grpcio do; the Python worker's log says why an attempt
failed."""

from __future__ import annotations

import pytest
from conftest import Cluster, free_port

from baton import RUN_STATUSES, AsyncClient, Client, Unavailable, Worker


def flow(name: str, *steps: dict[str, object]) -> dict[str, object]:
    return {"name": name, "version": 1, "steps": list(steps)}


def host_port(cluster: Cluster) -> str:
    return f"127.0.0.1:{cluster.port}"


async def test_an_unknown_run_status_names_the_field_and_lists_the_valid_statuses(cluster: Cluster) -> None:
    cluster.python_worker()
    c = cluster.client
    c.register_workflow(flow("statuses", {"id": "f", "handler": "py.fatal"}))
    failed = c.wait(c.submit("statuses", {}).run_id, timeout=60)
    assert failed.status == "failed"

    with pytest.raises(ValueError) as e:
        c.list_runs(status="bogus")
    message = str(e.value)
    assert message.startswith("status: unknown run status 'bogus'"), message
    assert message.endswith("valid statuses are pending, running, succeeded, failed, cancelled, timed_out"), message
    assert "RUN_STATUS_BOGUS" not in message
    with pytest.raises(ValueError, match="^status: unknown run status 'done'"):
        c.list_runs_page("statuses", status="done")
    with pytest.raises(ValueError, match="^status: unknown run status ' '"):
        c.list_run_pages(status=" ")
    async with AsyncClient(cluster.addr) as a:
        with pytest.raises(ValueError, match="valid statuses are pending, running"):
            a.list_runs(status="bogus")
        assert [r.id async for r in a.list_runs("statuses", status="FAILED")] == [failed.id]

    # The words the CLI takes (any case, `-` for `_`) pass and filter.
    assert RUN_STATUSES == ("pending", "running", "succeeded", "failed", "cancelled", "timed_out")
    assert [r.id for r in c.list_runs("statuses", status="Failed")] == [failed.id]
    assert list(c.list_runs("statuses", status="timed-out")) == []
    assert list(c.list_runs("statuses", status="succeeded")) == []


def test_the_client_reads_baton_addr_then_its_alias_baton_coordinator_and_takes_host_port(
    cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    cluster.client.register_workflow(flow("addr", {"id": "e", "handler": "py.echo"}))
    dead = f"127.0.0.1:{free_port()}"

    monkeypatch.delenv("BATON_COORDINATOR", raising=False)
    monkeypatch.setenv("BATON_ADDR", host_port(cluster))
    with Client() as c:
        assert c.address == host_port(cluster)
        assert [w.name for w in c.list_workflows()] == ["addr"]

    # BATON_ADDR wins over its alias; without it, the alias is read.
    monkeypatch.setenv("BATON_COORDINATOR", f"http://{dead}")
    with Client() as c:
        assert c.address == host_port(cluster)
        assert c.get_workflow("addr").version == 1
    monkeypatch.delenv("BATON_ADDR")
    monkeypatch.setenv("BATON_COORDINATOR", host_port(cluster))
    with Client() as c:
        assert c.get_workflow("addr").version == 1

    # An address given wins over both.
    monkeypatch.setenv("BATON_ADDR", dead)
    with Client(host_port(cluster)) as c:
        assert c.get_workflow("addr").version == 1
    with Client(timeout=2) as c:
        with pytest.raises(Unavailable):
            c.list_workflows()

    # The forms the CLI refuses are refused here too, naming what is accepted.
    with pytest.raises(ValueError, match="use host:port, http://host:port or https://host:port"):
        Client("ftp://127.0.0.1:1")
    with pytest.raises(ValueError, match="has no host"):
        Worker(coordinator=":7450")


def test_python_and_rust_workers_take_host_port_from_baton_addr(cluster: Cluster) -> None:
    only_addr = {"BATON_ADDR": host_port(cluster), "BATON_COORDINATOR": ""}
    cluster.python_worker(**only_addr)
    cluster.rust_worker(**only_addr)
    cluster.client.register_workflow(
        flow(
            "host-port",
            {"id": "r", "handler": "echo", "input": {"n": "${{ input.n }}"}},
            {"id": "p", "handler": "py.inc", "depends_on": ["r"]},
        )
    )
    run = cluster.client.wait(cluster.client.submit("host-port", {"n": 1}).run_id, timeout=60)
    assert run.status == "succeeded", run
    assert run.output == {"p": {"n": 2}}
    assert run.steps["r"].worker.startswith("rs-") and run.steps["p"].worker.startswith("py-")


def test_the_rust_worker_reads_the_alias_when_baton_addr_is_unset(cluster: Cluster) -> None:
    cluster.rust_worker(BATON_ADDR="", BATON_COORDINATOR=host_port(cluster))
    cluster.client.register_workflow(flow("alias", {"id": "r", "handler": "echo"}))
    run = cluster.client.wait(cluster.client.submit("alias", {"x": 1}).run_id, timeout=60)
    assert run.status == "succeeded" and run.output == {"r": {"x": 1}}, run


def test_the_python_worker_logs_the_error_type_and_message_of_a_failed_attempt(cluster: Cluster) -> None:
    proc = cluster.python_worker()
    retry = {"max_attempts": 2, "initial_interval": "10ms", "backoff_coefficient": 1, "jitter": 0}
    cluster.client.register_workflow(flow("why", {"id": "f", "handler": "py.flaky", "retry": retry}))
    cluster.client.register_workflow(flow("boom", {"id": "b", "handler": "py.boom", "retry": retry}))
    flaky = cluster.client.submit("why", {"succeed_on_attempt": 2}).run_id
    boom = cluster.client.submit("boom", {}).run_id
    assert cluster.client.wait(flaky, timeout=60).status == "succeeded"
    assert cluster.client.wait(boom, timeout=60).status == "failed"
    proc.wait_log(f"py.flaky {flaky}/f attempt 1 failed: Flaky: attempt 1 fails")
    proc.wait_log(f"py.flaky {flaky}/f attempt 2 succeeded")
    # A plain exception: its class is the type, named once.
    proc.wait_log(f"py.boom {boom}/b attempt 2 failed: ValueError: boom on attempt 2")
    assert "ValueError: ValueError" not in proc.text()
