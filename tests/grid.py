"""Helpers for the experiment-grid tests: a `cram` subprocess, counting rows, comparing rows."""

import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest


def cram(*args, env=None):
    return subprocess.Popen([sys.executable, "-m", "cramming", *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)


def kill_9_after(proc, db, rows: int = 2, timeout: float = 600) -> int:
    """kill -9 a `cram` process once the database holds `rows` rows (or after timeout: generous, since a loaded
    machine can take minutes to start Ray) -> the rows it kept."""
    deadline = time.time() + timeout
    while time.time() < deadline and count_rows(db) < rows:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    return count_rows(db)


def count_rows(db) -> int:
    """Rows so far; 0 while the other process has created the file but not yet the table."""
    try:
        return sqlite3.connect(db).execute("SELECT count(*) FROM results").fetchone()[0]
    except sqlite3.OperationalError:
        return 0


def comparable(rows, rel: float = 0.0):
    """Rows without their timings (seconds, finished_at), for ==; with rel, floats match within that relative
    tolerance (a Ray worker runs one thread where this process runs two, and a matmul split over other threads
    rounds its last bits differently)."""
    return [{k: pytest.approx(v, rel=rel) if rel and isinstance(v, float) else v for k, v in r.items()
             if k not in ("seconds", "finished_at")} for r in rows]
