"""Pure logic of the SDK, without servers: error parsing, argument checks, outcomes."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import grpc
import pytest

from baton import InvalidArgument, NonRetryableError, RetryableError, Suspend, Worker
from baton import _rpc
from baton.errors import field_paths
from baton.worker import _duration_seconds


def test_field_paths_are_read_from_an_invalid_argument_message() -> None:
    msg = "steps[2].retry.max_interval: must be at most 1day; steps[0].handler: required; and 3 more"
    assert field_paths(msg) == ["steps[2].retry.max_interval", "steps[0].handler"]
    assert field_paths('run_id: "x" is not a run id (a UUID)') == ["run_id"]
    assert field_paths("something went wrong: badly") == []
    e = InvalidArgument(grpc.StatusCode.INVALID_ARGUMENT, msg)
    assert e.field == "steps[2].retry.max_interval" and len(e.fields) == 2


def test_suspend_checks_its_arguments() -> None:
    assert Suspend("ev", "k").timeout_ms == 0
    assert Suspend("ev", "k", timedelta(minutes=1)).timeout_ms == 60_000
    assert Suspend("ev", "k", 0.0004).timeout_ms == 1
    with pytest.raises(ValueError, match="event"):
        Suspend("", "k")
    with pytest.raises(ValueError, match="timeout"):
        Suspend("ev", "k", -1)
    with pytest.raises(ValueError, match="timeout"):
        Suspend("ev", "k", 1e12)


def test_handler_errors_carry_type_and_retryability() -> None:
    assert RetryableError("x").retryable and not NonRetryableError("x", type="T").retryable
    assert str(NonRetryableError("gone", type="NotFound")) == "NotFound: gone"


def test_worker_settings_out_of_range_are_refused_with_the_setting_named() -> None:
    with pytest.raises(ValueError, match="concurrency"):
        Worker(concurrency=0)
    with pytest.raises(ValueError, match="queue_type"):
        Worker(queue_type="stream")
    with pytest.raises(ValueError, match="heartbeat_interval"):
        Worker(heartbeat_interval=0.01)
    with pytest.raises(ValueError, match="scheme"):
        Worker(coordinator="ftp://h:1")
    with pytest.raises(ValueError, match="several https:// coordinator addresses"):
        Worker(coordinator="https://a:1,https://b:1")
    with pytest.raises(ValueError, match="at most 16"):
        Worker(coordinator=",".join(["http://127.0.0.1:1"] * 17))
    assert _rpc.split_address("http://127.0.0.1:1, http://127.0.0.2:2") == ("ipv4:127.0.0.1:1,127.0.0.2:2", False)
    assert _rpc.split_address("https://h:1") == ("h:1", True)
    with pytest.raises(ValueError, match="token"):
        Worker(token="bad token\n")
    assert _duration_seconds("X", "250ms") == 0.25 and _duration_seconds("X", "2m") == 120
    with pytest.raises(ValueError, match="X="):
        _duration_seconds("X", "soon")


def test_handlers_are_checked_when_registered() -> None:
    w = Worker()

    @w.handler("a")
    async def a(x: int) -> int:
        return x

    with pytest.raises(ValueError, match="twice"):
        w.handler("a")
    with pytest.raises(ValueError, match="name"):
        w.handler("")
    with pytest.raises(TypeError, match="input"):

        @w.handler("b")
        def b() -> None: ...

    assert w.handlers["a"].is_async and not w.handlers["a"].takes_context


def test_serving_without_handlers_is_an_error() -> None:
    with pytest.raises(ValueError, match="no handlers"):
        asyncio.run(Worker().serve(asyncio.Event()))


def test_addresses_take_the_cli_forms_and_the_cli_variable_first(monkeypatch: pytest.MonkeyPatch) -> None:
    # host:port means http://host:port, as for the CLI, the Rust worker and grpcio.
    assert _rpc.split_address("127.0.0.1:7450") == ("127.0.0.1:7450", False)
    assert _rpc.split_address("http://127.0.0.1:7450/") == ("127.0.0.1:7450", False)
    assert _rpc.split_address("127.0.0.1:1,http://127.0.0.2:2") == ("ipv4:127.0.0.1:1,127.0.0.2:2", False)
    assert Worker(coordinator="127.0.0.1:7450").coordinator == "127.0.0.1:7450"
    with pytest.raises(ValueError, match="has no host"):
        _rpc.split_address("http://")
    monkeypatch.delenv("BATON_ADDR", raising=False)
    monkeypatch.delenv("BATON_COORDINATOR", raising=False)
    assert _rpc.coordinator_address(None) == "http://127.0.0.1:7450"
    monkeypatch.setenv("BATON_COORDINATOR", "b:2")
    assert _rpc.coordinator_address(None) == "b:2"
    monkeypatch.setenv("BATON_ADDR", "a:1")
    assert _rpc.coordinator_address(None) == "a:1" and Worker().coordinator == "a:1"
    assert _rpc.coordinator_address("c:3") == "c:3"
    monkeypatch.setenv("BATON_ADDR", " ")
    assert _rpc.coordinator_address("") == "b:2"


def test_an_unknown_run_status_is_refused_before_any_call() -> None:
    from baton import Client

    with Client("127.0.0.1:1") as c:
        with pytest.raises(ValueError, match=r"^status: unknown run status 'bogus'; valid statuses are pending, running, "
                           r"succeeded, failed, cancelled, timed_out$"):
            c.list_runs(status="bogus")
