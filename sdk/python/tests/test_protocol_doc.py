"""docs/worker-protocol.md against the proto: every `textproto` example parses as the message its
first line names, every `Message.field` the page quotes exists, every enum value it quotes exists,
and every WorkerService method it names is one. Runs without any server."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest
from google.protobuf import descriptor_pool, text_format
from google.protobuf.message_factory import GetMessageClass

from baton.v1 import baton_pb2, task_pb2

DOC = Path(__file__).resolve().parents[3] / "docs" / "worker-protocol.md"
POOL = descriptor_pool.Default()
FILES = [baton_pb2.DESCRIPTOR, task_pb2.DESCRIPTOR]


def text() -> str:
    return DOC.read_text()


def messages() -> dict[str, object]:
    out: dict[str, object] = {}
    for f in FILES:
        for name, desc in f.message_types_by_name.items():
            out[name] = desc
    return out


def enum_values() -> set[str]:
    return {v.name for f in FILES for e in f.enum_types_by_name.values() for v in e.values}


EXAMPLES = [
    (name, textwrap.dedent(body))
    for name, body in re.findall(r"```textproto\n *# (baton\.v1\.\w+)\n(.*?) *```", text(), re.S)
]


def test_the_page_has_examples_of_the_main_messages() -> None:
    names = {n for n, _ in EXAMPLES}
    assert {"baton.v1.StepTask", "baton.v1.StartStepRequest", "baton.v1.ReportResultRequest"} <= names
    assert {"baton.v1.RegisterWorkerRequest", "baton.v1.Suspend"} <= names


@pytest.mark.parametrize(("name", "body"), EXAMPLES, ids=[n for n, _ in EXAMPLES])
def test_every_textproto_example_parses_as_its_message(name: str, body: str) -> None:
    cls = GetMessageClass(POOL.FindMessageTypeByName(name))
    message = text_format.Parse(body, cls())
    assert message.ByteSize() > 0


def test_every_message_and_field_the_page_quotes_exists() -> None:
    known = messages()
    quoted = set(re.findall(r"`([A-Z][a-z][A-Za-z]+)\.([a-z_]+)`", text()))
    assert len(quoted) > 20, quoted
    for message, field in sorted(quoted):
        assert message in known, f"`{message}.{field}`: no message {message} in the proto"
        fields = {f.name for f in known[message].fields}  # type: ignore[attr-defined]
        assert field in fields, f"`{message}.{field}`: {message} has no field {field} ({sorted(fields)})"
    for name in set(re.findall(r"`([A-Z][A-Za-z]+(?:Request|Response))`", text())):
        assert name in known, f"`{name}` is not a message of the proto"


def test_every_enum_value_and_worker_service_method_the_page_names_exists() -> None:
    values = enum_values()
    for name in set(re.findall(r"\b((?:ATTEMPT_DISPOSITION|WORKER_STATE)_[A-Z_]+)\b", text())):
        assert name in values, f"{name} is not an enum value of the proto"
    methods = {m.name for m in baton_pb2.DESCRIPTOR.services_by_name["WorkerService"].methods}
    named = set(re.findall(r"`WorkerService\.(\w+)`", text()))
    assert named >= {"StartStep", "ReportResult", "Heartbeat", "EmitEvent", "RegisterWorker"}
    assert named <= methods, named - methods
