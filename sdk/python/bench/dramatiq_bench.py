"""The Dramatiq side of the comparison in sdk/python/README.md: the same two measurements as
`baton bench --only one,chain`, on Dramatiq's own Python workers with the same RabbitMQ and Redis.

- one-step: N `echo` messages, `--in-flight` (64) at once, each awaited through Dramatiq's Results
  middleware (Redis backend, a blocking wait: no polling, unlike Baton's bench); messages/s.
- chain: a pipeline of 50 `echo` actors, each fed the previous result; ms per step.

Each is repeated `--repeat` times and the median printed. The script starts the Dramatiq worker
itself (`dramatiq --processes P --threads T`) and stops it. Needs `pip install
'dramatiq[rabbitmq,redis]'` (not part of the SDK or of CI).

    python dramatiq_bench.py --runs 2000 --processes 1 --threads 16
"""

from __future__ import annotations

import argparse
import concurrent.futures
import os
import statistics
import subprocess
import sys
import time

import dramatiq
from dramatiq.brokers.rabbitmq import RabbitmqBroker
from dramatiq.common import dq_name, xq_name
from dramatiq.results import Results
from dramatiq.results.backends import RedisBackend

QUEUE = os.environ.get("DRAMATIQ_BENCH_QUEUE", "baton-bench-dramatiq")
broker = RabbitmqBroker(url=os.environ.get("BATON_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2f"))
backend = RedisBackend(url=os.environ.get("DRAMATIQ_REDIS_URL", "redis://127.0.0.1:6379/0"), namespace=QUEUE)
broker.add_middleware(Results(backend=backend))
dramatiq.set_broker(broker)


@dramatiq.actor(store_results=True, queue_name=QUEUE, max_retries=0)
def echo(value: object) -> object:
    return value


def one_step(runs: int, in_flight: int) -> float:
    def one(i: int) -> None:
        echo.send({"i": i}).get_result(block=True, timeout=60_000)

    began = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(in_flight) as pool:
        list(pool.map(one, range(runs)))
    return runs / (time.perf_counter() - began)


def chain(steps: int) -> float:
    pipe = dramatiq.pipeline([echo.message({"i": 0})] + [echo.message() for _ in range(steps - 1)])
    began = time.perf_counter()
    pipe.run()
    pipe.get_result(block=True, timeout=60_000)
    return (time.perf_counter() - began) * 1000 / steps


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--runs", type=int, default=2000)
    p.add_argument("--in-flight", type=int, default=64)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--processes", type=int, default=1)
    p.add_argument("--threads", type=int, default=16)
    args = p.parse_args()
    here = os.path.dirname(os.path.abspath(__file__))
    worker = subprocess.Popen(
        [sys.executable, "-m", "dramatiq", "dramatiq_bench", "--processes", str(args.processes),
         "--threads", str(args.threads), "--path", here],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        echo.send({"warm": True}).get_result(block=True, timeout=60_000)
        rates = [one_step(args.runs, args.in_flight) for _ in range(args.repeat)]
        steps = [chain(50) for _ in range(args.repeat)]
    finally:
        worker.terminate()
        worker.wait(timeout=30)
        for queue in (QUEUE, dq_name(QUEUE), xq_name(QUEUE)):
            broker.channel.queue_delete(queue)
    print(f"dramatiq {dramatiq.__version__}, {args.processes} process(es) x {args.threads} threads")
    print(f"one-step: {statistics.median(rates):.0f} messages/s (median of {args.repeat}: {[round(r) for r in rates]})")
    print(f"50-step chain: {statistics.median(steps):.2f} ms per step ({[round(s, 2) for s in steps]})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
