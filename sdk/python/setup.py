"""Build hook: generates the protobuf modules of baton.v1 from the repository's proto/ files with
grpcio-tools (messages as `*_pb2.py` with `.pyi` type stubs) into the build directory, so that
`pip install ./sdk/python` works from a clean clone and nothing generated is committed.

The .proto files are looked for in ../../proto (a checkout) and then in ./proto (an sdist that
carries a copy).
"""

from __future__ import annotations

import os
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent
PROTO_FILES = ["baton/v1/baton.proto", "baton/v1/task.proto"]


def proto_root() -> Path:
    for candidate in (HERE.parent.parent / "proto", HERE / "proto"):
        if all((candidate / f).is_file() for f in PROTO_FILES):
            return candidate
    raise SystemExit(
        "baton-workflows: proto/baton/v1/*.proto not found (build from a Baton checkout: pip install ./sdk/python)"
    )


def generate(out_dir: Path) -> None:
    import grpc_tools
    from grpc_tools import protoc

    root = proto_root()
    include = Path(grpc_tools.__file__).resolve().parent / "_proto"
    target = out_dir / "baton" / "v1"
    target.mkdir(parents=True, exist_ok=True)
    args = [
        "grpc_tools.protoc",
        f"-I{root}",
        f"-I{include}",
        f"--python_out={out_dir}",
        f"--pyi_out={out_dir}",
        *[str(root / f) for f in PROTO_FILES],
    ]
    if protoc.main(args) != 0:
        raise SystemExit("baton-workflows: protoc failed on " + ", ".join(PROTO_FILES))
    init = target / "__init__.py"
    if not init.exists():
        init.write_text('"""Protobuf messages of baton.v1, generated from proto/ at build time."""\n')


class BuildPyWithProtos(build_py):
    """build_py that first generates baton/v1 into the build directory (and, for editable
    installs, into src/)."""

    def run(self) -> None:
        super().run()
        generate(Path(self.build_lib))
        if self.editable_mode:
            generate(HERE / "src")


if os.environ.get("BATON_SDK_GENERATE_ONLY"):
    generate(HERE / "src")
else:
    setup(cmdclass={"build_py": BuildPyWithProtos})
