"""Experiment grids on the tiny model: a real SQLite file, resume after kill -9, concurrent runs."""

import json
import sqlite3
import sys
from dataclasses import replace

import pytest
import torch

from cramming import CrammingError, LoadedModel, api
from cramming.core.recipes import RECIPES
from cramming.experiments.runner import ModelId, Spec, batches, run_local, thin
from cramming.files.database import KEY, Store

from .conftest import BlowsUp
from .grid import comparable, cram, kill_9_after


def test_grid_runs_once_and_rerun_skips(spec_file, tmp_path):
    spec = Spec.from_toml(spec_file())
    store = Store(tmp_path / "r.sqlite")
    assert run_local(spec, store, device="cpu") == 4
    rows = store.rows()
    assert len(rows) == 4 and all(r["tokens"] == r["length"] for r in rows)
    assert all(r["exact"] and r["accuracy_with"] == 1.0 for r in rows)
    skipped = []
    assert run_local(spec, store, device="cpu", on_skipped=skipped.append) == 0 and len(store.rows()) == 4
    assert skipped == [4]
    history = store.history(rows[0])
    assert history and history[0][0] == 0 and history[-1][2] == 1.0
    assert len(store.text(rows[0])) > 0 and store.text(dict(rows[0], sample=99)) is None
    meta = store.metadata(rows[0])  # the vector file records the spec's budget, not the recipe's 5000
    assert meta["recipe"]["max_steps"] == spec.max_steps == 300 and meta["n_tokens"] == 4


def test_rows_are_keyed_by_what_ran(spec_file, tiny_lm, tmp_path, monkeypatch):
    spec = Spec.from_toml(spec_file(samples=1))
    store = Store(tmp_path / "r.sqlite")
    assert run_local(spec, store, device="cpu") == 2
    [row] = [r for r in store.rows() if r["length"] == 4]
    assert row["model_fingerprint"] == tiny_lm.fingerprint
    assert row["tokenizer_fingerprint"] == tiny_lm.tokenizer_fingerprint
    assert row["recipe"] == RECIPES["default"].name and row["recipe_digest"] == spec.recipe("default").digest()
    assert row["budget"] == 300 and store.settings(row)["max_steps"] == 300 and row["text_seed"] == 0
    # Another budget, another text seed, or a changed recipe under the same name: new rows, never a resume.
    assert run_local(replace(spec, max_steps=301), store, device="cpu") == 2
    assert run_local(replace(spec, text_seed=1), store, device="cpu") == 2
    monkeypatch.setitem(RECIPES, "default", replace(RECIPES["default"], lr=0.25))
    assert run_local(spec, store, device="cpu") == 2
    rows = store.rows()
    assert len(rows) == 8 and len({r["recipe_digest"] for r in rows}) == 3
    assert {r["recipe"] for r in rows} == {RECIPES["default"].name}
    assert run_local(spec, store, device="cpu") == 0  # the same again: nothing to do


def test_a_database_of_the_old_schema_is_refused_and_left_alone(tmp_path, run_cli, spec_file):
    db = tmp_path / "old.sqlite"
    old = sqlite3.connect(db)
    old.execute("CREATE TABLE results (model TEXT, source TEXT, sample INTEGER, length INTEGER, vectors INTEGER, "
                "recipe TEXT, seed INTEGER, exact REAL, PRIMARY KEY (model, source, sample, length, vectors, recipe, "
                "seed))")
    old.execute("INSERT INTO results VALUES ('smollm2-135m', 'books', 0, 16, 1, 'default', 0, 1.0)")
    old.commit()
    old.close()
    before = db.read_bytes()
    with pytest.raises(CrammingError, match="older cramming"):
        Store(db)
    for args in (["run", str(spec_file()), "--db", str(db)], ["results", "--db", str(db)],
                 ["report", "--db", str(db), "-o", str(tmp_path / "r")]):
        code, _, err = run_cli(*args)
        assert code == 2 and err.count("\n") == 1 and "older cramming" in err
    assert db.read_bytes() == before


def test_a_database_of_schema_2_gains_the_batch_size_and_keeps_every_row(spec_file, tmp_path):
    db = tmp_path / "v2.sqlite"
    store = Store(db)
    assert run_local(Spec.from_toml(spec_file(samples=1)), store, device="cpu") == 2
    before = store.rows(full=True)
    store.close()
    v2 = sqlite3.connect(db)  # the same rows as schema 2 held them: no batch size, no run conditions
    kept = ", ".join(c[1] for c in v2.execute("PRAGMA table_info(results)") if c[1] not in ("batch_size",
                                                                                           "run_conditions"))
    v2.executescript(f"CREATE TABLE old AS SELECT {kept} FROM results; DROP TABLE results; "
                     "ALTER TABLE old RENAME TO results; PRAGMA user_version=2;")
    v2.close()
    after = Store(db).rows(full=True)
    assert sqlite3.connect(db).execute("PRAGMA user_version").fetchone()[0] == 3
    assert [(r["batch_size"], r["conditions"]) for r in after] == [(-1, None)] * 2  # not recorded then
    unchanged = lambda r: {k: v for k, v in r.items() if k not in ("batch_size", "conditions")}  # noqa: E731
    assert [unchanged(r) for r in after] == [unchanged(r) for r in before]


def test_a_diverged_sample_is_stored_as_such_and_the_grid_goes_on(spec_file, tiny_lm, tmp_path, monkeypatch):
    blowing = LoadedModel(tiny_lm.name, BlowsUp(tiny_lm.model, after=3), tiny_lm.tokenizer, tiny_lm.fingerprint,
                          tiny_lm.tokenizer_fingerprint)
    monkeypatch.setattr(api, "as_model", lambda model, device="auto": blowing)
    spec = Spec.from_toml(spec_file(samples=2, lengths=(6, 7)))
    store = Store(tmp_path / "r.sqlite")
    assert run_local(spec, store, device="cpu") == 4  # both batches ran: a blow-up stops one sample, not the grid
    rows = store.rows()
    diverged = [r for r in rows if r["diverged"]]
    assert [(r["length"], r["sample"], r["exact"]) for r in diverged] == [(6, 1, False), (7, 1, False)]
    assert all(store.vector_file(r) for r in diverged)  # their best vectors are kept
    assert all(r["exact"] for r in rows if r["sample"] == 0)


def test_a_bad_spec_leaves_no_database_behind(run_cli, tmp_path):
    spec = tmp_path / "spec.toml"
    spec.write_text('models = ["m"]\nsources = ["file:missing.jsonl"]\nlengths = [8]\n')
    code, _, err = run_cli("run", str(spec), "--db", str(tmp_path / "r.sqlite"))
    assert code == 2 and "no such file: missing.jsonl" in err and err.count("\n") == 1
    assert not (tmp_path / "r.sqlite").exists()


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
    kill_9_after(cram("run", spec, "--db", db), db)
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


def test_a_results_file_records_what_wrote_it(run_cli, spec_file, tmp_path):
    db = tmp_path / "r.sqlite"
    assert run_cli("run", str(spec_file()), "--db", str(db))[0] == 0
    assert run_cli("run", str(spec_file()), "--db", str(db), "--quiet")[0] == 0  # a rerun is a run too
    first, second = Store(db).runs()
    assert first["command"].startswith("cram run ") and second["command"].endswith("--quiet")
    assert first["torch"] == torch.__version__ and first["transformers"] and first["cramming"]
    assert first["source_commit"] is None or len(first["source_commit"].split("+")[0]) == 12
    assert run_cli("report", "--db", str(db), "-o", str(tmp_path / "rep"))[0] == 0
    assert f"`{first['command']}`" in (tmp_path / "rep" / "report.md").read_text()


def test_results_export(run_cli, spec_file, tmp_path):
    db = tmp_path / "r.sqlite"
    assert run_cli("run", str(spec_file()), "--db", str(db))[0] == 0
    code, out, _ = run_cli("results", "--db", str(db), "--format", "json")
    rows = json.loads(out)
    assert code == 0 and len(rows) == 4
    for key in ("model", "model_fingerprint", "source", "text_seed", "sample", "length", "vectors", "recipe",
                "recipe_digest", "seed", "information_gain_bits", "exact", "diverged"):
        assert key in rows[0]
    code, out, _ = run_cli("results", "--db", str(db))
    lines = out.decode().strip().splitlines()
    assert code == 0 and lines[0].startswith("model,recipe,model_fingerprint") and len(lines) == 5
    code, _, err = run_cli("results", "--db", str(tmp_path / "none.sqlite"))
    assert code == 2 and "no such results file" in err


def test_batches_group_samples_and_give_the_same_rows(spec_file, tmp_path):
    spec = Spec.from_toml(spec_file(samples=3))
    keys = list(spec.tasks(ModelId("m", "fp", "tokfp")))
    groups = batches(keys, 2)
    assert sorted(len(b) for b in groups) == [1, 1, 2, 2]
    assert all(len({(k.length, k.vectors, k.recipe, k.seed) for k in b}) == 1 for b in groups)
    assert [len(b) for b in batches(keys, None)] == [3, 3]
    assert batches([], None) == []  # a model with nothing left to run (the Ray executor asks per model)
    one, two = Store(tmp_path / "one.sqlite"), Store(tmp_path / "two.sqlite")
    assert run_local(spec, one, device="cpu", batch_size=1) == 6
    assert run_local(spec, two, device="cpu", batch_size=3) == 6
    a, b = one.rows(), two.rows()
    same = [k for k in KEY if k != "batch_size"]  # the batch size is part of what ran: their own rows
    assert [tuple(r[k] for k in same) for r in a] == [tuple(r[k] for k in same) for r in b]
    assert {r["batch_size"] for r in a} == {1} and {r["batch_size"] for r in b} == {3}
    assert sorted(r["conditions"]["batch_size"] for r in b) == [3, 3, 3, 3, 3, 3]
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


def test_a_spec_can_name_its_passages(spec_file, tmp_path):
    """samples = [1] runs the second passage of the draw alone: the same text, key and outcome as in a run of
    the first two."""
    both, alone = Store(tmp_path / "both.sqlite"), Store(tmp_path / "alone.sqlite")
    run_local(Spec.from_toml(spec_file(samples=2, lengths=(4,))), both, device="cpu")
    spec = Spec.from_toml(spec_file(samples=[1], lengths=(4,)))
    assert spec.size() == 1 and spec.indices == [1]
    assert run_local(spec, alone, device="cpu") == 1
    [row] = alone.rows()
    [same] = [r for r in both.rows() if r["sample"] == 1]
    assert row["sample"] == 1 and alone.text(row) == both.text(same) and row["exact"] == same["exact"]
    for bad in ([], [1, 1], [-1], 0, '"3"'):  # TOML: an empty list, a repeat, a negative, zero, a string
        with pytest.raises(CrammingError, match="samples must be a positive integer .* or a list"):
            Spec.from_toml(spec_file(samples=bad))
