"""Workflows defined in Python: `Workflow` builds the same definition document a YAML file would
(the coordinator stores and compares documents as JSON, so `Workflow("orders")` with its steps
and the YAML `name: orders` with the same steps are one workflow), and keeps the handler
functions of its task steps so that a `Worker` can serve them and register the workflow at start.

    wf = Workflow("orders", version=1, input_schema=Order)

    @wf.step(timeout="30s", retry=RetryPolicy(max_attempts=3, initial_interval="1s"))
    async def charge(order: Order, ctx: Context) -> Charge: ...

    @wf.step(depends_on=[charge], when="steps.charge.output.amount > 0")
    async def ship(order: Order, ctx: Context) -> Shipment: ...

    worker = Worker(workflows=[wf])     # serves orders.charge and orders.ship, registers `orders`

Durations are seconds (an int or float), a `datetime.timedelta`, or a text such as `"30s"`,
`"5m"`, `"1h 30m"` or `"250ms"` (kept as written). Numbers and timedeltas are written as the
largest units that are exact (`90` -> `"1m 30s"`), so they match a YAML file that writes them so.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, TypeVar, Union, overload

import pydantic

__all__ = ["Concurrency", "Duration", "RateLimit", "RetryPolicy", "Step", "Workflow"]

F = TypeVar("F", bound=Callable[..., Any])

Duration = Union[int, float, timedelta, str]
"""Seconds (int or float), a timedelta, or a text such as `30s`, `5m`, `1h 30m`, `250ms`."""

# The step id rule of the coordinator (shared/src/definition.rs): 1 to 64 of [A-Za-z0-9_-].
_STEP_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
MAX_STEPS = 1000
"""Most steps one workflow takes (the coordinator's limit)."""
MAX_DURATION_SECONDS = 3650 * 86400
"""Longest duration written from a number or timedelta: ten years, the coordinator's largest bound."""
_UNITS = (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1_000), ("ms", 1))


def duration_text(value: Duration, field_path: str) -> str:
    """A duration as the definition language writes it. A text is kept (trimmed; the coordinator
    checks it); seconds or a timedelta become whole milliseconds written in the largest exact
    units (`1.5` -> `"1s 500ms"`, `timedelta(days=14)` -> `"14d"`). ValueError naming
    `field_path` for a value that is not more than 0 and at most ten years, a fraction of a
    millisecond, or another type."""
    if isinstance(value, str):
        text = value.strip()
        if not text:
            raise ValueError(f"{field_path}: an empty duration (use e.g. 30, timedelta(minutes=5) or '30s')")
        return text
    if isinstance(value, bool) or not isinstance(value, (int, float, timedelta)):
        raise ValueError(f"{field_path}: {type(value).__name__} is not a duration (seconds, a timedelta or '30s')")
    seconds = value.total_seconds() if isinstance(value, timedelta) else float(value)
    if not math.isfinite(seconds) or not 0 < seconds <= MAX_DURATION_SECONDS:
        raise ValueError(f"{field_path}: {seconds!r} s is not more than 0 and at most ten years")
    ms = round(seconds * 1000)
    if abs(ms - seconds * 1000) > 1e-6 * max(1.0, seconds):
        raise ValueError(f"{field_path}: {seconds!r} s is not a whole number of milliseconds")
    parts = []
    for unit, size in _UNITS:
        count, ms = divmod(ms, size)
        if count:
            parts.append(f"{count}{unit}")
    return " ".join(parts)


def _number(value: float) -> int | float:
    """An integral float as an int, so that `2.0` is written `2` as YAML's `2` is."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


def _schema(value: Mapping[str, Any] | type[pydantic.BaseModel] | None) -> dict[str, Any] | None:
    if value is None:
        return None
    if isinstance(value, type) and issubclass(value, pydantic.BaseModel):
        return value.model_json_schema()
    return dict(value)


@dataclass(frozen=True, kw_only=True)
class RetryPolicy:
    """A step's `retry:` block; a field left None is the coordinator's default (3 attempts, 1 s
    initial interval, coefficient 2, at most 1 min between attempts, jitter 0.2).

    - `max_attempts`: attempts in all, the first included (1 to 100);
    - `initial_interval`, `max_interval`: durations (seconds, a timedelta or `"500ms"`);
    - `backoff_coefficient`: each interval is the previous one times this (at least 1);
    - `jitter`: each interval is drawn within ± this fraction (0 to 1);
    - `non_retryable_errors`: error types (a handler's `NonRetryableError(type=...)` or
      exception class name) that fail the step at once."""

    max_attempts: int | None = None
    initial_interval: Duration | None = None
    backoff_coefficient: float | None = None
    max_interval: Duration | None = None
    jitter: float | None = None
    non_retryable_errors: Sequence[str] = ()

    def to_document(self, path: str = "retry") -> dict[str, Any]:
        """The `retry:` mapping; ValueError naming `<path>.<field>` for a bad duration."""
        out: dict[str, Any] = {}
        if self.max_attempts is not None:
            out["max_attempts"] = self.max_attempts
        if self.initial_interval is not None:
            out["initial_interval"] = duration_text(self.initial_interval, f"{path}.initial_interval")
        if self.backoff_coefficient is not None:
            out["backoff_coefficient"] = _number(self.backoff_coefficient)
        if self.max_interval is not None:
            out["max_interval"] = duration_text(self.max_interval, f"{path}.max_interval")
        if self.jitter is not None:
            out["jitter"] = _number(self.jitter)
        if self.non_retryable_errors:
            if isinstance(self.non_retryable_errors, str):
                raise ValueError(f"{path}.non_retryable_errors: a list of error types, not one string")
            out["non_retryable_errors"] = list(self.non_retryable_errors)
        return out


@dataclass(frozen=True, kw_only=True)
class Concurrency:
    """A step's `concurrency:` block: at most `limit` attempts at once over all runs (per value of
    the CEL expression `key`, when given)."""

    limit: int
    key: str | None = None

    def to_document(self) -> dict[str, Any]:
        return {"limit": self.limit} if self.key is None else {"limit": self.limit, "key": self.key}


@dataclass(frozen=True, kw_only=True)
class RateLimit:
    """A step's `rate_limit:` block: at most `limit` starts per `period` (a duration), per value of
    the CEL expression `key` when given."""

    limit: int
    period: Duration
    key: str | None = None

    def to_document(self, path: str = "rate_limit") -> dict[str, Any]:
        out: dict[str, Any] = {"limit": self.limit, "period": duration_text(self.period, f"{path}.period")}
        if self.key is not None:
            out["key"] = self.key
        return out


@dataclass(frozen=True)
class Step:
    """One step as declared: its id, the handler a worker runs for it (empty for a step without
    one: sleep, wait_for_event, human, child workflow), the Python function when the workflow
    serves it, and its document (the mapping YAML would have)."""

    id: str
    handler: str
    fn: Callable[..., Any] | None
    document: dict[str, Any] = field(repr=False)


StepRef = Union[str, Callable[..., Any], Step]
"""How `depends_on` names a step: its id, its function (a `@wf.step`), or its `Step`."""


class Workflow:
    """A workflow definition built in Python (see the module's doc). `name` and `version` (1 or
    more) as in YAML; `input_schema` a JSON Schema mapping or a pydantic model (its
    `model_json_schema()`); `timeout` the run timeout (a duration); `max_concurrent_runs` and
    `concurrency_key` (CEL over the input) limit unfinished runs. Steps are kept in the order they
    are declared. ValueError names the field (`steps[1].depends_on[0]`) for what is checked here
    (ids, durations, references); the coordinator checks the rest at registration
    (`InvalidArgument` with the field path)."""

    def __init__(
        self,
        name: str,
        *,
        version: int = 1,
        description: str = "",
        input_schema: Mapping[str, Any] | type[pydantic.BaseModel] | None = None,
        timeout: Duration | None = None,
        max_concurrent_runs: int | None = None,
        concurrency_key: str | None = None,
    ) -> None:
        if not name:
            raise ValueError("name: a workflow needs a name")
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise ValueError(f"version: must be an integer of at least 1, not {version!r}")
        self.name = name
        self.version = version
        self.description = description
        self.input_schema = _schema(input_schema)
        self.timeout = None if timeout is None else duration_text(timeout, "timeout")
        self.max_concurrent_runs = max_concurrent_runs
        self.concurrency_key = concurrency_key
        self.steps: list[Step] = []
        self._by_fn: dict[Callable[..., Any], str] = {}

    # ------------------------------------------------------------------ steps with a handler

    @overload
    def step(self, fn: F, /) -> F: ...

    @overload
    def step(
        self,
        *,
        id: str | None = None,  # noqa: A002
        handler: str | None = None,
        depends_on: Sequence[StepRef] = (),
        retry: RetryPolicy | None = None,
        timeout: Duration | None = None,
        heartbeat_timeout: Duration | None = None,
        schedule_to_start: Duration | None = None,
        when: str | None = None,
        input: Any = None,  # noqa: A002
        for_each: str | None = None,
        max_parallel: int | None = None,
        concurrency: Concurrency | None = None,
        rate_limit: RateLimit | None = None,
    ) -> Callable[[F], F]: ...

    def step(
        self,
        fn: Any = None,
        *,
        id: str | None = None,  # noqa: A002
        handler: str | None = None,
        depends_on: Sequence[StepRef] = (),
        retry: RetryPolicy | None = None,
        timeout: Duration | None = None,
        heartbeat_timeout: Duration | None = None,
        schedule_to_start: Duration | None = None,
        when: str | None = None,
        input: Any = None,  # noqa: A002
        for_each: str | None = None,
        max_parallel: int | None = None,
        concurrency: Concurrency | None = None,
        rate_limit: RateLimit | None = None,
    ) -> Any:
        """Declares a task step run by the decorated function, as `@wf.step` or `@wf.step(...)`.
        The step id defaults to the function's name and the handler to `<workflow>.<step id>`.
        The function is the handler a `Worker(workflows=[wf])` serves: it takes the step input
        (validated as its first parameter's annotation) and optionally a `Context`, as
        `Worker.handler` describes. It is returned unchanged.

        `depends_on` names steps by id, function or `Step`; `retry` a `RetryPolicy`; `timeout`,
        `heartbeat_timeout` and `schedule_to_start` are durations; `when` a CEL condition;
        `input` an input template (any JSON value, `${{ ... }}` expressions inside strings);
        `for_each` a CEL list to fan out over, `max_parallel` elements at once."""

        def declare(f: F) -> F:
            step_id = id or f.__name__
            self.task(
                step_id,
                handler=handler or f"{self.name}.{step_id}",
                depends_on=depends_on,
                retry=retry,
                timeout=timeout,
                heartbeat_timeout=heartbeat_timeout,
                schedule_to_start=schedule_to_start,
                when=when,
                input=input,
                for_each=for_each,
                max_parallel=max_parallel,
                concurrency=concurrency,
                rate_limit=rate_limit,
                _fn=f,
            )
            return f

        if fn is not None:
            if not callable(fn):
                raise TypeError("@wf.step takes a function, or keyword arguments only: @wf.step(timeout=30)")
            return declare(fn)
        return declare

    def task(
        self,
        id: str,  # noqa: A002
        *,
        handler: str,
        depends_on: Sequence[StepRef] = (),
        retry: RetryPolicy | None = None,
        timeout: Duration | None = None,
        heartbeat_timeout: Duration | None = None,
        schedule_to_start: Duration | None = None,
        when: str | None = None,
        input: Any = None,  # noqa: A002
        for_each: str | None = None,
        max_parallel: int | None = None,
        concurrency: Concurrency | None = None,
        rate_limit: RateLimit | None = None,
        _fn: Callable[..., Any] | None = None,
    ) -> Step:
        """Declares a task step whose handler another worker serves (a Rust worker's `echo`, say);
        the arguments as for `step`. Returns the `Step` (for `depends_on`)."""
        path = f"steps[{len(self.steps)}]"
        doc: dict[str, Any] = {"handler": handler}
        if retry is not None:
            doc["retry"] = retry.to_document(f"{path}.retry")
        for key, value in (
            ("timeout", timeout),
            ("heartbeat_timeout", heartbeat_timeout),
            ("schedule_to_start", schedule_to_start),
        ):
            if value is not None:
                doc[key] = duration_text(value, f"{path}.{key}")
        if input is not None:
            doc["input"] = input
        if for_each is not None:
            doc["for_each"] = for_each
        if max_parallel is not None:
            doc["max_parallel"] = max_parallel
        if concurrency is not None:
            doc["concurrency"] = concurrency.to_document()
        if rate_limit is not None:
            doc["rate_limit"] = rate_limit.to_document(f"{path}.rate_limit")
        return self._add(id, doc, depends_on, when, handler=handler, fn=_fn)

    # ------------------------------------------------------------------ steps without a handler

    def sleep(self, id: str, duration: Duration, *, depends_on: Sequence[StepRef] = (), when: str | None = None) -> Step:  # noqa: A002
        """A durable sleep step (`sleep:`): waits `duration`, holding no worker."""
        doc = {"sleep": duration_text(duration, f"steps[{len(self.steps)}].sleep")}
        return self._add(id, doc, depends_on, when)

    def wait_for_event(
        self,
        id: str,  # noqa: A002
        event: str,
        *,
        key: str | None = None,
        timeout: Duration | None = None,
        on_timeout: str | None = None,
        depends_on: Sequence[StepRef] = (),
        when: str | None = None,
    ) -> Step:
        """A step that waits for the event `event` (published with `Client.publish_event`) whose
        key equals the CEL expression `key`; its output is the event's payload. `on_timeout`:
        `fail` or `skip`."""
        wait: dict[str, Any] = {"event": event}
        if key is not None:
            wait["key"] = key
        if timeout is not None:
            wait["timeout"] = duration_text(timeout, f"steps[{len(self.steps)}].wait_for_event.timeout")
        if on_timeout is not None:
            wait["on_timeout"] = on_timeout
        return self._add(id, {"wait_for_event": wait}, depends_on, when)

    def human(
        self,
        id: str,  # noqa: A002
        *,
        title: str,
        description: str = "",
        assignees: Sequence[str] = (),
        form: Mapping[str, Any] | type[pydantic.BaseModel] | None = None,
        timeout: Duration | None = None,
        on_timeout: str | None = None,
        depends_on: Sequence[StepRef] = (),
        when: str | None = None,
    ) -> Step:
        """A human task: one of `assignees` completes it with data that the JSON Schema `form` (or
        a pydantic model's schema) checks; that data is the step's output."""
        human: dict[str, Any] = {"title": title}
        if description:
            human["description"] = description
        if assignees:
            human["assignees"] = list(assignees)
        schema = _schema(form)
        if schema is not None:
            human["form"] = schema
        if timeout is not None:
            human["timeout"] = duration_text(timeout, f"steps[{len(self.steps)}].human.timeout")
        if on_timeout is not None:
            human["on_timeout"] = on_timeout
        return self._add(id, {"human": human}, depends_on, when)

    def child(
        self,
        id: str,  # noqa: A002
        workflow: str,
        *,
        version: int | None = None,
        input: Any = None,  # noqa: A002
        depends_on: Sequence[StepRef] = (),
        when: str | None = None,
    ) -> Step:
        """A step that runs the workflow `workflow` (`version`: the latest when None) as a child
        run with `input` (a template; the run input when None); its output is the child's."""
        child: dict[str, Any] = {"name": workflow}
        if version is not None:
            child["version"] = version
        doc: dict[str, Any] = {"workflow": child}
        if input is not None:
            doc["input"] = input
        return self._add(id, doc, depends_on, when)

    # ------------------------------------------------------------------ the document

    def _add(
        self,
        step_id: str,
        doc: dict[str, Any],
        depends_on: Sequence[StepRef],
        when: str | None,
        *,
        handler: str = "",
        fn: Callable[..., Any] | None = None,
    ) -> Step:
        path = f"steps[{len(self.steps)}]"
        if len(self.steps) >= MAX_STEPS:
            raise ValueError(f"steps: at most {MAX_STEPS} steps per workflow")
        if not isinstance(step_id, str) or not _STEP_ID.match(step_id):
            raise ValueError(f"{path}.id: {str(step_id)[:80]!r} must be 1 to 64 characters of letters, digits, '_', '-'")
        if any(s.id == step_id for s in self.steps):
            raise ValueError(f"{path}.id: step {step_id!r} is declared twice")
        if isinstance(depends_on, (str, bytes)):
            raise ValueError(f"{path}.depends_on: a list of steps, not one string")
        parents = [self._ref(ref, f"{path}.depends_on[{i}]") for i, ref in enumerate(depends_on)]
        document: dict[str, Any] = {"id": step_id}
        if parents:
            document["depends_on"] = parents
        if when is not None:
            document["when"] = when
        document.update(doc)
        step = Step(id=step_id, handler=handler, fn=fn, document=document)
        self.steps.append(step)
        if fn is not None:
            self._by_fn[fn] = step_id
        return step

    def _ref(self, ref: StepRef, path: str) -> str:
        if isinstance(ref, Step):
            step_id = ref.id
        elif isinstance(ref, str):
            step_id = ref
        elif callable(ref) and ref in self._by_fn:
            step_id = self._by_fn[ref]
        else:
            raise ValueError(f"{path}: {ref!r} is not a step of workflow {self.name!r} declared before this one")
        if not any(s.id == step_id for s in self.steps):
            raise ValueError(f"{path}: no step {step_id!r} declared before this one in workflow {self.name!r}")
        return step_id

    @property
    def handlers(self) -> dict[str, Callable[..., Any]]:
        """The functions of the steps declared with `@wf.step`, by handler name."""
        return {s.handler: s.fn for s in self.steps if s.fn is not None}

    def definition(self) -> dict[str, Any]:
        """The definition document (what a YAML file of this workflow parses to), ready for
        `Client.register_workflow`. ValueError when the workflow has no step."""
        if not self.steps:
            raise ValueError(f"steps: workflow {self.name!r} has no step")
        doc: dict[str, Any] = {"name": self.name, "version": self.version}
        if self.description:
            doc["description"] = self.description
        if self.input_schema is not None:
            doc["input_schema"] = self.input_schema
        if self.timeout is not None:
            doc["timeout"] = self.timeout
        if self.max_concurrent_runs is not None:
            doc["max_concurrent_runs"] = self.max_concurrent_runs
        if self.concurrency_key is not None:
            doc["concurrency_key"] = self.concurrency_key
        doc["steps"] = [dict(s.document) for s in self.steps]
        return doc

    def __repr__(self) -> str:
        return f"Workflow({self.name!r}, version={self.version}, steps={[s.id for s in self.steps]})"
