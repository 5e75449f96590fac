"""`python -m baton.worker module:attribute`: imports `module` (from the current directory too) and
runs the Worker it names (attribute default `worker`) until SIGTERM or Ctrl-C."""

from __future__ import annotations

import importlib
import os
import sys

from baton.worker import Worker


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or args[0] in ("-h", "--help"):
        print("usage: python -m baton.worker MODULE[:ATTRIBUTE]   (ATTRIBUTE defaults to `worker`)", file=sys.stderr)
        return 2
    module_name, _, attribute = args[0].partition(":")
    sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        print(f"error: cannot import {module_name!r}: {e}", file=sys.stderr)
        return 2
    worker = getattr(module, attribute or "worker", None)
    if not isinstance(worker, Worker):
        print(f"error: {module_name}:{attribute or 'worker'} is not a baton.Worker", file=sys.stderr)
        return 2
    worker.run()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
