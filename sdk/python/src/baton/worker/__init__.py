"""The worker: handlers registered by name, and the loop that runs them per docs/worker-protocol.md:
one RabbitMQ consumer per handler (prefetch = concurrency), each delivery run as
decode → StartStep → handler → ReportResult → ack (with eager start, StartStep and the handler at
once), the handler's log lines sent with AppendLogs, a registration heartbeat, cancel notices from
the control exchange, and a graceful drain on SIGTERM."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import functools
import inspect
import json
import logging
import os
import signal
import socket
import sys
import threading
import time
import traceback
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from typing import Any, TypeVar

import aio_pika
import aio_pika.abc
import aiormq.exceptions
import grpc
import grpc.aio
import pydantic
import pydantic_core
from google.protobuf.timestamp_pb2 import Timestamp

from baton import _rpc
from baton.context import DUPLICATE, PROCEED, Context
from baton.errors import StepError, Suspend, has_source
from baton.logs import FLUSH_INTERVAL, CaptureHandler, LogBuffer, cut_details, current_context
from baton.v1 import baton_pb2 as pb
from baton.v1 import task_pb2
from baton.workflow import Workflow

__all__ = ["Worker", "WorkerStopped", "Handler"]

log = logging.getLogger("baton.worker")

F = TypeVar("F", bound=Callable[..., Any])

DEFAULT_AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/%2f"
DEFAULT_MAX_OUTPUT_BYTES = 4 * 1024 * 1024
MAX_NAME_BYTES = 200
MAX_HANDLERS = 256
MAX_WORKFLOWS = 64
"""Most workflows one worker registers at start."""
# Pause between attempts to register a workflow while the coordinator cannot take it (seconds;
# doubled each time up to the second figure).
REGISTER_PAUSE = (0.2, 5.0)
# How long a cancelled handler may go on before it is abandoned (seconds).
CANCEL_GRACE = 5.0
# How long a start is retried while the coordinator cannot be reached (seconds).
START_PATIENCE = 3.0
# How long a task whose start was refused for the token is held before it goes back (seconds).
AUTH_REFUSED_PAUSE = 5.0
# Longest failure message sent, in characters.
MAX_FAILURE_MESSAGE = 16 * 1024
# Longest failure details (a formatted traceback) sent, in UTF-8 bytes (the coordinator's bound).
MAX_FAILURE_DETAILS = 16 * 1024
PROBE_INTERVAL = 1.0
# Deadline of one coordinator call (seconds; BATON_CALL_TIMEOUT): then it moves on to the next
# coordinator, as an UNAVAILABLE answer does.
DEFAULT_CALL_TIMEOUT = 5.0
# With eager start, how long StartStep is held back for a handler to finish (an eager report), s.
DEFAULT_EAGER_REPORT_WINDOW = 0.005
RETRIABLE = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.CANCELLED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.ABORTED,
    }
)
UNREACHABLE = frozenset(
    {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.UNKNOWN, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED}
)


# Serializes any handler output (models, dataclasses, dates...) to JSON-compatible values; built once.
_ANY: pydantic.TypeAdapter[Any] = pydantic.TypeAdapter(Any)


def _sdk_version() -> str:
    try:
        return f"baton-workflows {version('baton-workflows')} (python)"
    except PackageNotFoundError:
        return "baton-workflows (python)"


def _env(name: str) -> str | None:
    v = os.environ.get(name)
    return v if v else None


def _duration_seconds(name: str, text: str) -> float:
    """`250ms`, `30s`, `5m`, `1h` or a plain number of seconds."""
    units = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
    for suffix in ("ms", "s", "m", "h"):
        if text.endswith(suffix):
            number = text[: -len(suffix)]
            break
    else:
        number, suffix = text, "s"
    try:
        value = float(number) * units[suffix]
    except ValueError:
        raise ValueError(f"{name}={text[:200]!r} is not a duration such as 250ms, 30s or 5m") from None
    if not (0 <= value <= 3650 * 86400):
        raise ValueError(f"{name}={text[:200]!r} is out of range")
    return value


def _cut(text: str, limit: int = MAX_FAILURE_MESSAGE) -> str:
    return text if len(text) <= limit else text[:limit] + "…"


def _flag(name: str, given: bool | None, default: bool = False) -> bool:
    """`given`, else the variable `name` (`true`/`1`/`yes` or `false`/`0`/`no`, any case), else
    `default`. ValueError naming the variable for another value."""
    if given is not None:
        return given
    text = _env(name)
    if text is None:
        return default
    word = text.strip().lower()
    if word in ("true", "1", "yes"):
        return True
    if word in ("false", "0", "no"):
        return False
    raise ValueError(f"{name}={text[:200]!r} is not true or false")


@dataclass
class Handler:
    """A registered handler: the function, whether it is a coroutine function, how its input is
    validated, and whether it takes a context."""

    name: str
    fn: Callable[..., Any]
    is_async: bool
    adapter: pydantic.TypeAdapter[Any]
    takes_context: bool


@dataclass
class _Outcome:
    output_json: str | None = None
    failure: pb.StepFailure | None = None
    suspend: pb.Suspend | None = None

    def word(self) -> str:
        return "succeeded" if self.output_json is not None else "suspended" if self.suspend else "failed"


def _type_and_message(failure: pb.StepFailure) -> tuple[str, str]:
    """`(error type, message)` for the log line "attempt N failed: <type>: <message>" (the
    message cut to 1 KiB, without the type again when it already starts with it)."""
    error_type = failure.error_type or "Error"
    message = failure.message.removeprefix(f"{error_type}: ")
    return error_type, _cut(message, 1024)


def _failure(message: str, error_type: str, retryable: bool, details: str = "") -> _Outcome:
    return _Outcome(
        failure=pb.StepFailure(
            message=_cut(message),
            error_type=error_type,
            retryable=retryable,
            details=cut_details(details, MAX_FAILURE_DETAILS),
        )
    )


def _traceback(e: BaseException) -> str:
    """`e`'s formatted traceback (`Traceback (most recent call last): ...`), as `details`."""
    return "".join(traceback.format_exception(type(e), e, e.__traceback__))


@dataclass
class _State:
    """What one `serve` call shares between its tasks."""

    stop: asyncio.Event
    stopping: asyncio.Event = field(default_factory=asyncio.Event)
    checked: asyncio.Event = field(default_factory=asyncio.Event)
    up: asyncio.Event = field(default_factory=asyncio.Event)
    down: asyncio.Event = field(default_factory=asyncio.Event)
    fatal: str | None = None
    # Set by `serve` as it ends its background tasks.
    closed: bool = False
    in_flight: dict[str, int] = field(default_factory=dict)
    tasks: set[asyncio.Task[Any]] = field(default_factory=set)
    contexts: dict[str, set[Context]] = field(default_factory=dict)
    # The attempts being handled, (run, step, attempt), from delivery to ack or hand-back.
    attempts: set[tuple[str, str, int]] = field(default_factory=set)


class Worker:
    """A Baton worker. Settings default to the environment variables of the Rust worker
    (`BATON_ADDR` or its alias `BATON_COORDINATOR`: `host:port`, `http://host:port`,
    `https://host:port` or a comma-separated list; `BATON_AMQP_URL`, `BATON_NAMESPACE`, `BATON_TOKEN`, `BATON_CONCURRENCY`,
    `BATON_QUEUE_TYPE`, `BATON_DELIVERY_LIMIT`, `BATON_WORKER_ID`, `BATON_HEARTBEAT_INTERVAL`,
    `BATON_SHUTDOWN_GRACE`, `BATON_CALL_TIMEOUT`, `BATON_MAX_PAYLOAD_BYTES`, `BATON_CA_FILE`, `BATON_CLIENT_CERT`,
    `BATON_CLIENT_KEY`, `BATON_EAGER_START`, `BATON_EAGER_REPORT_WINDOW`, `BATON_CAPTURE_LOGGING`);
    arguments override them.
    Durations are seconds.

    `eager_start` (`BATON_EAGER_START`, default false): send StartStep and start the handler at
    once instead of after the start's answer; the result is reported only after the answer said
    PROCEED, and any other answer (stale, cancelled, a duplicate another worker runs) abandons the
    work: the handler is cancelled (a sync handler's `ctx.cancelled` is set) and nothing is
    reported. Saves a round trip per step, but a handler may begin work for a copy the coordinator
    refuses: only for handlers idempotent by `ctx.attempt_key`.

    `eager_report_window` (`BATON_EAGER_REPORT_WINDOW`, seconds, 0 to 1, default 0.005): with eager
    start, how long StartStep is held back. A handler that finishes within it with an output or a
    failure, and logged nothing, is started and reported in one ReportResult (`start` set: one call
    and one Redis round trip instead of two each); a longer one sends StartStep at the window's end.
    0 sends StartStep at once. See docs/worker-protocol.md, "Eager report".

    `capture_logging` (`BATON_CAPTURE_LOGGING`, default false): copy what a handler logs with the
    stdlib `logging` (records of its task or thread at the root logger's level; not the SDK's own
    `baton.*`) into the step's log, as `ctx.log` would.

        worker = Worker(coordinator="http://127.0.0.1:7450", namespace="baton")

        @worker.handler("docs.analyze")
        async def analyze(doc: Document, ctx: Context) -> Analysis: ...

        worker.run()        # until SIGTERM or Ctrl-C

    `workflows` (see `include`) are served and registered with the coordinator at start.
    Raises ValueError naming the setting when one is out of range.
    """

    def __init__(
        self,
        coordinator: str | None = None,
        namespace: str | None = None,
        token: str | None = None,
        *,
        amqp_url: str | None = None,
        concurrency: int | None = None,
        queue_type: str | None = None,
        delivery_limit: int | None = None,
        worker_id: str | None = None,
        heartbeat_interval: float | None = None,
        shutdown_grace: float | None = None,
        call_timeout: float | None = None,
        max_output_bytes: int | None = None,
        tls: _rpc.Tls | None = None,
        threads: int | None = None,
        workflows: Sequence[Workflow] = (),
        eager_start: bool | None = None,
        capture_logging: bool | None = None,
        eager_report_window: float | None = None,
    ) -> None:
        self.coordinator = _rpc.coordinator_address(coordinator)
        _rpc.split_address(self.coordinator)
        self.namespace = namespace or _env("BATON_NAMESPACE") or "baton"
        self.token = token if token is not None else _env("BATON_TOKEN")
        self._metadata = _rpc.bearer_metadata(self.token)
        self.amqp_url = amqp_url or _env("BATON_AMQP_URL") or DEFAULT_AMQP_URL
        self.concurrency = concurrency if concurrency is not None else int(_env("BATON_CONCURRENCY") or 16)
        if not 1 <= self.concurrency <= 65535:
            raise ValueError(f"concurrency must be from 1 to 65535, not {self.concurrency}")
        self.queue_type = queue_type or _env("BATON_QUEUE_TYPE") or "quorum"
        if self.queue_type not in ("quorum", "classic"):
            raise ValueError(f"queue_type must be quorum or classic, not {self.queue_type[:200]!r}")
        self.delivery_limit = delivery_limit if delivery_limit is not None else int(_env("BATON_DELIVERY_LIMIT") or 5)
        if not 0 <= self.delivery_limit <= 2**31 - 1:
            raise ValueError(f"delivery_limit must be from 0 to 2147483647, not {self.delivery_limit}")
        host = socket.gethostname() or "worker"
        self.worker_id = worker_id or _env("BATON_WORKER_ID") or f"{host}-{os.getpid()}"
        if len(self.worker_id.encode()) > MAX_NAME_BYTES:
            raise ValueError(f"worker_id must be at most {MAX_NAME_BYTES} bytes")
        hb = _env("BATON_HEARTBEAT_INTERVAL")
        self.heartbeat_interval = (
            heartbeat_interval
            if heartbeat_interval is not None
            else (_duration_seconds("BATON_HEARTBEAT_INTERVAL", hb) if hb else 1.0)
        )
        if not 0.1 <= self.heartbeat_interval <= 300:
            raise ValueError(f"heartbeat_interval must be from 0.1 to 300 seconds, not {self.heartbeat_interval}")
        grace = _env("BATON_SHUTDOWN_GRACE")
        self.shutdown_grace = (
            shutdown_grace
            if shutdown_grace is not None
            else (_duration_seconds("BATON_SHUTDOWN_GRACE", grace) if grace else 30.0)
        )
        self.max_output_bytes = (
            max_output_bytes
            if max_output_bytes is not None
            else int(_env("BATON_MAX_PAYLOAD_BYTES") or DEFAULT_MAX_OUTPUT_BYTES)
        )
        if self.max_output_bytes <= 0:
            raise ValueError("max_output_bytes must be positive")
        self.tls = tls or _rpc.Tls.from_env()
        deadline = _env("BATON_CALL_TIMEOUT")
        self.call_timeout = (
            call_timeout
            if call_timeout is not None
            else (_duration_seconds("BATON_CALL_TIMEOUT", deadline) if deadline else DEFAULT_CALL_TIMEOUT)
        )
        if not 0.1 <= self.call_timeout <= 300:
            raise ValueError(f"call_timeout must be from 0.1 to 300 seconds, not {self.call_timeout}")
        self.report_patience = 300.0
        self.eager_start = _flag("BATON_EAGER_START", eager_start)
        window = _env("BATON_EAGER_REPORT_WINDOW")
        self.eager_report_window = (
            eager_report_window
            if eager_report_window is not None
            else (_duration_seconds("BATON_EAGER_REPORT_WINDOW", window) if window else DEFAULT_EAGER_REPORT_WINDOW)
        )
        if not 0 <= self.eager_report_window <= 1:
            raise ValueError(f"eager_report_window must be from 0 to 1 second, not {self.eager_report_window}")
        self.capture_logging = _flag("BATON_CAPTURE_LOGGING", capture_logging)
        self.threads = threads or min(64, self.concurrency * 2)
        self.handlers: dict[str, Handler] = {}
        self.workflows: list[Workflow] = []
        self._state: _State | None = None
        self._tags: dict[str, str] = {}
        for wf in workflows:
            self.include(wf)

    def include(self, workflow: Workflow, *, register: bool = True) -> None:
        """Serves the handlers of `workflow`'s `@wf.step` functions and, with `register`,
        registers its definition with the coordinator when the worker starts (before it takes
        tasks), as `baton workflow apply` would: the same document again is fine; a definition
        the coordinator refuses (InvalidArgument naming the field, AlreadyExists for another
        document under the same name and version) or a token without the `operator` or `admin`
        role stops the worker with one line saying so. ValueError when a handler is already
        registered or there are more than 64 workflows."""
        if len(self.workflows) >= MAX_WORKFLOWS:
            raise ValueError(f"workflows: at most {MAX_WORKFLOWS} per worker")
        workflow.definition()  # a workflow without steps is refused here, not at start
        for name, fn in workflow.handlers.items():
            self.handler(name)(fn)
        if register:
            self.workflows.append(workflow)

    # ------------------------------------------------------------------ registration of handlers

    def handler(self, name: str) -> Callable[[F], F]:
        """Registers the decorated function as the handler `name`. It may be `async def` or a plain
        function (run in a thread pool), and takes the step input, validated as the first
        parameter's annotation (a pydantic model, a dataclass, any type pydantic validates; no
        annotation: the raw JSON value), and optionally a `Context` as second parameter. A validation
        failure fails the step without retry (`InvalidInput`). Its return value (anything pydantic
        serializes to JSON) becomes the step's output."""
        if not name or len(name.encode()) > MAX_NAME_BYTES:
            raise ValueError(f"handler name must be 1 to {MAX_NAME_BYTES} bytes")
        if name in self.handlers:
            raise ValueError(f"handler {name!r} is registered twice")
        if len(self.handlers) >= MAX_HANDLERS:
            raise ValueError(f"at most {MAX_HANDLERS} handlers per worker")

        def register(fn: F) -> F:
            params = list(inspect.signature(fn).parameters.values())
            if not 1 <= len(params) <= 2:
                raise TypeError(f"handler {name!r} must take (input) or (input, ctx)")
            try:
                hints = typing.get_type_hints(fn)
            except Exception:  # an annotation that does not resolve: read the raw one
                hints = {}
            annotation = hints.get(params[0].name, params[0].annotation)
            if annotation is inspect.Parameter.empty or isinstance(annotation, str):
                annotation = Any
            self.handlers[name] = Handler(
                name=name,
                fn=fn,
                is_async=inspect.iscoroutinefunction(fn),
                adapter=pydantic.TypeAdapter(annotation),
                takes_context=len(params) == 2,
            )
            return fn

        return register

    # ------------------------------------------------------------------ running

    def run(self) -> None:
        """Runs until SIGTERM or SIGINT, then drains (see `serve`). Raises SystemExit(1) with one
        line when the worker cannot serve (settings that differ from the coordinator's, a refused
        token)."""
        logging.basicConfig(
            level=os.environ.get("BATON_LOG", "INFO").upper(),
            format="%(asctime)s %(levelname)s %(name)s %(message)s",
        )

        async def main() -> None:
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, stop.set)
            await self.serve(stop)

        code = 0
        try:
            asyncio.run(main())
        except WorkerStopped as e:
            print(f"error: {e}", file=sys.stderr)
            code = 1
        # A sync handler abandoned after its timeout or the shutdown grace still runs in its thread,
        # and the interpreter would wait for it at exit: exit without waiting.
        deadline = time.monotonic() + 1
        for t in threading.enumerate():
            if t.name.startswith("baton-handler") and t.is_alive():
                t.join(timeout=max(0.0, deadline - time.monotonic()))
        if any(t.name.startswith("baton-handler") and t.is_alive() for t in threading.enumerate()):
            log.warning("exiting with sync handlers still running in their threads (abandoned)")
            logging.shutdown()
            os._exit(code)
        if code:
            raise SystemExit(code)

    async def serve(self, stop: asyncio.Event) -> None:
        """Consumes until `stop` is set; then stops consuming, hands back the tasks not started,
        gives the running handlers `shutdown_grace` seconds to finish and report, abandons the rest
        (their tasks go back to the queue when the connection closes), says STOPPED to the
        coordinator and returns. Raises WorkerStopped when the worker cannot serve."""
        if not self.handlers:
            raise ValueError("no handlers registered")
        loop = asyncio.get_running_loop()
        state = _State(stop=stop, in_flight={h: 0 for h in self.handlers})
        self._state = state
        self._loop = loop
        self._pool = concurrent.futures.ThreadPoolExecutor(self.threads, thread_name_prefix="baton-handler")
        self._started_at = time.time()
        self._coordinators = _rpc.Coordinators(self.coordinator, self.tls, self.max_output_bytes + 64 * 1024)
        md, deadline = self._metadata, self.call_timeout
        self._start = _rpc.FailoverUnary[pb.StartStepRequest, pb.StartStepResponse](
            self._coordinators, "/baton.v1.WorkerService/StartStep", pb.StartStepResponse, md, deadline
        )
        self._report = _rpc.FailoverUnary[pb.ReportResultRequest, pb.ReportResultResponse](
            self._coordinators, "/baton.v1.WorkerService/ReportResult", pb.ReportResultResponse, md, deadline
        )
        self._heartbeat = _rpc.FailoverUnary[pb.HeartbeatRequest, pb.HeartbeatResponse](
            self._coordinators, "/baton.v1.WorkerService/Heartbeat", pb.HeartbeatResponse, md, deadline
        )
        self._emit = _rpc.FailoverUnary[pb.EmitEventRequest, pb.HeartbeatResponse](
            self._coordinators, "/baton.v1.WorkerService/EmitEvent", pb.HeartbeatResponse, md, deadline
        )
        self._register = _rpc.FailoverUnary[pb.RegisterWorkerRequest, pb.RegisterWorkerResponse](
            self._coordinators, "/baton.v1.WorkerService/RegisterWorker", pb.RegisterWorkerResponse, md, deadline
        )
        self._append_logs = _rpc.FailoverUnary[pb.AppendLogsRequest, pb.AppendLogsResponse](
            self._coordinators, "/baton.v1.WorkerService/AppendLogs", pb.AppendLogsResponse, md, deadline
        )
        self._logs_unimplemented = False
        capture = CaptureHandler() if self.capture_logging else None
        if capture is not None:
            logging.getLogger().addHandler(capture)
        self._health: list[grpc.aio.UnaryUnaryMultiCallable[bytes, bytes]] = [
            ch.unary_unary("/grpc.health.v1.Health/Check", request_serializer=None, response_deserializer=None)
            for ch in self._coordinators.channels
        ]
        log.info(
            "worker %s starting, handlers %s%s",
            self.worker_id,
            sorted(self.handlers),
            " (eager start)" if self.eager_start else "",
        )
        background = [
            asyncio.create_task(self._registration(state)),
            asyncio.create_task(self._probe(state)),
        ]
        connection: aio_pika.abc.AbstractRobustConnection | None = None
        consumers: list[tuple[aio_pika.abc.AbstractQueue, asyncio.Task[None]]] = []
        fatal_wait = asyncio.create_task(stop.wait())
        try:
            # Declare nothing before the coordinator confirmed the queue settings.
            checked = asyncio.create_task(state.checked.wait())
            await asyncio.wait({checked, fatal_wait}, return_when=asyncio.FIRST_COMPLETED)
            checked.cancel()
            if not stop.is_set() and self.workflows:
                await self._register_workflows(state)
            if not stop.is_set():
                connection = await aio_pika.connect_robust(
                    self.amqp_url, client_properties={"connection_name": f"baton-worker {self.worker_id}"}
                )
                try:
                    background.append(asyncio.create_task(self._watch_cancellations(connection, state)))
                    for name, handler in self.handlers.items():
                        channel = await connection.channel()
                        await channel.set_qos(prefetch_count=self.concurrency)
                        queue = await self._declare(channel, name)
                        consumers.append(
                            (queue, asyncio.create_task(self._consume(queue, name, handler, state)))
                        )
                except aiormq.exceptions.ChannelPreconditionFailed as e:
                    self._fail(
                        state,
                        "worker settings do not match the coordinator's queues: RabbitMQ refused a queue "
                        f"declare ({e}); set BATON_QUEUE_TYPE / BATON_DELIVERY_LIMIT to the coordinator's; exiting",
                    )
                await stop.wait()
        finally:
            state.stopping.set()
            for _, task in consumers:
                task.cancel()
            for queue, _ in consumers:
                await self._cancel_consumer(queue)
            pending = [t for t in state.tasks if not t.done()]
            if pending:
                log.info("stopping: waiting up to %.1fs for %d steps in flight", self.shutdown_grace, len(pending))
                _, still = await asyncio.wait(pending, timeout=self.shutdown_grace)
                if still:
                    log.warning(
                        "%d steps still running after the shutdown grace; abandoning them (their tasks go back to the queue)",
                        len(still),
                    )
                    for t in still:
                        t.cancel()
                    await asyncio.wait(still, timeout=5)
            if connection is not None:
                try:
                    await asyncio.wait_for(connection.close(), timeout=5)
                except Exception as e:  # best effort: the broker drops the connection anyway
                    log.debug("closing the AMQP connection: %s", e)
            state.closed = True
            for t in background:
                t.cancel()
            await asyncio.gather(*background, return_exceptions=True)
            fatal_wait.cancel()
            if state.fatal is None:
                try:
                    await self._register(self._registration_request(state, pb.WORKER_STATE_STOPPED), timeout=2)
                except grpc.aio.AioRpcError:
                    pass
            await self._coordinators.close()
            self._pool.shutdown(wait=False, cancel_futures=True)
            if capture is not None:
                logging.getLogger().removeHandler(capture)
            log.info("worker %s stopped", self.worker_id)
        if state.fatal is not None:
            raise WorkerStopped(state.fatal)

    async def _register_workflows(self, state: _State) -> None:
        """Registers every included workflow, retrying while the coordinator cannot be reached or
        answers UNAVAILABLE; a refusal stops the worker (see `include`)."""
        call = _rpc.FailoverUnary[pb.RegisterWorkflowRequest, pb.RegisterWorkflowResponse](
            self._coordinators,
            "/baton.v1.WorkflowService/RegisterWorkflow",
            pb.RegisterWorkflowResponse,
            self._metadata,
            self.call_timeout,
        )
        for wf in self.workflows:
            req = pb.RegisterWorkflowRequest(definition=json.dumps(wf.definition()))
            pause = REGISTER_PAUSE[0]
            while not state.stop.is_set():
                try:
                    answer = await call(req)
                except grpc.aio.AioRpcError as e:
                    code = e.code()
                    if code in (grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNAUTHENTICATED):
                        self._fail(
                            state,
                            f"the coordinator refused to register workflow {wf.name!r} ({code.name}: {e.details()}): "
                            "registering needs a token of role operator or admin; give the worker one, or register "
                            "the workflow with `baton workflow apply` and include it with register=False; exiting",
                        )
                        return
                    if code not in RETRIABLE:
                        self._fail(
                            state,
                            f"the coordinator refused workflow {wf.name!r} version {wf.version} "
                            f"({code.name}: {e.details()}); exiting",
                        )
                        return
                    log.warning("could not register workflow %s (%s); retrying in %.1fs", wf.name, e.details(), pause)
                    await asyncio.sleep(pause)
                    pause = min(pause * 2, REGISTER_PAUSE[1])
                    continue
                log.info("registered workflow %s version %d", answer.workflow.name, answer.workflow.version)
                break

    def _fail(self, state: _State, line: str) -> None:
        if state.fatal is None:
            state.fatal = line
            log.error("%s", line)
        state.stop.set()

    async def _declare(self, channel: aio_pika.abc.AbstractChannel, handler: str) -> aio_pika.abc.AbstractQueue:
        """Declares the base topology and the queue of `handler` (docs/worker-protocol.md, section 2)."""
        ns = self.namespace
        steps = await channel.declare_exchange(f"{ns}.steps", aio_pika.ExchangeType.DIRECT, durable=True)
        dlx = await channel.declare_exchange(f"{ns}.dlx", aio_pika.ExchangeType.FANOUT, durable=True)
        await channel.declare_exchange(f"{ns}.control", aio_pika.ExchangeType.FANOUT, durable=True)
        quorum = self.queue_type == "quorum"
        dlq = await channel.declare_queue(
            f"{ns}.dead-letter", durable=True, arguments={"x-queue-type": "quorum"} if quorum else None
        )
        await dlq.bind(dlx, routing_key="")
        args: dict[str, Any] = {"x-dead-letter-exchange": f"{ns}.dlx"}
        if quorum:
            args["x-queue-type"] = "quorum"
            args["x-delivery-limit"] = self.delivery_limit
        queue = await channel.declare_queue(f"{ns}.step.{handler}", durable=True, arguments=args)
        await queue.bind(steps, routing_key=handler)
        return queue

    async def _cancel_consumer(self, queue: aio_pika.abc.AbstractQueue) -> None:
        tag = self._tags.pop(queue.name, None)
        if tag is None:
            return
        try:
            await asyncio.wait_for(queue.cancel(tag), timeout=5)
        except Exception as e:
            log.debug("cancelling consumer of %s: %s", queue.name, e)

    async def _consume(self, queue: aio_pika.abc.AbstractQueue, name: str, handler: Handler, state: _State) -> None:
        """Consumes `queue` while the coordinator answers; pauses (cancels the consumer) while it
        does not. Runs until cancelled."""
        async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            task = asyncio.current_task()
            assert task is not None
            state.tasks.add(task)
            state.in_flight[name] += 1
            try:
                await self._handle(message, name, handler, state)
            finally:
                state.in_flight[name] -= 1
                state.tasks.discard(task)

        while not state.stopping.is_set():
            await state.up.wait()
            if state.stopping.is_set():
                return
            tag = await queue.consume(on_message, consumer_tag=f"{self.worker_id}:{name}")
            self._tags[queue.name] = tag
            log.info("consuming %s (prefetch %d)", queue.name, self.concurrency)
            await state.down.wait()
            if state.stopping.is_set():
                return
            log.warning("coordinator unreachable: stopped consuming %s until it answers", queue.name)
            await self._cancel_consumer(queue)

    # ------------------------------------------------------------------ one delivery

    async def _handle(
        self, message: aio_pika.abc.AbstractIncomingMessage, name: str, handler: Handler, state: _State
    ) -> None:
        try:
            task = task_pb2.StepTask.FromString(message.body)
            valid = bool(task.run_id) and bool(task.step_id) and task.attempt > 0
        except Exception:
            valid = False
        if not valid:
            log.error("malformed step task (%d bytes) on %s; sending it to the dead-letter queue", len(message.body), name)
            await message.reject(requeue=False)
            return
        if state.stopping.is_set() or not state.up.is_set():
            await message.nack(requeue=True)
            return
        # A second copy of an attempt this worker is handling (a dispatch the coordinator sent
        # again because RabbitMQ's confirm of the first was lost, as in a Redis failover): the
        # coordinator would let it start (the same worker starting an attempt again is how a
        # restarted worker takes its attempts back) and the handler would run twice. The copy in
        # hand reports; if it cannot, the attempt's timeout sends the attempt again. So this one
        # is dropped.
        key = (task.run_id, task.step_id, task.attempt)
        if key in state.attempts:
            log.info(
                "dropping a duplicate copy of %s/%s attempt %d: this worker is handling it",
                task.run_id,
                task.step_id,
                task.attempt,
            )
            await message.ack()
            return
        state.attempts.add(key)
        try:
            await self._handle_attempt(message, name, handler, state, task)
        finally:
            state.attempts.discard(key)

    async def _handle_attempt(
        self,
        message: aio_pika.abc.AbstractIncomingMessage,
        name: str,
        handler: Handler,
        state: _State,
        task: task_pb2.StepTask,
    ) -> None:
        """One attempt of `task`, claimed by `_handle`: StartStep, the handler, ReportResult, ack."""
        start = pb.StartStepRequest(
            run_id=task.run_id,
            step_id=task.step_id,
            attempt=task.attempt,
            worker_id=self.worker_id,
            workflow=task.workflow,
            workflow_version=task.workflow_version,
            input_json=task.input_json,
        )
        wake = asyncio.Event()
        loop = self._loop

        def wake_flusher() -> None:
            # From any thread; a sync handler abandoned past the loop's end finds it closed.
            try:
                loop.call_soon_threadsafe(wake.set)
            except RuntimeError:
                pass

        logs = LogBuffer(wake_flusher)
        ctx = self._context(task, logs)
        contexts = state.contexts.setdefault(task.run_id, set())
        contexts.add(ctx)
        flushed = asyncio.Event()
        flusher = asyncio.create_task(self._log_flusher(task, ctx, logs, wake, flushed))
        try:
            ran = await self._start_and_run(message, handler, state, task, start, ctx, logs)
            if ran is None:
                return
            outcome, eager_report = ran
            # The last lines go before the result (bounded: the report does not wait for ever).
            flushed.set()
            wake.set()
            try:
                await asyncio.wait_for(asyncio.shield(flusher), timeout=2 * self.call_timeout)
            except asyncio.TimeoutError:
                log.warning("could not send the last log lines of %s/%s in time", task.run_id, task.step_id)
            except Exception as e:  # the logs never keep a result from being reported
                log.warning("sending the log lines of %s/%s failed: %s", task.run_id, task.step_id, e)
        finally:
            logs.close()
            flusher.cancel()
            contexts.discard(ctx)
            if not contexts:
                state.contexts.pop(task.run_id, None)
        if outcome.failure is not None:
            log.info(
                "%s %s/%s attempt %d failed: %s: %s%s",
                name,
                task.run_id,
                task.step_id,
                task.attempt,
                *_type_and_message(outcome.failure),
                " (eager report)" if eager_report else "",
            )
        else:
            log.info(
                "%s %s/%s attempt %d %s%s",
                name,
                task.run_id,
                task.step_id,
                task.attempt,
                outcome.word(),
                " (eager report)" if eager_report else "",
            )
        report = pb.ReportResultRequest(
            run_id=task.run_id,
            step_id=task.step_id,
            attempt=task.attempt,
            worker_id=self.worker_id,
            workflow=task.workflow,
            workflow_version=task.workflow_version,
            attempt_base=task.attempt_base,
        )
        if eager_report:
            report.start = True
            report.input_json = task.input_json
        if outcome.output_json is not None:
            report.output_json = outcome.output_json
        elif outcome.suspend is not None:
            report.suspend.CopyFrom(outcome.suspend)
        else:
            assert outcome.failure is not None
            report.failure.CopyFrom(outcome.failure)
        try:
            answer = await self._send_report(report)
        except grpc.aio.AioRpcError as e:
            if e.code() in RETRIABLE:
                log.error("could not report %s/%s (%s); handing the task back", task.run_id, task.step_id, e.details())
                await message.nack(requeue=True)
                return
            refused = _refused_outcome(outcome, e)
            answer = None
            if refused is not None:
                log.warning("the coordinator refused the result of %s/%s: failing it as %s", task.run_id, task.step_id, refused.error_type)
                report.failure.CopyFrom(refused)
                try:
                    answer = await self._send_report(report)
                except grpc.aio.AioRpcError as e2:
                    if e2.code() in RETRIABLE:
                        await message.nack(requeue=True)
                        return
            if answer is None:
                log.error("the coordinator refused the result of %s/%s (%s); dropping the task", task.run_id, task.step_id, e.details())
        if answer is not None and answer.disposition == DUPLICATE:
            # Only an eager report's (its start's answer): another live worker holds the attempt.
            log.info(
                "dropping a duplicate copy of %s/%s attempt %d: another live worker runs it",
                task.run_id,
                task.step_id,
                task.attempt,
            )
        elif answer is not None and answer.disposition != PROCEED:
            log.info("result of %s/%s attempt %d was stale", task.run_id, task.step_id, task.attempt)
        await message.ack()

    async def _start_and_run(
        self,
        message: aio_pika.abc.AbstractIncomingMessage,
        handler: Handler,
        state: _State,
        task: task_pb2.StepTask,
        start: pb.StartStepRequest,
        ctx: Context,
        logs: LogBuffer,
    ) -> tuple[_Outcome, bool] | None:
        """StartStep, then the handler (with eager start, both at once); the outcome to report and
        whether it is an eager report (no StartStep was sent: the report carries the start), or
        None when the delivery was settled here (handed back, or dropped as not current) and
        nothing is to be reported. Any answer but PROCEED abandons an eager handler: it is
        cancelled (its `ctx.cancelled` set) and its outcome dropped."""
        running: asyncio.Task[_Outcome] | None = None
        if self.eager_start:
            running = asyncio.create_task(self._supervise(handler, ctx))
            if self.eager_report_window > 0:
                # An eager report: a handler done within the window with an output or a failure,
                # that logged nothing (lines are kept only for a started attempt), is started and
                # reported in one call.
                try:
                    await asyncio.wait({running}, timeout=self.eager_report_window)
                except asyncio.CancelledError:
                    running.cancel()
                    raise
                if running.done() and not running.cancelled() and running.exception() is None:
                    quick = running.result()
                    if quick.suspend is None and len(logs) == 0 and logs.dropped == 0:
                        ctx._set_started(True)
                        return quick, True

        def abandon(why: str) -> None:
            ctx._set_started(False)
            if running is not None and not running.done():
                log.debug("abandoning the handler of %s/%s attempt %d: %s", task.run_id, task.step_id, task.attempt, why)
                running.cancel()

        starting = asyncio.create_task(self._start_step(start, state))
        stopping = asyncio.create_task(state.stopping.wait())
        try:
            await asyncio.wait({starting, stopping}, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            starting.cancel()
            abandon("the worker is stopping")
            raise
        finally:
            stopping.cancel()
        if not starting.done():
            starting.cancel()
            abandon("shutting down")
            log.info("shutting down before %s/%s started; handing the task back", task.run_id, task.step_id)
            await message.nack(requeue=True)
            return None
        try:
            disposition = starting.result().disposition
        except grpc.aio.AioRpcError as e:
            abandon("the start failed")
            if e.code() in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED):
                log.error(
                    "the coordinator refused this worker's token (%s); set BATON_TOKEN to a token of role worker; handing the task back",
                    e.code().name,
                )
                try:
                    await asyncio.wait_for(state.stopping.wait(), timeout=AUTH_REFUSED_PAUSE)
                except asyncio.TimeoutError:
                    pass
            else:
                log.error("could not start %s/%s (%s); handing the task back", task.run_id, task.step_id, e.details())
            await message.nack(requeue=True)
            return None
        if disposition == DUPLICATE:
            abandon("duplicate")
            log.info(
                "dropping a duplicate copy of %s/%s attempt %d: another live worker runs it",
                task.run_id,
                task.step_id,
                task.attempt,
            )
            await message.ack()
            return None
        if disposition != PROCEED:
            abandon("not current")
            log.info("dropping %s/%s attempt %d: no longer current", task.run_id, task.step_id, task.attempt)
            await message.ack()
            return None
        ctx._set_started(True)
        if running is None:
            running = asyncio.create_task(self._supervise(handler, ctx))
        try:
            return await running, False
        except asyncio.CancelledError:
            running.cancel()
            raise

    async def _log_flusher(
        self, task: task_pb2.StepTask, ctx: Context, logs: LogBuffer, wake: asyncio.Event, last: asyncio.Event
    ) -> None:
        """Sends the attempt's buffered log lines with AppendLogs once its start answered PROCEED:
        every second, at once when 100 lines wait (`wake`), and a last time when `last` is set
        (then it returns). Ends early when the coordinator says the attempt is not current or does
        not know AppendLogs."""
        if not await asyncio.shield(ctx._started):
            return
        try:
            await self._flush_until(task, logs, wake, last)
        except Exception as e:  # a bad line or answer ends the attempt's log, never its work
            log.warning("the step log of %s/%s stopped: %s", task.run_id, task.step_id, e)
            logs.close()

    async def _flush_until(self, task: task_pb2.StepTask, logs: LogBuffer, wake: asyncio.Event, last: asyncio.Event) -> None:
        while True:
            if not last.is_set():
                try:
                    await asyncio.wait_for(wake.wait(), timeout=FLUSH_INTERVAL)
                except asyncio.TimeoutError:
                    pass
            wake.clear()
            final = last.is_set()
            if not await self._send_logs(task, logs) or final:
                return

    async def _send_logs(self, task: task_pb2.StepTask, logs: LogBuffer) -> bool:
        """Sends every buffered line, at most 500 per AppendLogs call. False when no more lines are
        to be sent for the attempt (not current, or a coordinator without AppendLogs); lines of a
        call that could not reach the coordinator go back to the buffer for the next try."""
        if self._logs_unimplemented:
            logs.close()
            return False
        while True:
            lines = logs.take()
            if not lines:
                return True
            req = pb.AppendLogsRequest(
                run_id=task.run_id, step_id=task.step_id, attempt=task.attempt, worker_id=self.worker_id, lines=lines
            )
            try:
                answer = await self._append_logs(req)
            except grpc.aio.AioRpcError as e:
                code = e.code()
                if code == grpc.StatusCode.UNIMPLEMENTED:
                    if not self._logs_unimplemented:
                        log.warning("the coordinator does not know AppendLogs (an older version): step logs are not sent")
                    self._logs_unimplemented = True
                    logs.close()
                    return False
                if code in RETRIABLE:
                    logs.put_back(lines)
                    log.debug("could not send log lines of %s/%s (%s); retrying", task.run_id, task.step_id, e.details())
                    return True
                log.warning(
                    "the coordinator refused %d log lines of %s/%s (%s: %s); dropping them",
                    len(lines),
                    task.run_id,
                    task.step_id,
                    code.name,
                    (e.details() or "")[:200],
                )
                continue
            if answer.disposition != PROCEED:
                logs.close()
                return False

    def _context(self, task: task_pb2.StepTask, logs: LogBuffer | None = None) -> Context:
        def parse(text: str) -> Any:
            try:
                return json.loads(text)
            except (ValueError, RecursionError):
                return None

        return Context(
            run_id=task.run_id,
            step_id=task.step_id,
            attempt=task.attempt,
            workflow=task.workflow,
            workflow_version=task.workflow_version,
            worker_id=self.worker_id,
            input=parse(task.input_json),
            parent_outputs={k: parse(v) for k, v in task.parent_outputs_json.items()},
            resume_data=parse(task.resume_data_json) if task.resume_data_json else None,
            resumed=bool(task.resume_data_json),
            item_index=task.item_index if task.HasField("item_index") else None,
            timeout=max(task.timeout_ms, 1) / 1000,
            heartbeat_timeout=task.heartbeat_timeout_ms / 1000 if task.heartbeat_timeout_ms else None,
            caller=functools.partial(self._context_call, task),
            loop=self._loop,
            logs=logs,
        )

    async def _context_call(self, task: task_pb2.StepTask, kind: str, payload: str | None) -> int:
        from baton.errors import NonRetryableError, RetryableError

        try:
            if kind == "heartbeat":
                hb = pb.HeartbeatRequest(
                    run_id=task.run_id, step_id=task.step_id, attempt=task.attempt, worker_id=self.worker_id
                )
                return (await self._heartbeat(hb)).disposition
            ev = pb.EmitEventRequest(
                run_id=task.run_id,
                step_id=task.step_id,
                attempt=task.attempt,
                payload_json=payload or "null",
                worker_id=self.worker_id,
            )
            return (await self._emit(ev)).disposition
        except grpc.aio.AioRpcError as e:
            if kind == "emit" and e.code() == grpc.StatusCode.INVALID_ARGUMENT:
                raise NonRetryableError(e.details() or "", type="InvalidEvent") from None
            raise RetryableError(f"{kind}: {e.code().name}: {e.details()}") from None

    async def _supervise(self, handler: Handler, ctx: Context) -> _Outcome:
        """Validates the input, runs the handler under the attempt's timeout and the run's
        cancellation, and turns what it returned or raised into an outcome."""
        try:
            value = handler.adapter.validate_python(ctx.input)
        except pydantic.ValidationError as e:
            return _failure(f"run input: {e}", "InvalidInput", False)
        args = (value, ctx) if handler.takes_context else (value,)
        run: asyncio.Future[Any]
        # The handler runs with `current_context` set (for `capture_logging`), in its task or thread.
        if handler.is_async:
            run = asyncio.ensure_future(_in_context(ctx, handler.fn(*args)))
        else:
            context = contextvars.copy_context()
            context.run(current_context.set, ctx)
            call = functools.partial(context.run, handler.fn, *args)
            run = asyncio.ensure_future(self._loop.run_in_executor(self._pool, call))
        cancelled = asyncio.create_task(ctx.cancelled.wait())
        try:
            done, _ = await asyncio.wait({run, cancelled}, timeout=ctx.timeout, return_when=asyncio.FIRST_COMPLETED)
            if run not in done and cancelled in done:
                done, _ = await asyncio.wait({run}, timeout=CANCEL_GRACE)
                if run not in done:
                    run.cancel()
                    return _failure(f"handler did not stop within {CANCEL_GRACE:g}s of the cancel", "Cancelled", False)
            if run not in done:
                run.cancel()
                return _failure(f"handler did not finish within {ctx.timeout:g}s", "Timeout", True)
        finally:
            cancelled.cancel()
            if not run.done():
                run.cancel()
        return self._outcome(run)

    def _outcome(self, run: asyncio.Future[Any]) -> _Outcome:
        if run.cancelled():
            return _failure("the handler was cancelled", "Cancelled", False)
        e = run.exception()
        if e is None:
            try:
                text = json.dumps(_ANY.dump_python(run.result(), mode="json"), separators=(",", ":"))
            except (TypeError, ValueError, pydantic_core.PydanticSerializationError) as err:
                return _failure(f"output: {err}", "InvalidOutput", False)
            size = len(text.encode())
            if size > self.max_output_bytes:
                return _failure(
                    f"the handler's output of {size} bytes is over the limit of {self.max_output_bytes} bytes "
                    "(the worker's BATON_MAX_PAYLOAD_BYTES)",
                    "OutputTooLarge",
                    False,
                )
            return _Outcome(output_json=text)
        if isinstance(e, Suspend):
            return _Outcome(suspend=pb.Suspend(event=e.event, key=e.key, timeout_ms=e.timeout_ms))
        if isinstance(e, StepError):
            return _failure(e.message, e.type, e.retryable, _traceback(e))
        if isinstance(e, asyncio.CancelledError):
            return _failure("the handler was cancelled", "Cancelled", False)
        log.warning("handler raised %s: %s", type(e).__name__, e, exc_info=e)
        return _failure(f"{type(e).__name__}: {e}", type(e).__name__, True, _traceback(e))

    # ------------------------------------------------------------------ coordinator calls

    async def _start_step(self, req: pb.StartStepRequest, state: _State) -> pb.StartStepResponse:
        began = time.monotonic()
        delay = 0.1
        while True:
            try:
                return await self._start(req)
            except grpc.aio.AioRpcError as e:
                if e.code() not in RETRIABLE:
                    raise
                answered = has_source(e.trailing_metadata())
                if not answered and e.code() in UNREACHABLE:
                    self._coordinator_lost(state, e.details() or "")
                patience = self.report_patience if answered else START_PATIENCE
                if time.monotonic() - began >= patience:
                    raise
                log.warning("coordinator unreachable at start of %s/%s; retrying in %.1fs", req.run_id, req.step_id, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)

    async def _send_report(self, req: pb.ReportResultRequest) -> pb.ReportResultResponse:
        began = time.monotonic()
        delay = 0.1
        while True:
            try:
                return await self._report(req)
            except grpc.aio.AioRpcError as e:
                if e.code() not in RETRIABLE or time.monotonic() - began >= self.report_patience:
                    raise
                log.warning("coordinator unreachable at report of %s/%s; retrying in %.1fs", req.run_id, req.step_id, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)

    def _coordinator_lost(self, state: _State, why: str) -> None:
        if state.up.is_set():
            log.warning("coordinator unreachable (%s); pausing the consumers until it answers", why)
            state.up.clear()
            state.down.set()

    async def _answers(self) -> bool:
        """Whether the coordinator's gRPC health for baton.v1.WorkerService is SERVING (a
        coordinator without that entry counts as answering)."""
        name = b"baton.v1.WorkerService"
        request = b"\x0a" + bytes([len(name)]) + name
        i = self._coordinators.current
        try:
            answer = await self._health[i](request, timeout=3)
        except grpc.aio.AioRpcError as e:
            if e.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.UNIMPLEMENTED):
                return True
            self._coordinators.move_on(i)
            return False
        serving = bool(answer == b"\x08\x01")
        if not serving:
            self._coordinators.move_on(i)
        return serving

    async def _probe(self, state: _State) -> None:
        """Keeps `state.up` set while the coordinator answers: whenever it is clear, probes every
        second until the coordinator answers."""
        logged = False
        while not state.stopping.is_set():
            if state.up.is_set():
                await state.down.wait()
                await asyncio.sleep(PROBE_INTERVAL)
                continue
            if await self._answers():
                log.info("coordinator %s answers; taking tasks", self.coordinator)
                logged = False
                state.down.clear()
                state.up.set()
                continue
            if not logged:
                log.warning("coordinator %s does not answer (or is not ready); probing every %gs", self.coordinator, PROBE_INTERVAL)
                logged = True
            await asyncio.sleep(PROBE_INTERVAL)

    def _registration_request(self, state: _State, worker_state: int) -> pb.RegisterWorkerRequest:
        started = Timestamp()
        started.FromNanoseconds(int(self._started_at * 1e9))
        return pb.RegisterWorkerRequest(
            worker_id=self.worker_id,
            host=socket.gethostname()[:MAX_NAME_BYTES],
            pid=os.getpid(),
            version=_sdk_version(),
            namespace=self.namespace,
            handlers=sorted(self.handlers),
            concurrency=self.concurrency,
            in_flight={h: max(0, n) for h, n in state.in_flight.items()},
            started_at=started,
            state=worker_state,  # type: ignore[arg-type]
            heartbeat_interval_ms=round(self.heartbeat_interval * 1000),
        )

    async def _registration(self, state: _State) -> None:
        """RegisterWorker now and every heartbeat interval (DRAINING once stopping), checking the
        answer's queue settings against this worker's (docs/worker-protocol.md, section 9)."""
        warned = False
        # Not `while True`: the cancel at the end of `serve` can be lost (grpc.aio answers it as
        # CANCELLED; asyncio.wait_for swallows one that meets its result), so `closed` ends the loop.
        while not state.closed:
            stopping = state.stopping.is_set()
            req = self._registration_request(state, pb.WORKER_STATE_DRAINING if stopping else pb.WORKER_STATE_RUNNING)
            try:
                answer = await self._register(req, timeout=10)
                warned = False
                mismatch = self._settings_mismatch(answer)
                if mismatch is not None:
                    self._fail(state, mismatch)
                    return
                state.checked.set()
            except grpc.aio.AioRpcError as e:
                code = e.code()
                if code == grpc.StatusCode.CANCELLED and state.closed:
                    return
                if code == grpc.StatusCode.UNIMPLEMENTED:
                    log.info("the coordinator does not know RegisterWorker (an older version); not registering")
                    state.checked.set()
                    return
                if code in (grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNAUTHENTICATED):
                    self._fail(
                        state,
                        f"the coordinator refused this worker's token ({code.name}: {e.details()}): give the worker a "
                        "token with the `worker` role in BATON_TOKEN; exiting",
                    )
                    return
                if code == grpc.StatusCode.INVALID_ARGUMENT:
                    self._fail(state, f"the coordinator refused this worker's registration: {e.details()}")
                    return
                if not warned:
                    log.warning("could not register with the coordinator (%s); retrying", e.details())
                    warned = True
            pause = self.heartbeat_interval if state.checked.is_set() else min(self.heartbeat_interval, 0.5)
            if stopping:
                await asyncio.sleep(pause)
                continue
            try:
                await asyncio.wait_for(state.stopping.wait(), timeout=pause)
            except asyncio.TimeoutError:
                pass

    def _settings_mismatch(self, answer: pb.RegisterWorkerResponse) -> str | None:
        diffs = []
        if answer.namespace and answer.namespace != self.namespace:
            diffs.append(
                f"namespace is {answer.namespace!r} at the coordinator but {self.namespace!r} here "
                f"(set BATON_NAMESPACE to {answer.namespace!r})"
            )
        if answer.queue_type and answer.queue_type != self.queue_type:
            diffs.append(
                f"queue_type is {answer.queue_type} at the coordinator but {self.queue_type} here "
                f"(set BATON_QUEUE_TYPE={answer.queue_type})"
            )
        elif answer.queue_type == "quorum" and self.queue_type == "quorum" and answer.delivery_limit != self.delivery_limit:
            diffs.append(
                f"delivery_limit is {answer.delivery_limit} at the coordinator but {self.delivery_limit} here "
                f"(set BATON_DELIVERY_LIMIT={answer.delivery_limit})"
            )
        if not diffs:
            return None
        return f"worker settings do not match the coordinator's at {self.coordinator}: {'; '.join(diffs)}; exiting"

    async def _watch_cancellations(self, connection: aio_pika.abc.AbstractRobustConnection, state: _State) -> None:
        """Binds an exclusive queue to the control exchange and sets the `cancelled` event of every
        running handler of a run named by a cancel notice. The robust connection restores the
        queue and its consumer after a reconnection; a failure to set them up is logged (the
        worker still learns of a cancel at its next heartbeat or report)."""
        try:
            await self._listen_for_cancels(connection, state)
        except Exception as e:
            log.warning("cancel listener failed (%s); cancel notices will not reach the handlers", e)

    async def _listen_for_cancels(self, connection: aio_pika.abc.AbstractRobustConnection, state: _State) -> None:
        channel = await connection.channel()
        control = await channel.declare_exchange(
            f"{self.namespace}.control", aio_pika.ExchangeType.FANOUT, durable=True
        )
        queue = await channel.declare_queue("", exclusive=True, auto_delete=True)
        await queue.bind(control, routing_key="")

        async def on_notice(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            run_id = message.body.decode("utf-8", "replace")
            contexts = state.contexts.get(run_id, set())
            for ctx in contexts:
                ctx._cancel()
            if contexts:
                log.info("run %s cancelled; told its %d handlers", run_id[:200], len(contexts))

        await queue.consume(on_notice, no_ack=True)
        await asyncio.Event().wait()


async def _in_context(ctx: Context, handler: typing.Awaitable[Any]) -> Any:
    """Awaits an async handler with `current_context` set to its attempt (in its own task)."""
    current_context.set(ctx)
    return await handler


class WorkerStopped(Exception):
    """The worker cannot serve: its settings differ from the coordinator's, or its token was
    refused. The message is one line saying what to change."""


def _refused_outcome(outcome: _Outcome, e: grpc.aio.AioRpcError) -> pb.StepFailure | None:
    """The failure to report instead of an output or a suspension the coordinator refused for good
    (docs/worker-protocol.md, section 4, step 4); None for a refused failure."""
    if outcome.output_json is not None:
        error_type = (
            "OutputTooLarge"
            if e.code() in (grpc.StatusCode.OUT_OF_RANGE, grpc.StatusCode.RESOURCE_EXHAUSTED)
            else "InvalidOutput"
        )
        what = f"the handler's output of {len(outcome.output_json.encode())} bytes"
    elif outcome.suspend is not None:
        error_type = "InvalidSuspend"
        what = f"the handler's suspension until event {outcome.suspend.event[:200]!r}"
    else:
        return None
    return pb.StepFailure(
        message=_cut(f"the coordinator refused {what}: {e.code().name}: {e.details()}"),
        error_type=error_type,
        retryable=False,
    )
