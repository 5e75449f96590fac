"""Clients of the coordinator's gRPC API (`baton.v1`): `AsyncClient` (asyncio) and `Client` (the
same calls, blocking). Register workflows, submit and follow runs, cancel, retry and re-run them,
publish events, complete human tasks and manage schedules. A refused call raises a `BatonError`
subclass carrying the gRPC code and the field path the coordinator named."""

from __future__ import annotations

import asyncio
import collections
import json
import os
import threading
from collections.abc import AsyncGenerator, AsyncIterator, Coroutine, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar, overload

import grpc
import grpc.aio
import pydantic
from google.protobuf.message import Message

from baton import _rpc
from baton.errors import RunFailed, Unavailable, error_from_rpc
from baton.logs import LogLine, StepLogs
from baton.v1 import baton_pb2 as pb
from baton.workflow import Workflow

__all__ = [
    "AsyncClient",
    "Client",
    "Run",
    "RunPage",
    "StepRun",
    "RunEvent",
    "Submitted",
    "TERMINAL",
    "RUN_STATUSES",
    "MAX_PAGE_SIZE",
    "MAX_LOG_LINES",
]

T = TypeVar("T")
Req = TypeVar("Req", bound=Message)
Resp = TypeVar("Resp", bound=Message)

# Run statuses after which nothing changes unless the run is retried or re-run.
TERMINAL = frozenset({"succeeded", "failed", "cancelled", "timed_out"})

RUN_STATUSES = ("pending", "running", "succeeded", "failed", "cancelled", "timed_out")
"""The run statuses `list_runs(status=...)` takes, in the CLI's order and words."""

MAX_PAGE_SIZE = 1000
"""Most runs one ListRuns page holds (the coordinator's limit)."""

MAX_LOG_LINES = 10_000
"""Most log lines one `step_logs` answer holds (the coordinator's bound)."""

# How long `wait` pauses before following a run again after its stream ended early or the
# coordinator could not be reached (seconds; doubled each time up to the second figure).
_REWATCH_PAUSE = (0.1, 2.0)


def run_status_value(status: str) -> int:
    """The `baton.v1.RunStatus` value of a status word (`failed`; case-insensitive, `-` for `_`).
    ValueError naming the field `status` and listing the valid statuses otherwise."""
    word = status.strip().lower().replace("-", "_") if isinstance(status, str) else ""
    if word not in RUN_STATUSES:
        raise ValueError(
            f"status: unknown run status {str(status)[:100]!r}; valid statuses are {', '.join(RUN_STATUSES)}"
        )
    return int(pb.RunStatus.Value(f"RUN_STATUS_{word.upper()}"))


# The longest `query` ListRuns takes, in UTF-8 bytes (the coordinator's bound).
MAX_QUERY_BYTES = 4096


def _query(text: str) -> str:
    """`text` if it is a search filter of at most MAX_QUERY_BYTES; ValueError naming `query`."""
    if not isinstance(text, str):
        raise ValueError(f"query: must be a string, not {type(text).__name__}")
    size = len(text.encode())
    if size > MAX_QUERY_BYTES:
        raise ValueError(f"query: at most {MAX_QUERY_BYTES} bytes, not {size}")
    return text


def _page_size(value: int, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_PAGE_SIZE:
        raise ValueError(f"{name}: must be from 1 to {MAX_PAGE_SIZE}, not {value!r}")
    return value


def _typed(run: Run, result_type: type[T] | None, step: str | None) -> Any:
    """The run itself (no `result_type`), or its output (or `step`'s) validated as `result_type`;
    RunFailed when the run did not succeed or the output does not validate."""
    if result_type is None and step is None:
        return run
    if run.status != "succeeded":
        raise RunFailed(run)
    if step is not None:
        if step not in run.steps:
            raise ValueError(f"step: run {run.id} of {run.workflow!r} has no step {step!r}")
        value = run.steps[step].output
    else:
        value = run.output
    if result_type is None:
        return value
    try:
        return pydantic.TypeAdapter(result_type).validate_python(value)
    except pydantic.ValidationError as e:
        raise RunFailed(run, f"its output does not validate as {getattr(result_type, '__name__', result_type)}: {e}") from None


def _log_query(run_id: str, step: str | None, attempt: int | None, limit: int) -> pb.GetStepLogsRequest:
    """The GetStepLogs request; ValueError naming `attempt` (1 or more, with a step) or `limit` (0
    to 10,000) before any call."""
    if attempt is not None:
        if isinstance(attempt, bool) or not isinstance(attempt, int) or attempt < 1 or attempt > 2**32 - 1:
            raise ValueError(f"attempt: must be 1 or more, not {attempt!r}")
        if not step:
            raise ValueError("attempt: needs a step")
    if isinstance(limit, bool) or not isinstance(limit, int) or not 0 <= limit <= MAX_LOG_LINES:
        raise ValueError(f"limit: must be from 0 to {MAX_LOG_LINES}, not {limit!r}")
    return pb.GetStepLogsRequest(run_id=run_id, step_id=step or "", attempt=attempt or 0, limit=limit)


def _line_matches(line: LogLine, step: str | None, attempt: int | None) -> bool:
    """Whether a line belongs to `step` (a fan-out step includes its elements `step#i`) and `attempt`."""
    if step and line.step_id != step and not line.step_id.startswith(f"{step}#"):
        return False
    return attempt is None or line.attempt == attempt


def _json(text: str) -> Any:
    return json.loads(text) if text else None


def _word(enum_name: str, prefix: str) -> str:
    return enum_name.removeprefix(prefix).lower()


@dataclass(frozen=True)
class StepRun:
    """One step of a run: `status` in lower case (`pending`, `running`, `succeeded`, ...),
    `attempt` (1-based, 0 before the first dispatch), `output` (parsed JSON, None until it has
    one), `error` (the last error), `worker`, `attempts` (one `baton.v1.Attempt` per finished
    attempt: `input_json`, `error_type`, `error_details`, `log_lines`...), and `input` (parsed) of
    the attempt in flight (None when none runs, or when the answer left it out:
    `proto.input_omitted_bytes`)."""

    id: str
    handler: str
    status: str
    attempt: int
    output: Any
    error: str
    worker: str
    attempts: list[pb.Attempt]
    proto: pb.StepRun = field(repr=False)
    input: Any = None

    @staticmethod
    def of(s: pb.StepRun) -> StepRun:
        return StepRun(
            id=s.id,
            handler=s.handler,
            status=_word(pb.StepStatus.Name(s.status), "STEP_STATUS_"),
            attempt=s.attempt,
            output=_json(s.output_json),
            error=s.error,
            worker=s.worker,
            attempts=list(s.attempts),
            proto=s,
            input=_json(s.input_json),
        )


@dataclass(frozen=True)
class Run:
    """A run: `status` in lower case (`pending`, `running`, `succeeded`, `failed`, `cancelled`,
    `timed_out`), `input` and `output` parsed (the output is an object of the leaf steps' outputs
    by step id, None until the run succeeds), `error`, and `steps` by id (empty in list answers).
    `proto` is the `baton.v1.Run` answered."""

    id: str
    workflow: str
    version: int
    status: str
    input: Any
    output: Any
    error: str
    steps: dict[str, StepRun]
    proto: pb.Run = field(repr=False)

    @property
    def done(self) -> bool:
        return self.status in TERMINAL

    @staticmethod
    def of(r: pb.Run) -> Run:
        return Run(
            id=r.id,
            workflow=r.workflow,
            version=r.version,
            status=_word(pb.RunStatus.Name(r.status), "RUN_STATUS_"),
            input=_json(r.input_json),
            output=_json(r.output_json),
            error=r.error,
            steps={s.id: StepRun.of(s) for s in r.steps},
            proto=r,
        )


@dataclass(frozen=True)
class RunEvent:
    """One event of a run's history: `kind` (`run`, `step`, `custom` or `log`), `step_id` (empty
    for run events), `attempt`, `status` (lower case), `detail`, for custom events the `payload` a
    handler emitted, and for log events the `log` line a handler wrote (live only: a resumed
    stream does not repeat them; `step_logs` reads them)."""

    run_id: str
    sequence: str
    kind: str
    step_id: str
    attempt: int
    status: str
    detail: str
    payload: Any
    log: LogLine | None = None

    @staticmethod
    def of(e: pb.RunEvent) -> RunEvent:
        return RunEvent(
            run_id=e.run_id,
            sequence=e.sequence,
            kind=e.kind,
            step_id=e.step_id,
            attempt=e.attempt,
            status=e.status,
            detail=e.detail,
            payload=_json(e.payload_json),
            log=LogLine.of(e.log) if e.HasField("log") else None,
        )


@dataclass(frozen=True)
class RunPage:
    """One page of `list_runs_page`: the runs (newest first, without their steps) and the token
    of the next page (empty on the last page); it unpacks as `runs, next_page_token`.
    `status_counts` (asked with `with_counts`): the matching runs by status word (`succeeded`,
    `running`, ...) over all of them, not only this page. `partial` is True when the answer may
    leave matching runs out (the archive could not be read, or the counts stopped at the
    coordinator's Redis scan bound); `partial_reason` then says what is missing."""

    runs: list[Run]
    next_page_token: str
    status_counts: dict[str, int] = field(default_factory=dict)
    partial: bool = False
    partial_reason: str = ""

    def __iter__(self) -> Iterator[Any]:
        yield self.runs
        yield self.next_page_token


@dataclass(frozen=True)
class Submitted:
    """The answer to a submit: the run id; `created` False when the idempotency key matched an
    existing run, then `input_differs` says whether its input was another."""

    run_id: str
    created: bool
    input_differs: bool


def _dump(value: Any) -> str:
    return "" if value is None else json.dumps(value)


def _definition_text(definition: Workflow | Mapping[str, Any] | str | os.PathLike[str]) -> str:
    if isinstance(definition, Workflow):
        return json.dumps(definition.definition())
    if isinstance(definition, Mapping):
        return json.dumps(definition)
    if isinstance(definition, os.PathLike):
        return Path(definition).read_text(encoding="utf-8")
    return definition


class AsyncClient:
    """An asyncio client of a coordinator at `address` (`host:port` or `http://host:port`, or
    `https://host:port` with the TLS files of `tls` or `BATON_CA_FILE`...; default `BATON_ADDR`,
    then its alias `BATON_COORDINATOR`, then `http://127.0.0.1:7450`, as the CLI), sending
    `token` (or `BATON_TOKEN`) as a bearer token. `timeout` bounds each unary call (seconds;
    `watch` and `wait` have no limit unless given one). Use it as an async context manager, or
    call `close()`. Every call raises a BatonError subclass (InvalidArgument with `.field`,
    NotFound, FailedPrecondition, ...) when refused; ValueError for a bad address here."""

    def __init__(
        self,
        address: str | None = None,
        token: str | None = None,
        *,
        tls: _rpc.Tls | None = None,
        timeout: float = 30.0,
        max_message_bytes: int = _rpc.DEFAULT_MAX_MESSAGE_BYTES,
    ) -> None:
        self.address = _rpc.coordinator_address(address)
        self._metadata = _rpc.bearer_metadata(token if token is not None else os.environ.get("BATON_TOKEN"))
        self._channel = _rpc.aio_channel(self.address, tls or _rpc.Tls.from_env(), max_message_bytes)
        self.timeout = timeout

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self._channel.close()

    async def _call(self, path: str, request: Message, response: type[Resp]) -> Resp:
        call = _rpc.Unary[Message, Resp](self._channel, path, response, self._metadata)
        try:
            return await call(request, timeout=self.timeout)
        except grpc.aio.AioRpcError as e:
            raise error_from_rpc(e) from None

    # -- workflows

    async def register_workflow(self, definition: Workflow | Mapping[str, Any] | str | os.PathLike[str]) -> pb.Workflow:
        """Registers a definition: a `Workflow` built in Python, a dict (sent as JSON), a path (a
        YAML or JSON file) or the document's text. Registering the same document again is fine; InvalidArgument names the
        field (`steps[2].retry.max_interval`); AlreadyExists for the same name and version with
        other content."""
        req = pb.RegisterWorkflowRequest(definition=_definition_text(definition))
        return (await self._call("/baton.v1.WorkflowService/RegisterWorkflow", req, pb.RegisterWorkflowResponse)).workflow

    async def register_workflow_file(self, path: str | os.PathLike[str]) -> pb.Workflow:
        """Registers the YAML or JSON definition in the file `path`."""
        return await self.register_workflow(Path(path))

    async def get_workflow(self, name: str, version: int = 0) -> pb.Workflow:
        """A workflow (version 0: the latest); NotFound when unknown."""
        req = pb.GetWorkflowRequest(name=name, version=version)
        return await self._call("/baton.v1.WorkflowService/GetWorkflow", req, pb.Workflow)

    async def list_workflows(self) -> list[pb.Workflow]:
        resp = await self._call("/baton.v1.WorkflowService/ListWorkflows", pb.ListWorkflowsRequest(), pb.ListWorkflowsResponse)
        return list(resp.workflows)

    # -- runs

    async def submit(
        self, workflow: str, input: Any = None, *, version: int = 0, idempotency_key: str = ""  # noqa: A002
    ) -> Submitted:
        """Starts a run of `workflow` with `input` (any JSON value; None: `{}`). With an
        idempotency key, the same (workflow, key) answers the same run. InvalidArgument when the
        input fails the workflow's schema; NotFound for an unknown workflow or version."""
        req = pb.SubmitRunRequest(
            workflow=workflow, version=version, input_json=_dump(input), idempotency_key=idempotency_key
        )
        resp = await self._call("/baton.v1.RunService/SubmitRun", req, pb.SubmitRunResponse)
        return Submitted(run_id=resp.run_id, created=resp.created, input_differs=resp.input_differs)

    async def get_run(self, run_id: str) -> Run:
        """The run with its steps; NotFound when it does not exist or has expired."""
        return Run.of(await self._call("/baton.v1.RunService/GetRun", pb.GetRunRequest(run_id=run_id), pb.Run))

    async def list_runs_page(
        self,
        workflow: str = "",
        *,
        status: str | None = None,
        limit: int = 50,
        page_token: str = "",
        parent_run_id: str = "",
        query: str = "",
        with_counts: bool = False,
    ) -> RunPage:
        """One page of runs, newest first (without their steps): at most `limit` (1 to 1000)
        runs of `workflow` (empty: every workflow) with `status` (one of RUN_STATUSES; None or
        empty: any), started by `parent_run_id` when given, selected by `query` when given (the
        search language of docs/search.md, e.g. `status = "failed" AND input.customer.id = "c-7"`,
        at most 4096 bytes; archived runs too when the coordinator has an archive), from
        `page_token` (a previous page's `next_page_token`); `with_counts` also counts every
        matching run by status (`RunPage.status_counts`). ValueError naming `status`, `limit` or
        `query` before any call; InvalidArgument naming `page_token` for a token the coordinator
        did not make, or `query` (with the column) for a filter that does not parse."""
        req = pb.ListRunsRequest(
            workflow=workflow,
            status=run_status_value(status) if status else 0,  # type: ignore[arg-type]
            limit=_page_size(limit, "limit"),
            page_token=page_token,
            parent_run_id=parent_run_id,
            query=_query(query),
            with_counts=with_counts,
        )
        resp = await self._call("/baton.v1.RunService/ListRuns", req, pb.ListRunsResponse)
        return RunPage(
            [Run.of(r) for r in resp.runs],
            resp.next_page_token,
            dict(resp.status_counts),
            resp.partial,
            resp.partial_reason,
        )

    def list_run_pages(
        self,
        workflow: str = "",
        *,
        status: str | None = None,
        page_size: int = 50,
        parent_run_id: str = "",
        query: str = "",
    ) -> AsyncIterator[RunPage]:
        """Every page of runs (see `list_runs_page`), fetched one at a time as the iteration goes
        on, until the last. ValueError naming `status`, `page_size` or `query` at once, before any
        call."""
        if status:
            run_status_value(status)
        _page_size(page_size, "page_size")
        _query(query)

        async def pages() -> AsyncGenerator[RunPage, None]:
            token = ""
            while True:
                page = await self.list_runs_page(
                    workflow,
                    status=status,
                    limit=page_size,
                    page_token=token,
                    parent_run_id=parent_run_id,
                    query=query,
                )
                yield page
                if not page.next_page_token:
                    return
                token = page.next_page_token

        return pages()

    def list_runs(
        self,
        workflow: str = "",
        *,
        status: str | None = None,
        page_size: int = 50,
        parent_run_id: str = "",
        max_runs: int | None = None,
        query: str = "",
    ) -> AsyncIterator[Run]:
        """Runs newest first (without their steps) over every page, `page_size` (1 to 1000) per
        ListRuns call, the next page fetched when the iteration reaches it; at most `max_runs`
        when given; only those `query` selects when given (see `list_runs_page`). `async for run
        in client.list_runs("orders", status="failed")`. ValueError naming `status` (with the
        valid statuses), `page_size` or `query` at once, before any call."""
        pages = self.list_run_pages(
            workflow, status=status, page_size=page_size, parent_run_id=parent_run_id, query=query
        )
        if max_runs is not None and max_runs < 0:
            raise ValueError(f"max_runs: must be 0 or more, not {max_runs}")

        async def runs() -> AsyncGenerator[Run, None]:
            count = 0
            async for page in pages:
                for run in page.runs:
                    if max_runs is not None and count >= max_runs:
                        return
                    count += 1
                    yield run

        return runs()

    async def watch(self, run_id: str, *, after_sequence: str = "") -> AsyncGenerator[RunEvent, None]:
        """Every event of the run from its start (or after `after_sequence`, an event's
        `sequence`), then live ones, until the run finishes. No time limit."""
        async for event in self._watch_raw(run_id, after_sequence, include_run=False):
            yield RunEvent.of(event)

    async def _watch_raw(
        self, run_id: str, after_sequence: str, *, include_run: bool
    ) -> AsyncGenerator[pb.RunEvent, None]:
        """WatchRun's messages as they come (`baton.v1.RunEvent`); with `include_run`, a stream
        that ends because the run finished ends with a message of kind "final" holding the run."""
        stream = _rpc.Stream[pb.WatchRunRequest, pb.RunEvent](
            self._channel, "/baton.v1.RunService/WatchRun", pb.RunEvent, self._metadata
        )
        call = stream(pb.WatchRunRequest(run_id=run_id, after_sequence=after_sequence, include_run=include_run))
        try:
            async for event in call:
                yield event
        except grpc.aio.AioRpcError as e:
            raise error_from_rpc(e) from None
        finally:
            call.cancel()

    async def step_logs(
        self, run_id: str, step: str | None = None, attempt: int | None = None, *, limit: int = 0
    ) -> StepLogs:
        """The log lines handlers wrote for a run, oldest first: every step, one `step` (a fan-out
        step includes its elements' lines, `step#index`) or one `attempt` (1-based) of it; at most
        `limit` lines (0: the coordinator's bound, 10,000), the newest kept and the rest counted in
        `omitted`. NotFound for an unknown or expired run, or naming `step_id` for a step the run
        does not have; ValueError naming `attempt` or `limit` before any call."""
        req = _log_query(run_id, step, attempt, limit)
        resp = await self._call("/baton.v1.RunService/GetStepLogs", req, pb.GetStepLogsResponse)
        return StepLogs([LogLine.of(line) for line in resp.lines], resp.omitted)

    async def follow_logs(
        self, run_id: str, step: str | None = None, attempt: int | None = None
    ) -> AsyncGenerator[LogLine, None]:
        """The run's log lines (all steps, one `step` or one `attempt` of it, as `step_logs`):
        those written so far, then each new one as a handler writes it (WatchRun's `log` events),
        until the run finishes. No time limit. `async for line in client.follow_logs(run_id):
        print(line)`. A stream that ends early or a coordinator that cannot be reached
        (UNAVAILABLE) is followed again, as `wait` does: the lines written meanwhile are read back
        and each line is still given once. Other errors as `step_logs` and `watch`."""
        req = _log_query(run_id, step, attempt, 0)
        # How many times each line (step, attempt, time, level, message) was given so far: a line
        # is given once, whether it comes live, from GetStepLogs, or from both after a reconnect
        # (bounded by what the coordinator keeps of a run).
        given: collections.Counter[tuple[str, int, object, str, str]] = collections.Counter()
        pause = _REWATCH_PAUSE[0]
        while True:
            events = self.watch(run_id).__aiter__()
            try:
                # The stream is open once its first event (the run's history replayed) came:
                # lines written from then on arrive live; those before are read with GetStepLogs.
                pending: list[RunEvent] = []
                try:
                    pending.append(await events.__anext__())
                except StopAsyncIteration:
                    pass
                resp = await self._call("/baton.v1.RunService/GetStepLogs", req, pb.GetStepLogsResponse)
                # The lines read: those written since the stream opened also come live, once.
                read: collections.Counter[tuple[str, int, object, str, str]] = collections.Counter()
                for raw in resp.lines:
                    line = LogLine.of(raw)
                    key = (line.step_id, line.attempt, line.time, line.level, line.message)
                    read[key] += 1
                    if read[key] > given[key]:
                        given[key] += 1
                        yield line

                async def rest(pending: list[RunEvent] = pending, events: Any = events) -> AsyncGenerator[RunEvent, None]:
                    for e in pending:
                        yield e
                    if pending:
                        async for e in events:
                            yield e

                async for event in rest():
                    live = event.log
                    if event.kind != "log" or live is None or not _line_matches(live, step, attempt):
                        continue
                    key = (live.step_id, live.attempt, live.time, live.level, live.message)
                    if read[key] > 0:
                        read[key] -= 1
                        continue
                    given[key] += 1
                    yield live
                if (await self.get_run(run_id)).done:
                    return
            except Unavailable:
                pass
            finally:
                aclose = getattr(events, "aclose", None)
                if aclose is not None:
                    await aclose()
            await asyncio.sleep(pause)
            pause = min(pause * 2, _REWATCH_PAUSE[1])

    @overload
    async def wait(self, run_id: str, *, timeout: float | None = None) -> Run: ...

    @overload
    async def wait(self, run_id: str, *, result_type: type[T], step: str | None = None, timeout: float | None = None) -> T: ...

    @overload
    async def wait(self, run_id: str, *, step: str, timeout: float | None = None) -> Any: ...

    async def wait(
        self, run_id: str, *, result_type: Any = None, step: str | None = None, timeout: float | None = None
    ) -> Any:
        """Follows the run's WatchRun stream until it finishes, then returns the `Run`. With
        `result_type` (a pydantic model, a dataclass, any type pydantic validates) it returns the
        run's output (an object of the leaf steps' outputs by step id; with `step`, that step's
        output) validated as that type, and raises RunFailed (with `.run`) when the run did not
        succeed or the output does not validate. No time limit unless `timeout` (seconds, then
        TimeoutError). A stream that ends early or a coordinator that cannot be reached
        (UNAVAILABLE) is followed again from the last event seen; NotFound and other refusals
        are raised."""
        if timeout is None:
            run = await self._follow(run_id)
        else:
            try:
                run = await asyncio.wait_for(self._follow(run_id), timeout)
            except asyncio.TimeoutError:
                raise TimeoutError(f"run {run_id} did not finish within {timeout:g}s") from None
        return _typed(run, result_type, step)

    async def _follow(self, run_id: str) -> Run:
        after = ""
        pause = _REWATCH_PAUSE[0]
        while True:
            try:
                final: Run | None = None
                # The stream ends with the finished run (`include_run`), so no GetRun follows it;
                # a coordinator before `include_run` sends none, and the run is read instead.
                async for event in self._watch_raw(run_id, after, include_run=True):
                    if event.kind == "final":
                        final = Run.of(event.run) if event.HasField("run") else None
                    elif event.sequence:
                        after = event.sequence
                run = final if final is not None else await self.get_run(run_id)
                if run.done:
                    return run
            except Unavailable:
                pass
            await asyncio.sleep(pause)
            pause = min(pause * 2, _REWATCH_PAUSE[1])

    @overload
    async def run(
        self, workflow: str, input: Any = None, *, version: int = 0, idempotency_key: str = "", timeout: float | None = None  # noqa: A002
    ) -> Run: ...

    @overload
    async def run(
        self,
        workflow: str,
        input: Any = None,  # noqa: A002
        *,
        result_type: type[T],
        step: str | None = None,
        version: int = 0,
        idempotency_key: str = "",
        timeout: float | None = None,
    ) -> T: ...

    async def run(
        self,
        workflow: str,
        input: Any = None,  # noqa: A002
        *,
        result_type: Any = None,
        step: str | None = None,
        version: int = 0,
        idempotency_key: str = "",
        timeout: float | None = None,
    ) -> Any:
        """Submits a run (see `submit`) and waits for it (see `wait`): the finished `Run`, or its
        output validated as `result_type`. With an idempotency key that matched an earlier run,
        that run is the one waited for."""
        submitted = await self.submit(workflow, input, version=version, idempotency_key=idempotency_key)
        return await self.wait(submitted.run_id, result_type=result_type, step=step, timeout=timeout)

    async def cancel(self, run_id: str, *, reason: str = "") -> pb.RunOperationResponse:
        """Cancels a run (its running handlers see `ctx.cancelled`); FailedPrecondition when it is finished."""
        req = pb.CancelRunRequest(run_id=run_id, reason=reason)
        return await self._call("/baton.v1.RunService/CancelRun", req, pb.RunOperationResponse)

    async def retry(self, run_id: str) -> pb.RunOperationResponse:
        """Runs a failed, cancelled or timed-out run's unfinished steps again."""
        req = pb.RetryRunRequest(run_id=run_id)
        return await self._call("/baton.v1.RunService/RetryRun", req, pb.RunOperationResponse)

    async def rerun(self, run_id: str, from_step: str, *, input: Any = None) -> pb.RunOperationResponse:  # noqa: A002
        """Runs a finished run again from `from_step`, optionally with a new input."""
        req = pb.RerunRunRequest(run_id=run_id, from_step=from_step, input_json=_dump(input))
        return await self._call("/baton.v1.RunService/RerunRun", req, pb.RunOperationResponse)

    # -- events and human tasks

    async def publish_event(self, name: str, key: str = "", payload: Any = None) -> pb.PublishEventResponse:
        """Delivers an event to the steps waiting for (name, key), or buffers it."""
        req = pb.PublishEventRequest(name=name, key=key, payload_json=_dump(payload))
        return await self._call("/baton.v1.EventService/PublishEvent", req, pb.PublishEventResponse)

    async def list_human_tasks(
        self, *, assignee: str = "", workflow: str = "", status: str = "", limit: int = 0
    ) -> list[pb.HumanTask]:
        """Human tasks newest first; `status` is `open`, `completed`, `cancelled` or empty (all)."""
        req = pb.ListHumanTasksRequest(assignee=assignee, workflow=workflow, status=status, limit=limit)
        return list((await self._call("/baton.v1.HumanTaskService/ListHumanTasks", req, pb.ListHumanTasksResponse)).tasks)

    async def complete_human_task(self, run_id: str, step_id: str, user: str, data: Any) -> pb.HumanTask:
        """Completes an open human task with `data` (checked against its form schema:
        InvalidArgument names the JSON path); FailedPrecondition when it is not open."""
        req = pb.CompleteHumanTaskRequest(run_id=run_id, step_id=step_id, user=user, data_json=_dump(data))
        return await self._call("/baton.v1.HumanTaskService/CompleteHumanTask", req, pb.HumanTask)

    # -- schedules

    async def create_schedule(
        self,
        workflow: str,
        cron: str,
        *,
        id: str = "",  # noqa: A002
        timezone: str = "",
        input: Any = None,  # noqa: A002
        overlap: str = "",
        workflow_version: int = 0,
        catchup_window_ms: int = 0,
    ) -> pb.Schedule:
        """Creates (or replaces) a schedule; InvalidArgument names `cron`, `timezone`, `overlap`..."""
        req = pb.CreateScheduleRequest(
            id=id,
            workflow=workflow,
            workflow_version=workflow_version,
            cron=cron,
            timezone=timezone,
            input_json=_dump(input),
            overlap=overlap,
            catchup_window_ms=catchup_window_ms,
        )
        return await self._call("/baton.v1.ScheduleService/CreateSchedule", req, pb.Schedule)

    async def get_schedule(self, schedule_id: str) -> pb.Schedule:
        return await self._call("/baton.v1.ScheduleService/GetSchedule", pb.ScheduleRef(id=schedule_id), pb.Schedule)

    async def list_schedules(self, workflow: str = "") -> list[pb.Schedule]:
        req = pb.ListSchedulesRequest(workflow=workflow)
        return list((await self._call("/baton.v1.ScheduleService/ListSchedules", req, pb.ListSchedulesResponse)).schedules)

    async def pause_schedule(self, schedule_id: str) -> pb.Schedule:
        return await self._call("/baton.v1.ScheduleService/PauseSchedule", pb.ScheduleRef(id=schedule_id), pb.Schedule)

    async def resume_schedule(self, schedule_id: str) -> pb.Schedule:
        return await self._call("/baton.v1.ScheduleService/ResumeSchedule", pb.ScheduleRef(id=schedule_id), pb.Schedule)

    async def delete_schedule(self, schedule_id: str) -> None:
        await self._call("/baton.v1.ScheduleService/DeleteSchedule", pb.ScheduleRef(id=schedule_id), pb.DeleteScheduleResponse)

    async def trigger_schedule(self, schedule_id: str) -> pb.ScheduleTick:
        return await self._call("/baton.v1.ScheduleService/TriggerSchedule", pb.ScheduleRef(id=schedule_id), pb.ScheduleTick)


class Client:
    """The blocking twin of `AsyncClient` (same arguments, same calls, same errors): it runs an
    AsyncClient on an event loop of its own thread. Use it as a context manager or call `close()`."""

    def __init__(
        self,
        address: str | None = None,
        token: str | None = None,
        *,
        tls: _rpc.Tls | None = None,
        timeout: float = 30.0,
        max_message_bytes: int = _rpc.DEFAULT_MAX_MESSAGE_BYTES,
    ) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="baton-client", daemon=True)
        self._thread.start()

        async def make() -> AsyncClient:
            return AsyncClient(address, token, tls=tls, timeout=timeout, max_message_bytes=max_message_bytes)

        try:
            self._async = self._run(make())
        except BaseException:
            self._stop_loop()
            raise
        self.address = self._async.address

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def _stop_loop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        self._loop.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        if self._loop.is_closed():
            return
        self._run(self._async.close())
        self._stop_loop()

    def register_workflow(self, definition: Workflow | Mapping[str, Any] | str | os.PathLike[str]) -> pb.Workflow:
        return self._run(self._async.register_workflow(definition))

    def register_workflow_file(self, path: str | os.PathLike[str]) -> pb.Workflow:
        return self._run(self._async.register_workflow_file(path))

    def get_workflow(self, name: str, version: int = 0) -> pb.Workflow:
        return self._run(self._async.get_workflow(name, version))

    def list_workflows(self) -> list[pb.Workflow]:
        return self._run(self._async.list_workflows())

    def submit(self, workflow: str, input: Any = None, *, version: int = 0, idempotency_key: str = "") -> Submitted:  # noqa: A002
        return self._run(self._async.submit(workflow, input, version=version, idempotency_key=idempotency_key))

    def get_run(self, run_id: str) -> Run:
        return self._run(self._async.get_run(run_id))

    def list_runs_page(
        self,
        workflow: str = "",
        *,
        status: str | None = None,
        limit: int = 50,
        page_token: str = "",
        parent_run_id: str = "",
        query: str = "",
        with_counts: bool = False,
    ) -> RunPage:
        """One page of runs (see AsyncClient.list_runs_page)."""
        return self._run(
            self._async.list_runs_page(
                workflow,
                status=status,
                limit=limit,
                page_token=page_token,
                parent_run_id=parent_run_id,
                query=query,
                with_counts=with_counts,
            )
        )

    def list_run_pages(
        self,
        workflow: str = "",
        *,
        status: str | None = None,
        page_size: int = 50,
        parent_run_id: str = "",
        query: str = "",
    ) -> Iterator[RunPage]:
        """Every page of runs as a blocking iterator (see AsyncClient.list_run_pages); ValueError
        naming `status`, `page_size` or `query` at once."""
        return self._iterate(
            self._async.list_run_pages(
                workflow, status=status, page_size=page_size, parent_run_id=parent_run_id, query=query
            )
        )

    def list_runs(
        self,
        workflow: str = "",
        *,
        status: str | None = None,
        page_size: int = 50,
        parent_run_id: str = "",
        max_runs: int | None = None,
        query: str = "",
    ) -> Iterator[Run]:
        """Runs newest first over every page as a blocking iterator, fetching a page when the
        iteration reaches it (see AsyncClient.list_runs): `for run in client.list_runs("orders",
        status="failed")`. ValueError naming `status` (with the valid statuses), `page_size` or
        `query` at once, before any call."""
        return self._iterate(
            self._async.list_runs(
                workflow,
                status=status,
                page_size=page_size,
                parent_run_id=parent_run_id,
                max_runs=max_runs,
                query=query,
            )
        )

    def _iterate(self, items: AsyncIterator[T]) -> Iterator[T]:
        """An async iterator of the client's loop as a blocking one (closed when abandoned)."""

        async def next_item() -> T:
            return await items.__anext__()

        async def close() -> None:
            aclose = getattr(items, "aclose", None)
            if aclose is not None:
                await aclose()

        def generate() -> Iterator[T]:
            try:
                while True:
                    try:
                        yield self._run(next_item())
                    except StopAsyncIteration:
                        return
            finally:
                if not self._loop.is_closed():
                    self._run(close())

        return generate()

    def watch(self, run_id: str, *, after_sequence: str = "") -> Iterator[RunEvent]:
        """The events of the run as a blocking iterator (see AsyncClient.watch)."""
        return self._iterate(self._async.watch(run_id, after_sequence=after_sequence))

    def step_logs(self, run_id: str, step: str | None = None, attempt: int | None = None, *, limit: int = 0) -> StepLogs:
        """The run's log lines, oldest first (see AsyncClient.step_logs): `for line in
        client.step_logs(run_id, "charge"): print(line)`."""
        return self._run(self._async.step_logs(run_id, step, attempt, limit=limit))

    def follow_logs(self, run_id: str, step: str | None = None, attempt: int | None = None) -> Iterator[LogLine]:
        """The run's log lines so far, then live ones until the run finishes, as a blocking
        iterator (see AsyncClient.follow_logs)."""
        return self._iterate(self._async.follow_logs(run_id, step, attempt))

    @overload
    def wait(self, run_id: str, *, timeout: float | None = None) -> Run: ...

    @overload
    def wait(self, run_id: str, *, result_type: type[T], step: str | None = None, timeout: float | None = None) -> T: ...

    @overload
    def wait(self, run_id: str, *, step: str, timeout: float | None = None) -> Any: ...

    def wait(self, run_id: str, *, result_type: Any = None, step: str | None = None, timeout: float | None = None) -> Any:
        """Follows the run until it finishes (see AsyncClient.wait): the `Run`, or its output as
        `result_type`. No time limit unless `timeout` (seconds)."""
        return self._run(self._async.wait(run_id, result_type=result_type, step=step, timeout=timeout))

    @overload
    def run(
        self, workflow: str, input: Any = None, *, version: int = 0, idempotency_key: str = "", timeout: float | None = None  # noqa: A002
    ) -> Run: ...

    @overload
    def run(
        self,
        workflow: str,
        input: Any = None,  # noqa: A002
        *,
        result_type: type[T],
        step: str | None = None,
        version: int = 0,
        idempotency_key: str = "",
        timeout: float | None = None,
    ) -> T: ...

    def run(
        self,
        workflow: str,
        input: Any = None,  # noqa: A002
        *,
        result_type: Any = None,
        step: str | None = None,
        version: int = 0,
        idempotency_key: str = "",
        timeout: float | None = None,
    ) -> Any:
        """Submits a run and waits for it (see AsyncClient.run)."""
        return self._run(
            self._async.run(
                workflow,
                input,
                result_type=result_type,
                step=step,
                version=version,
                idempotency_key=idempotency_key,
                timeout=timeout,
            )
        )

    def cancel(self, run_id: str, *, reason: str = "") -> pb.RunOperationResponse:
        return self._run(self._async.cancel(run_id, reason=reason))

    def retry(self, run_id: str) -> pb.RunOperationResponse:
        return self._run(self._async.retry(run_id))

    def rerun(self, run_id: str, from_step: str, *, input: Any = None) -> pb.RunOperationResponse:  # noqa: A002
        return self._run(self._async.rerun(run_id, from_step, input=input))

    def publish_event(self, name: str, key: str = "", payload: Any = None) -> pb.PublishEventResponse:
        return self._run(self._async.publish_event(name, key, payload))

    def list_human_tasks(
        self, *, assignee: str = "", workflow: str = "", status: str = "", limit: int = 0
    ) -> list[pb.HumanTask]:
        return self._run(self._async.list_human_tasks(assignee=assignee, workflow=workflow, status=status, limit=limit))

    def complete_human_task(self, run_id: str, step_id: str, user: str, data: Any) -> pb.HumanTask:
        return self._run(self._async.complete_human_task(run_id, step_id, user, data))

    def create_schedule(
        self,
        workflow: str,
        cron: str,
        *,
        id: str = "",  # noqa: A002
        timezone: str = "",
        input: Any = None,  # noqa: A002
        overlap: str = "",
        workflow_version: int = 0,
        catchup_window_ms: int = 0,
    ) -> pb.Schedule:
        return self._run(
            self._async.create_schedule(
                workflow,
                cron,
                id=id,
                timezone=timezone,
                input=input,
                overlap=overlap,
                workflow_version=workflow_version,
                catchup_window_ms=catchup_window_ms,
            )
        )

    def get_schedule(self, schedule_id: str) -> pb.Schedule:
        return self._run(self._async.get_schedule(schedule_id))

    def list_schedules(self, workflow: str = "") -> list[pb.Schedule]:
        return self._run(self._async.list_schedules(workflow))

    def pause_schedule(self, schedule_id: str) -> pb.Schedule:
        return self._run(self._async.pause_schedule(schedule_id))

    def resume_schedule(self, schedule_id: str) -> pb.Schedule:
        return self._run(self._async.resume_schedule(schedule_id))

    def delete_schedule(self, schedule_id: str) -> None:
        self._run(self._async.delete_schedule(schedule_id))

    def trigger_schedule(self, schedule_id: str) -> pb.ScheduleTick:
        return self._run(self._async.trigger_schedule(schedule_id))
