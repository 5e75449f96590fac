#!/usr/bin/env python3
"""A Baton client in Python with no generated code: the coordinator serves gRPC server reflection
(grpc.reflection.v1), so a client can fetch the API's descriptors at run time, build the message
classes from them, and call any RPC.

    pip install grpcio grpcio-reflection protobuf        # the versions of .ci/requirements.txt
    python3 grpc_reflection_example.py                   # list the services and the workflows
    python3 grpc_reflection_example.py --register my-flow.yaml --submit my-flow --input '{"x": 1}'

It lists the services and the RunService's methods, lists the workflows, and with --register
registers a definition file, with --submit submits a run and waits for it (--wait seconds), printing
the run as JSON. The coordinator's address comes from --addr or BATON_ADDR (default
http://127.0.0.1:7450; https:// uses TLS with the CA file of BATON_CA_FILE, or the system's roots),
and a bearer token from BATON_TOKEN when the coordinator requires one. Exit code 0 when every call
succeeded (and the run, if any, succeeded), 1 otherwise.

tests/tests/reflection.rs runs this script against a real coordinator in CI.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool, json_format, message_factory
from google.protobuf import timestamp_pb2  # noqa: F401  (puts the well-known type in the default pool)

# The v1alpha messages of grpcio-reflection are the same on the wire as grpc.reflection.v1's (same
# fields and numbers); the coordinator serves v1, so they are sent to the v1 method.
from grpc_reflection.v1alpha import reflection_pb2

REFLECTION_V1 = "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"
RUN_DONE = {"RUN_STATUS_SUCCEEDED", "RUN_STATUS_FAILED", "RUN_STATUS_CANCELLED", "RUN_STATUS_TIMED_OUT"}


class Api:
    """The coordinator's API as the server describes it through reflection."""

    def __init__(self, channel: grpc.Channel, metadata: list[tuple[str, str]]):
        self.channel = channel
        self.metadata = metadata
        self.pool = descriptor_pool.DescriptorPool()
        self._reflect = channel.stream_stream(
            REFLECTION_V1,
            request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
            response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
        )
        self._files: set[str] = set()

    def _ask(self, **request) -> reflection_pb2.ServerReflectionResponse:
        answers = self._reflect(
            iter([reflection_pb2.ServerReflectionRequest(**request)]), metadata=self.metadata, timeout=10
        )
        answer = next(answers)
        if answer.HasField("error_response"):
            e = answer.error_response
            raise LookupError(f"reflection: {request}: {e.error_message} (code {e.error_code})")
        return answer

    def services(self) -> list[str]:
        return sorted(s.name for s in self._ask(list_services="").list_services_response.service)

    def _add(self, blobs, protos: dict[str, descriptor_pb2.FileDescriptorProto]) -> None:
        for blob in blobs:
            fd = descriptor_pb2.FileDescriptorProto.FromString(blob)
            protos.setdefault(fd.name, fd)

    def load(self, symbol: str) -> None:
        """Adds the file that defines `symbol`, and the files it imports, to the pool."""
        protos: dict[str, descriptor_pb2.FileDescriptorProto] = {}
        self._add(self._ask(file_containing_symbol=symbol).file_descriptor_response.file_descriptor_proto, protos)

        def add(name: str) -> None:
            if name in self._files:
                return
            if name not in protos:
                try:
                    self._add(self._ask(file_by_filename=name).file_descriptor_response.file_descriptor_proto, protos)
                except LookupError:
                    # A well-known type (google/protobuf/timestamp.proto) the server does not serve:
                    # protobuf ships it.
                    fd = descriptor_pb2.FileDescriptorProto()
                    descriptor_pool.Default().FindFileByName(name).CopyToProto(fd)
                    protos[name] = fd
            for dep in protos[name].dependency:
                add(dep)
            self.pool.Add(protos[name])
            self._files.add(name)

        for name in list(protos):
            add(name)

    def method(self, service: str, name: str):
        """A callable for a unary method, taking and returning dicts."""
        self.load(service)
        m = self.pool.FindServiceByName(service).methods_by_name[name]
        request = message_factory.GetMessageClass(m.input_type)
        response = message_factory.GetMessageClass(m.output_type)
        call = self.channel.unary_unary(
            f"/{service}/{name}",
            request_serializer=request.SerializeToString,
            response_deserializer=response.FromString,
        )

        def invoke(**fields) -> dict:
            answer = call(json_format.ParseDict(fields, request()), metadata=self.metadata, timeout=30)
            return json_format.MessageToDict(answer, preserving_proto_field_name=True)

        return invoke


def channel_for(addr: str) -> grpc.Channel:
    if addr.startswith("https://"):
        ca_file = os.environ.get("BATON_CA_FILE")
        roots = open(ca_file, "rb").read() if ca_file else None
        return grpc.secure_channel(addr.removeprefix("https://"), grpc.ssl_channel_credentials(roots))
    return grpc.insecure_channel(addr.removeprefix("http://"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--addr", default=os.environ.get("BATON_ADDR", "http://127.0.0.1:7450"))
    parser.add_argument("--register", metavar="FILE", help="register this definition (YAML or JSON)")
    parser.add_argument("--submit", metavar="WORKFLOW", help="submit a run of this workflow and wait for it")
    parser.add_argument("--input", default="{}", help="the run input, JSON (default {})")
    parser.add_argument("--wait", type=float, default=60, help="seconds to wait for the run (default 60)")
    args = parser.parse_args()

    token = os.environ.get("BATON_TOKEN")
    metadata = [("authorization", f"Bearer {token}")] if token else []
    api = Api(channel_for(args.addr), metadata)
    try:
        services = api.services()
        print("services:", ", ".join(services))
        api.load("baton.v1.RunService")
        run_service = api.pool.FindServiceByName("baton.v1.RunService")
        for m in run_service.methods:
            stream = "stream " if m.server_streaming else ""
            print(f"  RunService.{m.name}({m.input_type.name}) -> {stream}{m.output_type.name}")

        workflows = api.method("baton.v1.WorkflowService", "ListWorkflows")().get("workflows", [])
        print("workflows:", ", ".join(f"{w['name']} v{w.get('version', 0)}" for w in workflows) or "(none)")

        if args.register:
            with open(args.register) as f:
                answer = api.method("baton.v1.WorkflowService", "RegisterWorkflow")(definition=f.read())
            w = answer["workflow"]
            print(f"registered: {w['name']} v{w.get('version', 0)} (new: {answer.get('created', False)})")

        if args.submit:
            json.loads(args.input)  # a clear error here rather than INVALID_ARGUMENT later
            submitted = api.method("baton.v1.RunService", "SubmitRun")(workflow=args.submit, input_json=args.input)
            run_id = submitted["run_id"]
            print(f"submitted: run {run_id}")
            get_run = api.method("baton.v1.RunService", "GetRun")
            deadline = time.monotonic() + args.wait
            while (run := get_run(run_id=run_id))["status"] not in RUN_DONE:
                if time.monotonic() > deadline:
                    print(f"run {run_id} is still {run['status']} after {args.wait} s", file=sys.stderr)
                    return 1
                time.sleep(0.2)
            print(f"run {run_id}: {run['status']}")
            print(json.dumps({"status": run["status"], "output": json.loads(run.get("output_json") or "null")}))
            return 0 if run["status"] == "RUN_STATUS_SUCCEEDED" else 1
    except grpc.RpcError as e:
        print(f"error: {e.code().name}: {e.details()}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
