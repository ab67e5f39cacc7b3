"""The load-and-fault suite (tests/load, docs/loadtest.md) in its short version: CI runs it
on SQLite, and on PostgreSQL (a private cluster it may restart) when TEST_DATABASE_URL is set.
It fails when any invariant was violated; the table is printed either way (pytest -s, or
in the failure report). ``make loadtest`` runs the full length."""
from __future__ import annotations

import subprocess
import sys

import pytest

from .conftest import DATABASES
from .support import ROOT, require_private_postgres


@pytest.mark.parametrize("database", DATABASES)
def test_short_load_and_fault_run_keeps_every_invariant(database, tmp_path):
    if database == "postgresql":
        require_private_postgres()
    run = subprocess.run(
        [sys.executable, "-m", "tests.load", "--profile", "short", "--target", database, "--out", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL,
    )
    print(run.stdout)
    print(run.stderr[-4000:], file=sys.stderr)
    assert run.returncode == 0, f"invariants violated (exit {run.returncode}):\n{run.stdout}\n{run.stderr[-4000:]}"
