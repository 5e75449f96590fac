"""Clients of the coordinator's gRPC API (`baton.v1`): `AsyncClient` (asyncio) and `Client` (the
same calls, blocking). Register workflows, submit and follow runs, cancel, retry and re-run them,
publish events, complete human tasks and manage schedules. A refused call raises a `BatonError`
subclass carrying the gRPC code and the field path the coordinator named."""

from __future__ import annotations

import asyncio
import json
import os
import threading
from collections.abc import AsyncGenerator, Coroutine, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import grpc
import grpc.aio
from google.protobuf.message import Message

from baton import _rpc
from baton.errors import error_from_rpc
from baton.v1 import baton_pb2 as pb

__all__ = ["AsyncClient", "Client", "Run", "StepRun", "RunEvent", "Submitted", "TERMINAL"]

T = TypeVar("T")
Req = TypeVar("Req", bound=Message)
Resp = TypeVar("Resp", bound=Message)

# Run statuses after which nothing changes unless the run is retried or re-run.
TERMINAL = frozenset({"succeeded", "failed", "cancelled", "timed_out"})


def _json(text: str) -> Any:
    return json.loads(text) if text else None


def _word(enum_name: str, prefix: str) -> str:
    return enum_name.removeprefix(prefix).lower()


@dataclass(frozen=True)
class StepRun:
    """One step of a run: `status` in lower case (`pending`, `running`, `succeeded`, ...),
    `attempt` (1-based, 0 before the first dispatch), `output` (parsed JSON, None until it has
    one), `error` (the last error), `worker`, and `attempts` (one `baton.v1.Attempt` per finished
    attempt)."""

    id: str
    handler: str
    status: str
    attempt: int
    output: Any
    error: str
    worker: str
    attempts: list[pb.Attempt]
    proto: pb.StepRun = field(repr=False)

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
    """One event of a run's history: `kind` (`run`, `step` or `custom`), `step_id` (empty for run
    events), `attempt`, `status` (lower case), `detail`, and for custom events the `payload` a
    handler emitted."""

    run_id: str
    sequence: str
    kind: str
    step_id: str
    attempt: int
    status: str
    detail: str
    payload: Any

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
        )


@dataclass(frozen=True)
class Submitted:
    """The answer to a submit: the run id; `created` False when the idempotency key matched an
    existing run, then `input_differs` says whether its input was another."""

    run_id: str
    created: bool
    input_differs: bool


def _dump(value: Any) -> str:
    return "" if value is None else json.dumps(value)


def _definition_text(definition: Mapping[str, Any] | str | os.PathLike[str]) -> str:
    if isinstance(definition, Mapping):
        return json.dumps(definition)
    if isinstance(definition, os.PathLike):
        return Path(definition).read_text(encoding="utf-8")
    return definition


class AsyncClient:
    """An asyncio client of a coordinator at `address` (`http://host:port`, or `https://` with the
    TLS files of `tls` or `BATON_CA_FILE`...), sending `token` (or `BATON_TOKEN`) as a bearer
    token. Use it as an async context manager, or call `close()`. Every call raises a BatonError
    subclass (InvalidArgument with `.field`, NotFound, FailedPrecondition, ...) when refused."""

    def __init__(
        self,
        address: str | None = None,
        token: str | None = None,
        *,
        tls: _rpc.Tls | None = None,
        timeout: float = 30.0,
        max_message_bytes: int = _rpc.DEFAULT_MAX_MESSAGE_BYTES,
    ) -> None:
        self.address = address or os.environ.get("BATON_COORDINATOR") or _rpc.DEFAULT_COORDINATOR
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

    async def register_workflow(self, definition: Mapping[str, Any] | str | os.PathLike[str]) -> pb.Workflow:
        """Registers a definition: a dict (sent as JSON), a path (a YAML or JSON file) or the
        document's text. Registering the same document again is fine; InvalidArgument names the
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

    async def list_runs(
        self,
        workflow: str = "",
        status: str | None = None,
        *,
        limit: int = 50,
        page_token: str = "",
        parent_run_id: str = "",
    ) -> tuple[list[Run], str]:
        """Runs newest first (without their steps) and the next page's token (empty on the last
        page). `status` is a lower-case word (`failed`, ...)."""
        req = pb.ListRunsRequest(
            workflow=workflow,
            status=pb.RunStatus.Value(f"RUN_STATUS_{status.upper()}") if status else 0,  # type: ignore[arg-type]
            limit=limit,
            page_token=page_token,
            parent_run_id=parent_run_id,
        )
        resp = await self._call("/baton.v1.RunService/ListRuns", req, pb.ListRunsResponse)
        return [Run.of(r) for r in resp.runs], resp.next_page_token

    async def watch(self, run_id: str) -> AsyncGenerator[RunEvent, None]:
        """Every event of the run from its start, then live ones, until the run finishes."""
        stream = _rpc.Stream[pb.WatchRunRequest, pb.RunEvent](
            self._channel, "/baton.v1.RunService/WatchRun", pb.RunEvent, self._metadata
        )
        call = stream(pb.WatchRunRequest(run_id=run_id))
        try:
            async for event in call:
                yield RunEvent.of(event)
        except grpc.aio.AioRpcError as e:
            raise error_from_rpc(e) from None
        finally:
            call.cancel()

    async def wait(self, run_id: str, timeout: float = 60.0, poll: float = 0.1) -> Run:
        """Polls until the run is finished and returns it; TimeoutError after `timeout` seconds."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            run = await self.get_run(run_id)
            if run.done:
                return run
            if loop.time() >= deadline:
                raise TimeoutError(f"run {run_id} still {run.status} after {timeout:g}s")
            await asyncio.sleep(poll)

    async def cancel(self, run_id: str, reason: str = "") -> pb.RunOperationResponse:
        """Cancels a run (its running handlers see `ctx.cancelled`); FailedPrecondition when it is finished."""
        req = pb.CancelRunRequest(run_id=run_id, reason=reason)
        return await self._call("/baton.v1.RunService/CancelRun", req, pb.RunOperationResponse)

    async def retry(self, run_id: str) -> pb.RunOperationResponse:
        """Runs a failed, cancelled or timed-out run's unfinished steps again."""
        req = pb.RetryRunRequest(run_id=run_id)
        return await self._call("/baton.v1.RunService/RetryRun", req, pb.RunOperationResponse)

    async def rerun(self, run_id: str, from_step: str, input: Any = None) -> pb.RunOperationResponse:  # noqa: A002
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

    def register_workflow(self, definition: Mapping[str, Any] | str | os.PathLike[str]) -> pb.Workflow:
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

    def list_runs(
        self, workflow: str = "", status: str | None = None, *, limit: int = 50, page_token: str = "", parent_run_id: str = ""
    ) -> tuple[list[Run], str]:
        return self._run(
            self._async.list_runs(workflow, status, limit=limit, page_token=page_token, parent_run_id=parent_run_id)
        )

    def watch(self, run_id: str) -> Iterator[RunEvent]:
        """The events of the run as a blocking iterator (see AsyncClient.watch)."""
        events = self._async.watch(run_id)

        async def next_event() -> RunEvent:
            return await events.__anext__()

        try:
            while True:
                try:
                    yield self._run(next_event())
                except StopAsyncIteration:
                    return
        finally:
            self._run(events.aclose())

    def wait(self, run_id: str, timeout: float = 60.0, poll: float = 0.1) -> Run:
        return self._run(self._async.wait(run_id, timeout, poll))

    def cancel(self, run_id: str, reason: str = "") -> pb.RunOperationResponse:
        return self._run(self._async.cancel(run_id, reason))

    def retry(self, run_id: str) -> pb.RunOperationResponse:
        return self._run(self._async.retry(run_id))

    def rerun(self, run_id: str, from_step: str, input: Any = None) -> pb.RunOperationResponse:  # noqa: A002
        return self._run(self._async.rerun(run_id, from_step, input))

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
