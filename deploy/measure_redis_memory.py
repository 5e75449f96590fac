#!/usr/bin/env python3
"""Measures what Baton's runs cost in Redis memory, for deploy/README.md's Sizing section.

Starts a coordinator and a stock worker (`baton-coordinator`, `baton-worker` from BIN_DIR, default
target/release, else target/debug) under a namespace of their own on the local Redis and RabbitMQ,
registers a one-step and a ten-step workflow of `echo` steps, submits RUNS runs of each (default
1000), waits for them, and prints per workflow:

- bytes per run in the run's own keys (`MEMORY USAGE ... SAMPLES 0` of `{<ns>}:{<run>}:*`: the run
  hash, the steps hash, the event stream) and in the run indexes (per index entry);
- the growth of Redis's `used_memory` per run (everything, allocator overhead included);
- from the two workflows, the bytes per extra step.

Then it stops both processes and deletes the namespace's keys and queues (its three empty
exchanges stay: rabbitmqctl cannot delete exchanges). Needs redis-cli and
rabbitmqctl, and the Python venv (.ci/python-venv.sh) for grpcio:

    .ci/venv/bin/python deploy/measure_redis_memory.py [--runs 1000]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "examples/python"))
import grpc  # noqa: E402

from grpc_reflection_example import Api  # noqa: E402

WORKFLOWS = {
    "mem-one": "name: mem-one\nversion: 1\nsteps:\n  - {id: s1, handler: echo}\n",
    "mem-ten": "name: mem-ten\nversion: 1\nsteps:\n  - {id: s1, handler: echo}\n"
    + "".join(f"  - {{id: s{i}, handler: echo, depends_on: [s{i - 1}]}}\n" for i in range(2, 11)),
}


def redis(*args: str) -> str:
    return subprocess.run(["redis-cli", *args], check=True, capture_output=True, text=True).stdout.strip()


def redis_many(commands: list[list[str]]) -> list[str]:
    """Runs the commands through one redis-cli (one answer line each)."""
    text = "".join(" ".join(json.dumps(a) for a in c) + "\n" for c in commands)
    out = subprocess.run(["redis-cli"], input=text, check=True, capture_output=True, text=True).stdout
    return out.splitlines()


def used_memory() -> int:
    redis("MEMORY", "PURGE")
    info = redis("INFO", "memory")
    return int(next(line.split(":")[1] for line in info.splitlines() if line.startswith("used_memory:")))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=1000)
    args = parser.parse_args()
    bin_dir = Path(os.environ.get("BIN_DIR", ROOT / "target/release"))
    if not (bin_dir / "baton-coordinator").exists():
        bin_dir = ROOT / "target/debug"
    ns = f"mem-{uuid.uuid4().hex[:8]}"
    port = free_port()
    env = dict(
        os.environ,
        BATON_NAMESPACE=ns,
        BATON_LISTEN=f"127.0.0.1:{port}",
        BATON_COORDINATOR=f"http://127.0.0.1:{port}",
        BATON_QUEUE_TYPE="classic",
        BATON_CONCURRENCY="64",
        RUST_LOG="warn",
    )
    logs = open(f"/tmp/{ns}.log", "w")
    coordinator = subprocess.Popen([bin_dir / "baton-coordinator"], env=env, stdout=logs, stderr=logs)
    worker = subprocess.Popen([bin_dir / "baton-worker"], env=env, stdout=logs, stderr=logs)
    try:
        api = Api(grpc.insecure_channel(f"127.0.0.1:{port}"), [])
        deadline = time.monotonic() + 60
        while True:
            try:
                list_workflows = api.method("baton.v1.WorkflowService", "ListWorkflows")
                list_workflows()
                break
            except (grpc.RpcError, LookupError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        register = api.method("baton.v1.WorkflowService", "RegisterWorkflow")
        submit = api.method("baton.v1.RunService", "SubmitRun")
        get_run = api.method("baton.v1.RunService", "GetRun")
        results = {}
        for name, definition in WORKFLOWS.items():
            register(definition=definition)
            time.sleep(1)
            before = used_memory()
            ids = [submit(workflow=name, input_json=json.dumps({"n": i}))["run_id"] for i in range(args.runs)]
            for run_id in ids:
                while get_run(run_id=run_id)["status"] != "RUN_STATUS_SUCCEEDED":
                    time.sleep(0.05)
            time.sleep(1)
            after = used_memory()
            # The run's own keys, for every run.
            keys = [f"{{{ns}}}:{{{r}}}:{k}" for r in ids for k in ("run", "steps", "events")]
            sizes = redis_many([["MEMORY", "USAGE", k, "SAMPLES", "0"] for k in keys])
            per_key = {k: 0 for k in ("run", "steps", "events")}
            for key, size in zip(keys, sizes):
                per_key[key.rsplit(":", 1)[1]] += int(size or 0)
            per_key = {k: v / len(ids) for k, v in per_key.items()}
            results[name] = {
                "runs": len(ids),
                "own_keys_bytes_per_run": round(sum(per_key.values())),
                "by_key": {k: round(v) for k, v in per_key.items()},
                "used_memory_bytes_per_run": round((after - before) / len(ids)),
            }
        # The indexes: every run has an entry in the all-runs index and its workflow's.
        index = f"{{{ns}}}:runs"
        members = int(redis("ZCARD", index) or 0)
        index_bytes = int(redis("MEMORY", "USAGE", index, "SAMPLES", "0") or 0)
        results["index_bytes_per_entry"] = round(index_bytes / members) if members else None
        one, ten = results["mem-one"], results["mem-ten"]
        results["bytes_per_extra_step"] = {
            "own_keys": round((ten["own_keys_bytes_per_run"] - one["own_keys_bytes_per_run"]) / 9),
            "used_memory": round((ten["used_memory_bytes_per_run"] - one["used_memory_bytes_per_run"]) / 9),
        }
        results["redis_version"] = next(
            line.split(":")[1] for line in redis("INFO", "server").splitlines() if line.startswith("redis_version:")
        )
        print(json.dumps(results, indent=2))
        return 0
    finally:
        for p in (worker, coordinator):
            p.terminate()
        for p in (worker, coordinator):
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
        keys = [k for k in redis("--scan", "--pattern", f"{{{ns}}}:*").splitlines() if k]
        for i in range(0, len(keys), 500):
            redis_many([["DEL", *keys[i : i + 500]]])
        # The stock worker declares the queues of its three handlers.
        for q in (f"{ns}.step.echo", f"{ns}.step.sleep", f"{ns}.step.fail", f"{ns}.dead-letter"):
            subprocess.run(["rabbitmqctl", "-q", "delete_queue", q], capture_output=True)


if __name__ == "__main__":
    sys.exit(main())
