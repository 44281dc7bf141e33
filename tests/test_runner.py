"""Experiment grids on the tiny model: a real SQLite file, resume after kill -9, concurrent runs."""

import json
import os
import signal
import sqlite3
import sys
import time

import pytest

from cramming import CrammingError
from cramming.runner import Spec, batches, run_local, thin
from cramming.store import KEY, Store

from .grid import comparable, count_rows, cram


def test_grid_runs_once_and_rerun_skips(spec_file, tmp_path):
    spec = Spec.from_toml(spec_file())
    store = Store(tmp_path / "r.sqlite")
    assert run_local(spec, store, "cpu") == 4
    rows = store.rows()
    assert len(rows) == 4 and all(r["tokens"] == r["length"] for r in rows)
    assert all(r["exact"] and r["accuracy_with"] == 1.0 for r in rows)
    assert run_local(spec, store, "cpu") == 0 and len(store.rows()) == 4
    history = store.history(rows[0])
    assert history and history[0][0] == 0 and history[-1][2] == 1.0
    meta = store.metadata(rows[0])  # the vector file records the spec's budget, not the recipe's 5000
    assert json.loads(meta["recipe"])["max_steps"] == spec.max_steps == 300 and meta["n_tokens"] == "4"


def test_spec_errors(tmp_path):
    bad = tmp_path / "bad.toml"
    for text, pattern in [("models = [", "not valid TOML"), ('models = ["m"]\nsources = ["books"]\nlengths = [8]\n'
                                                              "colour = 1", "unknown key"),
                          ('models = ["m"]\nsources = ["books"]\nlengths = []', "non-empty"),
                          ('models = ["m"]\nsources = ["books"]\nlengths = [8]\nrecipes = ["x"]', "unknown recipe")]:
        bad.write_text(text)
        with pytest.raises(CrammingError, match=pattern):
            Spec.from_toml(bad)


def test_thin_keeps_the_ends():
    h = [(i, 1.0 / (i + 1), i / 999) for i in range(1000)]
    t = thin(h, 50)
    assert len(t) == 50 and t[0] == h[0] and t[-1] == h[-1]


def test_kill_9_then_resume_gives_the_same_rows(spec_file, tmp_path):
    spec = spec_file(samples=4, lengths=(5, 7, 9))
    reference = tmp_path / "reference.sqlite"
    assert cram("run", spec, "--db", reference).wait() == 0
    db = tmp_path / "killed.sqlite"
    proc = cram("run", spec, "--db", db)
    deadline = time.time() + 120
    while time.time() < deadline:
        time.sleep(0.05)
        if db.exists() and count_rows(db) >= 2:
            break
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    partial = Store(db).rows()
    assert 2 <= len(partial) < 12
    done = cram("run", spec, "--db", db)
    assert done.wait() == 0, done.stderr.read()
    assert f"{len(partial)} already done" in done.stderr.read()
    assert comparable(Store(db).rows()) == comparable(Store(reference).rows())
    assert sqlite3.connect(db).execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_two_runs_on_one_database_at_once(spec_file, tmp_path):
    spec, db = spec_file(samples=3), tmp_path / "shared.sqlite"
    procs = [cram("run", spec, "--db", db) for _ in range(2)]
    assert [p.wait() for p in procs] == [0, 0]
    rows = Store(db).rows()
    assert len(rows) == 6 and len({tuple(r[k] for k in KEY) for r in rows}) == 6
    assert sqlite3.connect(db).execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_results_export(run_cli, spec_file, tmp_path):
    db = tmp_path / "r.sqlite"
    assert run_cli("run", str(spec_file()), "--db", str(db))[0] == 0
    code, out, _ = run_cli("results", "--db", str(db), "--format", "json")
    rows = json.loads(out)
    assert code == 0 and len(rows) == 4
    for key in ("model", "source", "sample", "length", "vectors", "recipe", "seed", "information_gain_bits", "exact"):
        assert key in rows[0]
    code, out, _ = run_cli("results", "--db", str(db))
    lines = out.decode().strip().splitlines()
    assert code == 0 and lines[0].startswith("model,source,sample,length") and len(lines) == 5
    code, _, err = run_cli("results", "--db", str(tmp_path / "none.sqlite"))
    assert code == 2 and "no such results file" in err


def test_batches_group_samples_and_give_the_same_rows(spec_file, tmp_path):
    spec = Spec.from_toml(spec_file(samples=3))
    keys = list(spec.tasks())
    groups = batches(keys, 2)
    assert sorted(len(b) for b in groups) == [1, 1, 2, 2]
    assert all(len({(k.length, k.vectors, k.recipe, k.seed) for k in b}) == 1 for b in groups)
    assert [len(b) for b in batches(keys, None)] == [3, 3]
    assert batches([], None) == []  # a model with nothing left to run (the Ray executor asks per model)
    one, two = Store(tmp_path / "one.sqlite"), Store(tmp_path / "two.sqlite")
    assert run_local(spec, one, "cpu", batch_size=1) == 6
    assert run_local(spec, two, "cpu", batch_size=3) == 6
    a, b = one.rows(), two.rows()
    assert [tuple(r[k] for k in KEY) for r in a] == [tuple(r[k] for k in KEY) for r in b]
    assert all(r["exact"] for r in a + b)


def test_run_cli_rejects_bad_executor_options(run_cli, spec_file, tmp_path, monkeypatch):
    db = str(tmp_path / "r.sqlite")
    code, _, err = run_cli("run", str(spec_file()), "--db", db, "--executor", "spark")
    assert code == 2 and "unknown executor" in err
    code, _, err = run_cli("run", str(spec_file()), "--db", db, "--batch-size", "0")
    assert code == 2 and "at least 1" in err
    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    code, _, err = run_cli("run", str(spec_file()), "--db", db, "--executor", "ray")
    assert code == 2 and "pip install 'cramming[ray]'" in err
