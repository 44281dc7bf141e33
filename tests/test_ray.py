"""The Ray executor against a real local Ray instance (2 CPUs, token auth disabled)."""

import os
import signal
import sqlite3
import threading
import time

import pytest

from cramming.experiments.runner import Spec, run_local, run_ray
from cramming.files.database import KEY, Store

from .grid import comparable, cram, kill_9_after

ray = pytest.importorskip("ray", reason="the Ray executor's tests need Ray: pip install 'cramming[ray]'")


@pytest.fixture(scope="module")
def ray_address():
    with pytest.MonkeyPatch.context() as patch:  # the environment is restored when the module is done
        patch.setenv("RAY_AUTH_MODE", "disabled")  # inherited by the cluster and by `cram` subprocesses
        ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
        yield ray.get_runtime_context().gcs_address
        ray.shutdown()


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_ray_gives_the_same_rows_as_local(ray_address, spec_file, tmp_path):
    spec = Spec.from_toml(spec_file(samples=2, lengths=(4, 6)))
    local, remote = Store(tmp_path / "local.sqlite"), Store(tmp_path / "ray.sqlite")
    assert run_local(spec, local, device="cpu") == 4
    workers = []
    assert run_ray(spec, remote, device="cpu", on_workers=workers.extend) == 4
    assert len(workers) == 2 and all(w["pid"] != os.getpid() and w["device"] == "cpu" for w in workers)
    assert comparable(remote.rows()) == comparable(local.rows(), rel=1e-5)
    skipped = []
    assert run_ray(spec, remote, device="cpu", on_skipped=skipped.append) == 0  # finished rows are skipped
    assert skipped == [4]


def test_a_worker_killed_mid_task_is_retried(ray_address, spec_file, tmp_path):
    # One vector cannot hold 24 tokens of the tiny model soon: each task runs its 1500 steps, seconds long. Only
    # one of the texts has 24 tokens, so the three tasks are its passage under three seeds.
    spec = Spec.from_toml(spec_file(samples=1, lengths=(24,), vectors=(1,), seeds=(0, 1, 2), max_steps=1500))
    store, killed = Store(tmp_path / "ray.sqlite"), []

    def kill_one(workers):
        def later():
            time.sleep(2)  # both workers are busy with their first task by now
            os.kill(workers[0]["pid"], signal.SIGKILL)
            killed.append(workers[0]["pid"])
        threading.Thread(target=later, daemon=True).start()

    assert run_ray(spec, store, device="cpu", on_workers=kill_one) == 3
    assert killed and not alive(killed[0])
    rows = store.rows()
    assert len(rows) == 3 and len({tuple(r[k] for k in KEY) for r in rows}) == 3
    assert all(r["steps"] > 0 for r in rows)


def test_ray_run_resumes_after_the_driver_is_killed(ray_address, spec_file, tmp_path):
    spec = spec_file(samples=4, lengths=(5, 7, 9))
    db = tmp_path / "killed.sqlite"
    partial = kill_9_after(cram("run", spec, "--db", db, "--executor", "ray", "--address", ray_address), db)
    assert 2 <= partial < 12
    done = cram("run", spec, "--db", db, "--executor", "ray", "--address", ray_address)
    assert done.wait() == 0, done.stderr.read()
    assert f"{partial} already done" in done.stderr.read()
    rows = Store(db).rows()
    assert len(rows) == 12 and len({tuple(r[k] for k in KEY) for r in rows}) == 12
    assert sqlite3.connect(db).execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_bad_address_is_one_line(spec_file, tmp_path):
    proc = cram("run", spec_file(), "--db", tmp_path / "r.sqlite", "--executor", "ray", "--address", "127.0.0.1:1")
    assert proc.wait() == 2
    err = proc.stderr.read()
    assert err.startswith("error: cannot reach a Ray cluster at 127.0.0.1:1") and err.count("\n") == 1
