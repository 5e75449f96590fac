#!/usr/bin/env python3
"""An order workflow written in Python: the same definition as orders.yaml beside it, declared
with `Workflow` and `@wf.step`, served by a worker that registers it when it starts, and run with
`client.run(...)`, which follows the run to its end and returns a typed result.

    ./deploy/local/up.sh                                   # once: Redis, RabbitMQ, a coordinator
    python sdk/python/examples/orders.py --item book --quantity 2

The script runs the worker in the background, runs one order, prints the shipment (a pydantic
model) and the last runs of `orders`. `python -m baton.worker orders:worker` (from this
directory) runs the worker alone. Settings: BATON_ADDR (default http://127.0.0.1:7450; `host:port`
works too), BATON_TOKEN, BATON_AMQP_URL, BATON_NAMESPACE, as for every worker.
"""

from __future__ import annotations

import argparse
import asyncio
import uuid
from datetime import timedelta

from pydantic import BaseModel, Field

from baton import AsyncClient, Context, NonRetryableError, RetryPolicy, RunFailed, Worker, Workflow

PRICES = {"book": 12.5, "pen": 1.25, "lamp": 40.0}

wf = Workflow(
    "orders",
    version=1,
    description="Charge an order, then ship it and send a receipt.",
    timeout=timedelta(hours=1),
    input_schema={
        "type": "object",
        "required": ["item", "quantity", "email"],
        "additionalProperties": False,
        "properties": {
            "item": {"type": "string", "minLength": 1},
            "quantity": {"type": "integer", "minimum": 1, "maximum": 1000},
            "email": {"type": "string", "minLength": 3},
        },
    },
)


class Order(BaseModel):
    item: str
    quantity: int = Field(ge=1, le=1000)
    email: str


class Charge(BaseModel):
    amount: float
    paid: bool
    payment_id: str


class Shipment(BaseModel):
    item: str
    quantity: int
    tracking: str


class Receipt(BaseModel):
    email: str
    amount: float


@wf.step(
    timeout=30,
    retry=RetryPolicy(
        max_attempts=5,
        initial_interval=0.2,
        backoff_coefficient=2,
        max_interval=timedelta(seconds=5),
        non_retryable_errors=["CardDeclined"],
    ),
)
async def charge(order: Order, ctx: Context) -> Charge:
    """Charges the order once whatever the retries: the payment is keyed by the step's
    idempotency key."""
    if order.item not in PRICES:
        raise NonRetryableError(f"no price for {order.item!r}", type="CardDeclined")
    return Charge(amount=PRICES[order.item] * order.quantity, paid=True, payment_id=ctx.idempotency_key)


@wf.step(depends_on=[charge], when="steps.charge.output.paid == true", timeout=90, heartbeat_timeout="10s")
async def ship(order: Order, ctx: Context) -> Shipment:
    await ctx.heartbeat()
    return Shipment(item=order.item, quantity=order.quantity, tracking=f"TRK-{ctx.run_id[-8:]}")


@wf.step(
    depends_on=[charge],
    timeout="30s",
    input={"email": "${{ input.email }}", "amount": "${{ steps.charge.output.amount }}"},
)
def receipt(r: Receipt) -> dict[str, object]:
    """A sync handler (it runs in the worker's thread pool)."""
    return {"sent_to": r.email, "amount": r.amount}


worker = Worker(workflows=[wf])


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--item", default="book")
    parser.add_argument("--quantity", type=int, default=2)
    parser.add_argument("--email", default="ada@example.com")
    args = parser.parse_args()

    stop = asyncio.Event()
    serving = asyncio.create_task(worker.serve(stop))
    try:
        async with AsyncClient() as client:  # BATON_ADDR
            # The worker registers `orders` as it starts; registering the same document here too
            # is harmless and makes sure it exists before the run is submitted.
            await client.register_workflow(wf)
            order = {"item": args.item, "quantity": args.quantity, "email": args.email}
            try:
                shipment = await client.run(
                    "orders", order, result_type=Shipment, step="ship", idempotency_key=str(uuid.uuid4())
                )
            except RunFailed as e:
                print(f"order failed: {e.run.status}: {e.run.error}")
                return 1
            print(f"shipped: {shipment!r}")
            async for run in client.list_runs("orders", status="succeeded", max_runs=3):
                print(f"  run {run.id}: {run.status}")
            return 0
    finally:
        stop.set()
        await serving


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
