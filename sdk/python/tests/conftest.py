"""Fixtures of the SDK's end-to-end tests: a real coordinator (the debug binary of this checkout)
under a namespace of its own, real Redis and RabbitMQ, and Python and Rust workers as real
processes. Redis and RabbitMQ that do not answer fail the tests loudly (they are never skipped);
so do missing binaries (build them with `cargo build -p baton-coordinator -p baton-worker`).

Settings: BATON_BIN_DIR (default <repo>/target/debug), BATON_TEST_REDIS (127.0.0.1:6379),
BATON_TEST_AMQP_URL (amqp://guest:guest@127.0.0.1:5672/%2f)."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aio_pika
import grpc
import pytest

from baton import Client

REPO = Path(__file__).resolve().parents[3]
SDK = Path(__file__).resolve().parents[1]
BIN_DIR = Path(os.environ.get("BATON_BIN_DIR", REPO / "target" / "debug"))
REDIS = os.environ.get("BATON_TEST_REDIS", "127.0.0.1:6379")
AMQP_URL = os.environ.get("BATON_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2f")
LOG_DIR = Path(os.environ.get("BATON_TEST_LOG_DIR", REPO / "target" / "pytest-logs"))


def _answers(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def services() -> None:
    """Redis and RabbitMQ must answer, and the binaries must exist: fail loudly, never skip."""
    host, port = REDIS.rsplit(":", 1)
    problems = []
    if not _answers(host, int(port)):
        problems.append(f"Redis does not answer at {REDIS} (start it: ./deploy/local/services.sh)")
    if not _answers("127.0.0.1", 5672):
        problems.append("RabbitMQ does not answer at 127.0.0.1:5672 (start it: ./deploy/local/services.sh)")
    for name in ("baton-coordinator", "baton-worker"):
        if not (BIN_DIR / name).exists():
            problems.append(f"{BIN_DIR / name} is missing (cargo build -p baton-coordinator -p baton-worker)")
    if problems:
        pytest.fail("; ".join(problems), pytrace=False)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _health(addr: str) -> int:
    """The gRPC health status of the whole server at host:port (1 = SERVING), -1 when unreachable."""
    with grpc.insecure_channel(addr) as ch:
        check = ch.unary_unary("/grpc.health.v1.Health/Check", request_serializer=None, response_deserializer=None)
        try:
            answer: bytes = check(b"", timeout=1)
        except grpc.RpcError:
            return -1
    return answer[1] if len(answer) >= 2 and answer[0] == 0x08 else 0


def _redis(*args: str) -> Any:
    """One Redis command over RESP (no client library needed for the clean-up)."""
    host, port = REDIS.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=5) as s:
        out = f"*{len(args)}\r\n" + "".join(f"${len(a.encode())}\r\n{a}\r\n" for a in args)
        s.sendall(out.encode())
        f = s.makefile("rb")

        def read() -> Any:
            line = f.readline().rstrip(b"\r\n")
            kind, rest = line[:1], line[1:]
            if kind in (b"+", b"-"):
                return rest.decode()
            if kind == b":":
                return int(rest)
            if kind == b"$":
                n = int(rest)
                if n < 0:
                    return None
                data = f.read(n + 2)[:-2]
                return data.decode()
            if kind == b"*":
                return [read() for _ in range(int(rest))]
            raise RuntimeError(f"unexpected Redis answer {line!r}")

        return read()


class Proc:
    """A process with its log file."""

    def __init__(self, name: str, popen: subprocess.Popen[bytes], log: Path) -> None:
        self.name = name
        self.popen = popen
        self.log = log

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def wait_log(self, needle: str, count: int = 1, within: float = 60) -> None:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if self.text().count(needle) >= count:
                return
            if self.popen.poll() is not None:
                raise AssertionError(f"{self.name} exited with {self.popen.returncode}; log:\n{self.text()[-4000:]}")
            time.sleep(0.05)
        raise AssertionError(f"{self.name} did not log {needle!r} x{count} within {within}s; log:\n{self.text()[-4000:]}")

    def signal(self, sig: int) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(sig)

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()
        self.popen.wait(timeout=30)


class Cluster:
    """A coordinator under a fresh namespace, and helpers to start workers and wait on runs."""

    def __init__(self, test_name: str, tmp: Path, queue_type: str = "quorum") -> None:
        self.namespace = f"pysdk-{uuid.uuid4().hex[:10]}"
        self.queue_type = queue_type
        self.port = free_port()
        self.addr = f"http://127.0.0.1:{self.port}"
        self.tmp = tmp
        self.logs = LOG_DIR / f"{test_name}-{self.namespace}"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.procs: list[Proc] = []
        self.handlers: set[str] = set()
        self.coordinator = self._coordinator(self.port)
        self.client = Client(self.addr)

    def _coordinator(self, port: int) -> Proc:
        """A coordinator of this cluster's namespace listening on `port`, waited until SERVING."""
        proc = self._spawn(
            "coordinator",
            [str(BIN_DIR / "baton-coordinator")],
            {
                "BATON_LISTEN": f"127.0.0.1:{port}",
                "BATON_TIMER_POLL_INTERVAL": "50ms",
                "BATON_RETENTION": "1h",
                "RUST_LOG": "info,lapin=warn",
            },
        )
        self._wait_serving(proc, port)
        return proc

    def _wait_serving(self, proc: Proc, port: int) -> None:
        deadline = time.monotonic() + 90
        while _health(f"127.0.0.1:{port}") != 1:
            if proc.popen.poll() is not None:
                raise AssertionError(f"coordinator exited at start-up; log:\n{proc.text()[-4000:]}")
            if time.monotonic() > deadline:
                raise AssertionError("coordinator did not answer health SERVING within 90s")
            time.sleep(0.05)

    def restart_coordinator(self) -> Proc:
        """A new coordinator on the first one's address (after that one stopped), waited until
        SERVING; it replaces `self.coordinator`'s role and is stopped with the cluster."""
        return self._coordinator(self.port)

    def another_coordinator(self) -> str:
        """A second coordinator of the same namespace on a port of its own, waited until SERVING;
        returns its address. Stopped with the cluster."""
        port = free_port()
        self._coordinator(port)
        return f"http://127.0.0.1:{port}"

    def env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        """The environment of a process of this cluster: the coordinator's address in `BATON_ADDR`
        (an inherited `BATON_COORDINATOR` removed), the namespace, RabbitMQ, Redis; `extra` on
        top, where an empty value removes the variable."""
        env = dict(os.environ)
        env.pop("BATON_COORDINATOR", None)
        env.update(
            {
                "BATON_ADDR": self.addr,
                "BATON_AMQP_URL": AMQP_URL,
                "BATON_REDIS_URL": f"redis://{REDIS}",
                "BATON_NAMESPACE": self.namespace,
                "BATON_QUEUE_TYPE": self.queue_type,
                "BATON_DELIVERY_LIMIT": "5",
                "BATON_TEST_DIR": str(self.tmp),
                "PYTHONUNBUFFERED": "1",
            }
        )
        env.update(extra or {})
        return {k: v for k, v in env.items() if v != ""}

    def _spawn(self, name: str, argv: list[str], extra: dict[str, str]) -> Proc:
        log = self.logs / f"{name}-{len(self.procs)}.log"
        f = open(log, "wb")
        popen = subprocess.Popen(argv, env=self.env(extra), stdout=f, stderr=subprocess.STDOUT, cwd=SDK / "tests")
        f.close()
        proc = Proc(name, popen, log)
        self.procs.append(proc)
        return proc

    def python_worker(self, name: str = "py", handlers: list[str] | None = None, **env: str) -> Proc:
        """`python -m baton.worker workers:worker`, waited until it consumes every handler's queue."""
        extra = {"BATON_WORKER_ID": f"{name}-{len(self.procs)}", **env}
        proc = self._spawn(name, [sys.executable, "-m", "baton.worker", "workers:worker"], extra)
        from workers import worker as template

        names = handlers or sorted(template.handlers)
        self.handlers.update(names)
        for h in names:
            proc.wait_log(f"consuming {self.namespace}.step.{h} ")
        return proc

    def rust_worker(self, name: str = "rs", **env: str) -> Proc:
        """The stock Rust worker (handlers echo, sleep, fail), waited until it consumes; `env` on
        top of the cluster's environment."""
        extra = {"BATON_WORKER_ID": f"{name}-{len(self.procs)}", **env}
        proc = self._spawn(name, [str(BIN_DIR / "baton-worker")], extra)
        self.handlers.update({"echo", "sleep", "fail"})
        proc.wait_log("consuming", count=3)
        return proc

    def marker(self, name: str) -> Path:
        return self.tmp / name

    def wait_file(self, name: str, lines: int = 1, within: float = 60) -> list[str]:
        path = self.marker(name)
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if path.exists():
                got = path.read_text().splitlines()
                if len(got) >= lines:
                    return got
            time.sleep(0.05)
        raise AssertionError(f"{path} did not get {lines} lines within {within}s")

    def wait_step(self, run_id: str, step: str, status: str, within: float = 60) -> None:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            run = self.client.get_run(run_id)
            if run.steps[step].status == status:
                return
            time.sleep(0.05)
        raise AssertionError(f"step {step} of {run_id} not {status} within {within}s: {self.client.get_run(run_id)}")

    def close(self) -> None:
        try:
            # The coordinator declares a queue for every handler of a registered workflow.
            for wf in self.client.list_workflows():
                self.handlers.update(s.handler for s in wf.steps if s.handler)
        except Exception:
            pass
        try:
            self.client.close()
        finally:
            for p in reversed(self.procs):
                p.stop()
            asyncio.run(self._clean_broker())
            keys = _redis("KEYS", f"{{{self.namespace}}}:*") or []
            for i in range(0, len(keys), 500):
                _redis("DEL", *keys[i : i + 500])

    async def _clean_broker(self) -> None:
        try:
            conn = await aio_pika.connect(AMQP_URL)
        except Exception:
            return
        async with conn:
            ch = await conn.channel()
            for q in [f"{self.namespace}.step.{h}" for h in self.handlers] + [f"{self.namespace}.dead-letter"]:
                try:
                    await ch.queue_delete(q)
                except Exception:
                    ch = await conn.channel()
            for x in ("steps", "dlx", "control"):
                try:
                    await ch.exchange_delete(f"{self.namespace}.{x}")
                except Exception:
                    ch = await conn.channel()


@pytest.fixture
def cluster(services: None, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(request.node.name.replace("/", "_")[:80], tmp_path)
    try:
        yield c
    finally:
        c.close()


__all__ = ["Cluster", "Proc", "signal"]
