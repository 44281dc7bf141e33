"""The horizon search on the tiny model: growth from the last exact solution, bisection after the first failure,
a failed warm-started try retried from the recipe's start, every try a stored row, resume after kill -9."""

import json

import pytest

from cramming.experiments.runner import Spec, run_local
from cramming.experiments.search import GROWTH, close_enough
from cramming.experiments.search import Horizon as Search
from cramming.files.database import Store

from .conftest import GRID_TEXTS
from .grid import comparable, cram, kill_9_after

LONG = [" ".join(GRID_TEXTS), " ".join(reversed(GRID_TEXTS))]  # ~40 tokens: more than 2 vectors hold in 60 steps


@pytest.fixture
def horizon_spec(tmp_path, tiny_dir):
    (tmp_path / "long.jsonl").write_text("\n".join(json.dumps({"text": t}) for t in LONG) + "\n")
    path = tmp_path / "horizon.toml"
    path.write_text(f'models = ["{tiny_dir}"]\nsources = ["file:{tmp_path / "long.jsonl"}"]\nvectors = [2]\n'
                    'recipes = ["cold"]\nsamples = 2\nmax_steps = 60\nstrategy = "horizon"\nmax_tokens = 36\n')
    return path


def test_the_next_length_grows_then_bisects():
    s = Search(0, limit=100)
    assert s.next_length() == 8
    for length in (8, 16, 32):
        s.record(length, True, None)
        assert s.next_length() == GROWTH[GROWTH.index(length) + 1]
    s.record(48, False, None)  # a warm-started failure: the same length once more, from the recipe's own start
    assert (s.lo, s.hi, s.next_length(), s.warm_from(), s.start()) == (32, None, 48, 0, None)
    s.record(48, False, None)
    assert (s.lo, s.hi) == (32, 48) and s.next_length() == 40 and s.warm_from() == 32
    s.record(40, True, None)
    assert s.next_length() == 44
    s.record(44, False, None)
    assert s.next_length() == 44 and s.warm_from() == 0
    fresh = object()
    s.record(44, True, fresh)  # exact from the recipe's start: the next tries start from that solution
    assert (s.lo, s.lo_vectors, s.hi) == (44, fresh, 48) and close_enough(44, 48) and s.next_length() is None
    cold = Search(0, limit=100)
    cold.record(8, False, None)  # the first try starts from scratch already: a failure is final
    assert (cold.hi, cold.next_length(), cold.warm_from()) == (8, 4, 0)
    whole = Search(0, limit=12)
    whole.record(8, True, None)
    assert whole.next_length() == 12  # capped at the passage
    whole.record(12, True, None)
    assert whole.next_length() is None  # the whole passage decodes: the search's top


def test_a_horizon_search_stores_every_try_and_resumes(horizon_spec, tmp_path):
    spec = Spec.from_toml(horizon_spec)
    store = Store(tmp_path / "h.sqlite")
    added = run_local(spec, store, device="cpu")
    rows = store.rows()
    assert added == len(rows) > 2
    for sample in (0, 1):
        tries = [r for r in rows if r["sample"] == sample]
        exact = [r["length"] for r in tries if r["exact"]]
        failed = [r["length"] for r in tries if not r["exact"]]
        assert failed, "the passage should fail at its full length within 60 steps"
        lo, hi = max(exact, default=0), min(failed)
        assert close_enough(lo, hi) and lo < hi and lo < 36
        for r in tries:  # each try starts from an exact solution of a shorter prefix, the first from scratch
            assert r["passage_tokens"] == 36 and r["warm_from"] < r["length"]
            assert r["warm_from"] in exact + [0]
        assert 8 in [r["length"] for r in tries] and (lo == 0 or lo in exact)
    # on this model both passages grow (8, then 16 from 8's solution), fail at 32 and are bisected below it
    assert any(r["exact"] and r["warm_from"] >= 8 for r in rows)
    for r in rows:  # each try's start is found again: the vector file of its passage's exact row at warm_from
        start = store.warm_start(r)
        assert (start is None) == (r["warm_from"] == 0)
        if start is not None:
            assert start in [store.vector_file(q) for q in rows if q["exact"] and q["sample"] == r["sample"]
                             and q["length"] == r["warm_from"]]
    assert any(r["length"] not in GROWTH for r in rows)
    for r in rows:  # every warm-started failure was tried again from scratch
        if not r["exact"] and r["warm_from"] > 0:
            assert any(q["sample"] == r["sample"] and q["length"] == r["length"] and q["warm_from"] == 0 for q in rows)
    skipped = []
    assert run_local(spec, store, device="cpu", on_skipped=skipped.append) == 0  # all replayed from the store
    assert sum(skipped) == len(rows)


def test_a_killed_horizon_search_resumes_to_the_same_rows(horizon_spec, tmp_path):
    reference = tmp_path / "reference.sqlite"
    assert cram("run", horizon_spec, "--db", reference, "--batch-size", "1").wait() == 0
    db = tmp_path / "killed.sqlite"
    partial = kill_9_after(cram("run", horizon_spec, "--db", db, "--batch-size", "1"), db)
    assert partial >= 2
    done = cram("run", horizon_spec, "--db", db, "--batch-size", "1")
    assert done.wait() == 0, done.stderr.read()
    assert f"{partial} already done" in done.stderr.read()
    assert comparable(Store(db).rows()) == comparable(Store(reference).rows())


def test_capacity_horizon_command(run_cli, tiny_dir, tmp_path):
    (tmp_path / "long.jsonl").write_text("\n".join(json.dumps({"text": t}) for t in LONG) + "\n")
    args = ("capacity", "--source", f"file:{tmp_path / 'long.jsonl'}", "--samples", "2", "--vectors", "2",
            "--strategy", "horizon", "--max-tokens", "36", "--max-steps", "60", "--recipe", "cold",
            "--model", str(tiny_dir), "--db", str(tmp_path / "c.sqlite"), "--json", "--quiet")
    code, out, err = run_cli(*args)
    assert code == 0, err
    found = json.loads(out)
    rows = Store(tmp_path / "c.sqlite").rows()
    for sample, horizon in enumerate(found["per_sample"]):
        assert horizon == max((r["length"] for r in rows if r["sample"] == sample and r["exact"]), default=0)
    assert found["strategy"] == "horizon" and found["lower_bound"] == [h == 36 for h in found["per_sample"]]
    accuracy = {int(L): a for L, a in found["accuracy_by_length"].items()}  # JSON keys are strings
    assert found["decoding_capacity"] == max(L for L, a in accuracy.items() if a >= 0.99)
    assert run_cli(*args)[1] == out  # a rerun replays the stored tries: the same answer, nothing crammed


def test_a_horizon_search_runs_with_the_one_step_decoder(run_cli, tiny_dir, tmp_path):
    # the search is the decoder's as much as greedy's: every try crammed and verified one-step, warm starts included
    (tmp_path / "long.jsonl").write_text("\n".join(json.dumps({"text": t}) for t in LONG) + "\n")
    code, out, err = run_cli("capacity", "--source", f"file:{tmp_path / 'long.jsonl'}", "--samples", "1",
                             "--vectors", "2", "--strategy", "horizon", "--max-tokens", "24", "--max-steps", "150",
                             "--recipe", "cold", "--set", "decoder=one-step", "--model", str(tiny_dir),
                             "--db", str(tmp_path / "c.sqlite"), "--json", "--quiet")
    assert code == 0, err
    rows = Store(tmp_path / "c.sqlite").rows()
    assert rows and all(r["settings"]["decoder"] == "one-step" for r in rows)
    assert json.loads(out)["per_sample"] == [max((r["length"] for r in rows if r["exact"]), default=0)]
    assert any(r["warm_from"] > 0 for r in rows) and json.loads(out)["per_sample"][0] > 0
