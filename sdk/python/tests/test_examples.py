"""The seed examples (examples/python/*.py) run against a real coordinator: each exits 0 and prints
the outcome a user expects."""

from __future__ import annotations

import subprocess
import sys

from conftest import REPO, Cluster


def run_example(cluster: Cluster, name: str, *args: str) -> str:
    cluster.handlers.update({"expense.submit", "expense.process", "report.collect", "report.summarize"})
    env = cluster.env({"BATON_ADDR": cluster.addr, "BATON_WORKER_ID": f"example-{name}"})
    done = subprocess.run(
        [sys.executable, str(REPO / "examples" / "python" / f"{name}.py"), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_the_expense_approval_example_pays_an_approved_expense_and_files_a_rejected_one(cluster: Cluster) -> None:
    out = run_example(cluster, "expense_approval", "--amount", "42.50")
    assert "manager approved it" in out, out
    assert "run succeeded" in out and "'status': 'paid'" in out and "'amount': '42.5'" in out, out
    out = run_example(cluster, "expense_approval", "--reject")
    assert "manager rejected it" in out and "'status': 'rejected'" in out, out


def test_the_nightly_report_example_sleeps_waits_for_its_event_and_summarizes(cluster: Cluster) -> None:
    out = run_example(cluster, "nightly_report", "--sleep", "1s", "--date", "2026-11-30", "--schedule")
    assert "schedule nightly-report/02h created (paused)" in out, out
    assert "published report.data-ready for 2026-11-30" in out, out
    assert "step cool_down: succeeded" in out, out
    assert "run succeeded" in out and "'upstream': {'rows': 1234, 'source': 'warehouse'}" in out, out
    assert "event from summarize: {'summarizing': '2026-11-30'}" in out, out
