"""Capacity search strategies on the tiny model: each a strategy of the one resumable search over the results
database (search.py), every try a row."""

import json

import pytest

from cramming import CrammingError
from cramming.experiments.capacity import PAPER_CRITERION, decoding_capacity
from cramming.experiments.runner import capacity
from cramming.experiments.search import plan
from cramming.files.database import Store

TEXTS = ["to be or not to be that is the question whether tis nobler in the mind",
         "the cat sat on the mat and the dog sat on the log all that glitters is not gold"]
TOKENS = 24  # each passage: the first 24 tokens of a text


def ntok(lm, text):
    return len(lm.tokenizer(text, add_special_tokens=False)["input_ids"][:TOKENS])


@pytest.fixture
def search(tiny_lm, tmp_path):
    """A capacity search on TEXTS cut to TOKENS tokens, 150 steps a try, into a results file -> its Capacity."""
    (tmp_path / "t.jsonl").write_text("\n".join(json.dumps({"text": t}) for t in TEXTS))

    def run(strategy: str, **options):
        [cap] = capacity(tiny_lm, f"file:{tmp_path / 't.jsonl'}", strategy=strategy, samples=2, max_tokens=TOKENS,
                         max_steps=150, db=tmp_path / "c.sqlite", device="cpu", **options)
        return cap
    return run


def test_bisect_finds_an_exact_length_per_sample(tiny_lm, search, tmp_path):
    cap = search("bisect", vectors=[1])
    assert len(cap.per_sample) == 2
    for c, m, text in zip(cap.per_sample, cap.measurements, TEXTS):
        assert 0 < c <= ntok(tiny_lm, text)
        assert m["exact"] and m["tokens"] == c and m["accuracy_with"] == 1.0
    s = cap.summary()
    assert s["capacity_min"] == min(cap.per_sample) and s["capacity_max"] == max(cap.per_sample)
    assert s["exact"] == 2


def test_decoding_capacity_is_the_largest_passing_length_not_the_first_failure():
    # 16 fails the criterion on average, 32 passes: the paper's capacity is 32, not 8.
    accuracies = {8: [1.0, 1.0], 16: [0.97, 1.0], 32: [1.0, 0.99], 48: [0.9, 0.95]}
    assert decoding_capacity(accuracies) == 32
    assert decoding_capacity({8: [0.5]}) == 0 and decoding_capacity({}) == 0
    assert decoding_capacity({8: [PAPER_CRITERION]}) == 8  # the criterion is >=


def test_grid_uses_the_paper_criterion_over_every_length(search):
    cap = search("paper-grid", vectors=[1], lengths=[2, 4, 8, 16, 24, 64])
    L = cap.per_sample[0]
    assert sorted(cap.tried) == [2, 4, 8, 16, 24]  # every length the passages hold, failing ones included
    assert cap.per_sample == [L, L] and L == max((n for n, a in cap.tried.items() if a >= PAPER_CRITERION), default=0)
    assert all(m["tokens"] == L for m in cap.measurements if m is not None)


def test_progressive_grows_from_the_last_solution(tiny_lm, search):
    cap = search("progressive", vectors=[2], step=4)
    for c, m, text in zip(cap.per_sample, cap.measurements, TEXTS):
        assert c > 0 and (c % 4 == 0 or c == ntok(tiny_lm, text))
        assert m["exact"] and m["tokens"] == c


def test_unknown_strategy(tiny_lm):
    with pytest.raises(CrammingError, match="unknown strategy"):
        plan("guess", 0, 10)


def test_every_strategy_stores_its_tries_and_a_rerun_resumes(search, tmp_path):
    first = search("bisect", vectors=[1])
    rows = Store(tmp_path / "c.sqlite").rows()
    assert len(rows) >= 2 and all(r["passage_tokens"] == TOKENS and r["warm_from"] == 0 for r in rows)
    again = search("bisect", vectors=[1])  # every try read back from the store: nothing crams
    assert again.per_sample == first.per_sample and len(Store(tmp_path / "c.sqlite").rows()) == len(rows)


def capacity_cli(run_cli, tiny_dir, tmp_path, *args):
    """`cram capacity` by bisection on TEXTS, 150 steps a try -> (exit code, stdout, stderr)."""
    (tmp_path / "t.jsonl").write_text("\n".join(json.dumps({"text": t}) for t in TEXTS))
    return run_cli("capacity", "--source", f"file:{tmp_path / 't.jsonl'}", "--samples", "2", "--strategy", "bisect",
                   "--max-steps", "150", "--model", str(tiny_dir), "--db", str(tmp_path / "c.sqlite"), *args)


def test_capacity_command(run_cli, tiny_dir, tmp_path):
    code, out, err = capacity_cli(run_cli, tiny_dir, tmp_path, "--vectors", "1,2", "--max-tokens", "10", "--json")
    assert code == 0, err
    rows = [json.loads(line) for line in out.splitlines()]
    assert [r["vectors"] for r in rows] == [1, 2]
    assert all(0 < r["capacity_mean"] <= 10 and r["samples"] == 2 for r in rows)
    for r in rows:  # a sample that holds all 10 tokens may hold more: a lower bound, and said so
        assert r["lower_bound"] == [c == 10 for c in r["per_sample"]]
        assert r["mean_is_lower_bound"] == any(r["lower_bound"])


def test_capacity_marks_a_search_that_reached_its_top(run_cli, tiny_dir, tmp_path):
    code, out, err = capacity_cli(run_cli, tiny_dir, tmp_path, "--vectors", "2", "--max-tokens", "3", "--quiet")
    assert code == 0, err
    line = " ".join(out.decode().split())
    assert "capacity mean ≥ 3.0 (min ≥ 3, max ≥ 3)" in line and "may hold more" in line, line
