#!/usr/bin/env python3
"""Expense approval (litestar-workflows' quick start) with Baton's Python SDK: an expense is
submitted and checked, a manager approves or rejects it in a form (a human task), then it is
processed: paid when approved, filed as rejected otherwise.

    ./deploy/local/up.sh                              # once: Redis, RabbitMQ, a coordinator
    ./examples/python/run.sh expense_approval         # this script, in a venv with the SDK

The script registers the workflow `expense-approval`, runs a Python worker for its two handlers in
the background, submits one expense, then plays the manager: it finds the open human task and
completes it (`--reject` rejects; `--interactive` asks you on the terminal instead). It prints the
run's events as they happen and the final output. Settings: BATON_ADDR (default
http://127.0.0.1:7450), BATON_TOKEN, BATON_AMQP_URL, BATON_NAMESPACE as for the other workers.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import uuid
from decimal import Decimal

from pydantic import BaseModel, Field

from baton import AsyncClient, Context, NonRetryableError, Worker

ADDR = os.environ.get("BATON_ADDR") or os.environ.get("BATON_COORDINATOR") or "http://127.0.0.1:7450"

WORKFLOW = {
    "name": "expense-approval",
    "version": 1,
    "description": "Submit an expense, have a manager approve it, then process it.",
    "input_schema": {
        "type": "object",
        "required": ["employee", "amount", "description"],
        "properties": {
            "employee": {"type": "string"},
            "amount": {"type": "number", "exclusiveMinimum": 0},
            "description": {"type": "string"},
        },
    },
    "steps": [
        {"id": "submit", "handler": "expense.submit", "timeout": "30s"},
        {
            "id": "approve",
            "depends_on": ["submit"],
            "human": {
                "title": "Approve an expense",
                "description": "Approve or reject the expense in the output of step `submit`.",
                "assignees": ["manager"],
                "form": {
                    "type": "object",
                    "required": ["approved"],
                    "additionalProperties": False,
                    "properties": {
                        "approved": {"type": "boolean"},
                        "comment": {"type": "string", "maxLength": 500},
                    },
                },
            },
        },
        {"id": "process", "handler": "expense.process", "depends_on": ["approve"], "timeout": "30s"},
    ],
}


class Expense(BaseModel):
    employee: str = Field(min_length=1)
    amount: Decimal = Field(gt=0, max_digits=12, decimal_places=2)
    description: str


class Decision(BaseModel):
    approved: bool
    comment: str = ""


worker = Worker(coordinator=ADDR, worker_id=f"expense-example-{os.getpid()}")


@worker.handler("expense.submit")
async def submit(expense: Expense, ctx: Context) -> dict[str, object]:
    """Checks the expense and gives it a reference."""
    if expense.amount > 10_000:
        raise NonRetryableError(f"{expense.amount} is over the 10000 limit", type="OverLimit")
    return {"reference": f"EXP-{ctx.run_id[-8:]}", "employee": expense.employee, "amount": str(expense.amount)}


@worker.handler("expense.process")
async def process(expense: Expense, ctx: Context) -> dict[str, object]:
    """Pays an approved expense (idempotently: the payment is keyed by the step's idempotency key)."""
    decision = ctx.parent_output("approve", Decision)
    reference = ctx.run_id[-8:]
    if not decision.approved:
        return {"status": "rejected", "reference": f"EXP-{reference}", "comment": decision.comment}
    return {
        "status": "paid",
        "reference": f"EXP-{reference}",
        "amount": str(expense.amount),
        "payment_id": ctx.idempotency_key,
    }


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--employee", default="ada")
    parser.add_argument("--amount", default="42.50")
    parser.add_argument("--description", default="train ticket to the customer")
    parser.add_argument("--reject", action="store_true", help="the manager rejects the expense")
    parser.add_argument("--interactive", action="store_true", help="ask for the decision on the terminal")
    args = parser.parse_args()

    stop = asyncio.Event()
    serving = asyncio.create_task(worker.serve(stop))
    try:
        async with AsyncClient(ADDR) as client:
            await client.register_workflow(WORKFLOW)
            expense = {"employee": args.employee, "amount": float(args.amount), "description": args.description}
            run_id = (await client.submit("expense-approval", expense, idempotency_key=str(uuid.uuid4()))).run_id
            print(f"submitted run {run_id}")
            async for event in client.watch(run_id):
                if event.kind == "step":
                    print(f"  step {event.step_id}: {event.status} {event.detail}".rstrip())
                if event.step_id == "approve" and event.status == "waiting":
                    tasks = await client.list_human_tasks(assignee="manager", status="open", workflow="expense-approval")
                    task = next(t for t in tasks if t.run_id == run_id)
                    approved = not args.reject
                    if args.interactive:
                        answer = await asyncio.to_thread(input, f"{task.title}: {expense}. Approve? [y/N] ")
                        approved = answer.strip().lower().startswith("y")
                    await client.complete_human_task(
                        run_id, "approve", "manager", {"approved": approved, "comment": "looks fine" if approved else "no"}
                    )
                    print(f"  manager {'approved' if approved else 'rejected'} it")
            run = await client.get_run(run_id)
            print(f"run {run.status}: {run.output if run.status == 'succeeded' else run.error}")
            return 0 if run.status == "succeeded" else 1
    finally:
        stop.set()
        await serving


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
