"""Measuring stored rows again: a real SQLite file written by a grid on the tiny model."""

import sqlite3

import pytest

from cramming.core.errors import CrammingError
from cramming.experiments.remeasure import remeasure
from cramming.experiments.runner import Spec, run_local
from cramming.files.database import Store


@pytest.fixture
def grid_db(spec_file, tmp_path):
    store = Store(tmp_path / "grid.sqlite")
    assert run_local(Spec.from_toml(spec_file(samples=2, lengths=(6,))), store, device="cpu") == 2
    return store


def test_remeasure_restores_what_the_rows_measured_and_keeps_what_ran(grid_db, tiny_lm):
    before = grid_db.rows()
    grid_db.db.execute("UPDATE results SET ce_without_bits = ce_without_bits + 100, information_gain_bits = "
                       "information_gain_bits + 100 WHERE sample = 0")
    done = remeasure(grid_db, tiny_lm)
    assert (done.rows, done.changed) == (2, 1) and done.mean_gain_change == pytest.approx(-50, abs=0.01)
    after = grid_db.rows()
    for b, a in zip(before, after):
        assert {k: v for k, v in a.items() if not isinstance(v, float)} == \
               {k: v for k, v in b.items() if not isinstance(v, float)}
        for m in ("ce_without_bits", "ce_with_bits", "information_gain_bits", "steps", "seconds"):
            assert a[m] == pytest.approx(b[m], abs=1e-3)
    assert remeasure(grid_db, tiny_lm).changed == 0
    with pytest.raises(CrammingError, match="not measured columns: steps"):  # what ran is never rewritten
        grid_db.update_metrics([(after[0], {"ce_with_bits": 0.0, "steps": 1})])
    assert grid_db.rows() == after


def test_remeasure_leaves_other_models_rows_alone(grid_db, tiny_lm, tmp_path):
    from dataclasses import replace

    done = remeasure(grid_db, replace(tiny_lm, fingerprint="another model"))
    assert done.rows == 0 and done.changed == 0


def test_cram_remeasure(run_cli, grid_db, tiny_dir, tmp_path):
    grid_db.db.execute("UPDATE results SET information_gain_bits = 0")
    code, _, err = run_cli("remeasure", "--db", str(grid_db.path))
    assert code == 0 and "2 row(s) measured again, information gain changed on 2" in err + _.decode()
    with sqlite3.connect(grid_db.path) as db:
        assert db.execute("SELECT count(*) FROM results WHERE information_gain_bits = 0").fetchone()[0] == 0
        assert db.execute("SELECT command FROM runs ORDER BY rowid DESC").fetchone()[0].startswith("cram remeasure")
    code, out, err = run_cli("remeasure", "--db", str(tmp_path / "none.sqlite"))
    assert code == 2 and err.count("\n") == 1 and "no such results file" in err
    code, out, err = run_cli("remeasure", "--db", str(grid_db.path), "--model", "not-a-model")
    assert code == 2 and err.count("\n") == 1 and "no rows of not-a-model" in err
