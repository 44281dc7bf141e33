"""The report: every table row and figure is produced from the stored numbers."""

import math
import subprocess
import sys
from dataclasses import replace

import pytest

from cramming.core.recipes import RECIPES, stored
from cramming.files.database import Store, TaskKey
from cramming.reports.report import build_report, published_rows, reference, retired_recipes, summarize

DEFAULT = RECIPES["default"].name  # its latest version, which labels today's rows

# (source, sample, length, vectors) -> (accuracy_with, exact); the rest of each row derives from these.
GRID = {
    ("books", 0, 8, 1): (1.0, True), ("books", 1, 8, 1): (1.0, True),
    ("books", 0, 16, 1): (1.0, True), ("books", 1, 16, 1): (0.995, False),  # mean 0.9975 passes the criterion
    ("books", 0, 32, 1): (0.97, False), ("books", 1, 32, 1): (1.0, True),  # mean 0.985 fails it
    ("books", 0, 32, 2): (1.0, True), ("books", 1, 32, 2): (1.0, True),
    ("random", 0, 8, 1): (0.9, False), ("random", 1, 8, 1): (1.0, True),
}


def metrics(source, sample, length, vectors, acc, exact):
    ce_without = 5.0 * length + sample
    ce_with = 0.5 * length + 0.1 * vectors
    gain = int(acc * length) - length // 4
    return {"tokens": length, "ce_without_bits": ce_without, "ce_with_bits": ce_with,
            "information_gain_bits": ce_without - ce_with,
            "information_gain_nats": (ce_without - ce_with) * math.log(2),
            "token_gain": gain, "accuracy_without": 0.25, "accuracy_with": acc, "exact": exact, "diverged": False,
            "theoretical_capacity": 591.0 * vectors, "utilization": gain / (591.0 * vectors),
            "steps": 10 * length, "seconds": float(length)}


def add(store, source, sample, length, vectors, acc, exact, recipe=RECIPES["default"], seed=0):
    key = TaskKey("tiny", recipe.name, "fp", "tokfp", source, 0, sample, length, vectors, recipe.digest(), seed, 1)
    history = [[s, 3.0 / (s + 1), min(1.0, s / 10)] for s in range(0, 10 * length, 7)]
    store.add(key, recipe.to_dict(), metrics(source, sample, length, vectors, acc, exact), "text", b"", history)


@pytest.fixture
def store_path(tmp_path):
    path = tmp_path / "results.sqlite"
    store = Store(path)
    for (source, sample, length, vectors), (acc, exact) in GRID.items():
        add(store, source, sample, length, vectors, acc, exact)
    store.close()
    return path


def test_a_report_leaves_its_results_file_byte_for_byte_as_it_was(store_path, tmp_path):
    # results/*.sqlite are committed: building docs from them must not leave git a changed file behind
    before = store_path.read_bytes()
    build_report(store_path, tmp_path / "report")
    assert store_path.read_bytes() == before


def test_summary_follows_the_paper_criterion_and_exactness(store_path):
    rows = Store(store_path).rows()
    summary = {(r["source"], r["vectors"]): r for r in summarize(rows)}
    books = summary[("books", 1)]
    assert books["decoding_capacity"] == 16  # 32 misses 0.99 on average
    assert books["exact_capacity"] == (16 + 32) / 2  # sample 0 exact up to 16, sample 1 at 32
    at16 = [r for r in rows if (r["source"], r["length"], r["vectors"]) == ("books", 16, 1)]
    assert books["token_gain"] == pytest.approx(sum(r["token_gain"] for r in at16) / 2)
    assert books["information_gain_bits"] == pytest.approx(sum(r["information_gain_bits"] for r in at16) / 2)
    assert summary[("books", 2)]["decoding_capacity"] == 32
    assert summary[("books", 2)]["decoding_lower_bound"] and not books["decoding_lower_bound"]
    assert books["exact_lower_bound"] and summary[("random", 1)]["exact_lower_bound"]  # exact at their top length
    assert not summary[("random", 1)]["decoding_lower_bound"]  # nothing passed
    assert summary[("random", 1)]["decoding_capacity"] == 0  # mean 0.95 at its only length
    assert summary[("random", 1)]["token_gain"] is None
    assert summary[("random", 1)]["exact_capacity"] == 4  # (0 + 8) / 2
    assert all(r["samples"] == 2 and r["seeds"] == 1 and r["recipe"] == f"{DEFAULT}, 5000 steps"
               for r in summary.values())


def test_two_recipes_or_budgets_are_never_averaged_together(store_path):
    store = Store(store_path)
    paper, short = RECIPES["paper"], replace(RECIPES["default"], max_steps=300)
    for sample in (0, 1):
        add(store, "books", sample, 8, 1, 0.5, False, recipe=paper)
        add(store, "books", sample, 8, 1, 0.6, False, recipe=short)
        add(store, "books", sample, 8, 1, 1.0, True, seed=1)  # the default again, another seed: one group
    groups = {(r["source"], r["vectors"], r["recipe"]): r for r in summarize(store.rows())}
    assert groups[("books", 1, f"{RECIPES['paper'].name}, 5000 steps")]["decoding_capacity"] == 0
    assert groups[("books", 1, f"{DEFAULT}, 300 steps")]["decoding_capacity"] == 0
    default = groups[("books", 1, f"{DEFAULT}, 5000 steps")]
    assert default["decoding_capacity"] == 16 and default["seeds"] == 2 and default["samples"] == 2
    assert len([g for g in groups if g[:2] == ("books", 1)]) == 3


def test_rows_are_labelled_by_the_version_they_ran_and_its_changes(tmp_path):
    store = Store(tmp_path / "r.sqlite")
    legacy = dict(RECIPES["default"].to_dict(), name="default", wrong_weight=1.0)  # the default of its time, stored
    del legacy["base"]                                                               # before recipes had versions
    key = TaskKey("tiny", "default", "fp", "tokfp", "books", 0, 0, 8, 1, stored(legacy).digest(), 0, 1)
    store.add(key, legacy, metrics("books", 0, 8, 1, 1.0, True), "text", b"", [[0, 1.0, 1.0]])
    bf16 = RECIPES["default"].override({"precision": "bf16"}, "default, bf16")  # a spec's [recipes."default, bf16"]
    for recipe in (bf16, RECIPES["default"].override({"wrong_weight": 1.0, "max_steps": 300})):
        add(store, "books", 0, 8, 1, 1.0, True, recipe=recipe)
    rows = store.rows()
    labels = {r["recipe"] for r in summarize(rows)}
    assert labels == {"default@6, 5000 steps", f"{DEFAULT} with precision bf16, 5000 steps",
                      f"{DEFAULT} with wrong_weight 1.0, 300 steps"}
    assert DEFAULT != "default@6" and retired_recipes(rows) == {key.recipe_digest}  # an earlier version of its name



def test_a_longer_passing_length_is_the_decoding_capacity(tmp_path):
    store = Store(tmp_path / "r.sqlite")
    for length, acc in ((8, 1.0), (16, 0.9), (32, 1.0)):
        add(store, "books", 0, length, 1, acc, acc == 1.0)
    [row] = summarize(store.rows())
    assert row["decoding_capacity"] == 32  # the paper's: the largest passing length, not the first failure


def test_published_rows_come_from_the_reference_csv():
    models = reference("paper_models.csv")
    pub = published_rows()
    assert len(pub) == 2 * len(models)
    llama8 = next(r for r in pub if r["model"] == "Llama-3.1-8B" and r["source"].startswith("PG-19"))
    assert llama8["decoding_capacity"] == 1568
    assert llama8["information_gain_bits"] == pytest.approx(llama8["information_gain_nats"] / math.log(2))


def test_report_writes_every_figure_and_table_from_the_store(store_path, tmp_path):
    out = tmp_path / "report"
    report = build_report(store_path, out)
    rows = Store(store_path).rows()
    names = {f.name for f in report.figures}
    assert names == {"tokens_per_vector", "cross_entropy", "vectors_scaling", "accuracy_vs_length", "history"}
    for name in names:
        assert (out / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    page = (out / "index.html").read_text()
    md = (out / "report.md").read_text()
    assert "<script" not in page and "http" not in page  # opens offline, on its own
    assert page.count("data:image/png;base64,") == len(names)
    for f in report.figures:
        assert f.caption in md and f.title in md and f"{f.name}.png" in md
        for ax in f.figure.axes:
            assert ax.get_title() and ax.get_xlabel() and ax.get_ylabel()
        assert any(ax.get_legend() is not None for ax in f.figure.axes)
    # the table: our groups, then the published rows marked as such
    # books, 1 vector: sample 1 is exact at 32, the longest length run, so the exact capacity is a lower bound
    assert f"| tiny | books | 1 | {DEFAULT}, 5000 steps | 16 | ≥ 24 |" in md
    assert f"| tiny | books | 2 | {DEFAULT}, 5000 steps | ≥ 32 | ≥ 32 |" in md
    assert "Llama-3.1-8B (published) | PG-19 (books) | 1 | Kuratov et al., first token given | 1568 |" in md
    assert f"{DEFAULT} (ours: cold started from the model's prior" in md  # what each recipe is
    assert md.count("(published)") == len(report.published)

    figs = {f.name: f.figure for f in report.figures}
    # cross-entropy: one point per stored row, at its stored values
    points = sorted(tuple(p) for c in figs["cross_entropy"].axes[0].collections for p in c.get_offsets())
    assert points == sorted((r["ce_without_bits"], r["ce_with_bits"]) for r in rows)
    # tokens per vector: our bars are decoding capacity / N
    heights = [p.get_height() for p in figs["tokens_per_vector"].axes[0].patches]
    assert heights[: len(report.table)] == [r["decoding_capacity"] / r["vectors"] for r in report.table]
    # accuracy vs length: the books, 1 vector line holds the per-length means
    line = next(ln for ln in figs["accuracy_vs_length"].axes[0].lines
                if ln.get_label() == f"tiny, books, N=1, {DEFAULT}, 5000 steps: teacher-forced accuracy")
    assert list(line.get_xdata()) == [8, 16, 32]
    assert list(line.get_ydata()) == pytest.approx([1.0, 0.9975, 0.985])
    # capacity vs vectors: our two series are nudged apart, and the lower bound (books, 2 vectors, 32) is hollow
    ours = [ln for ln in figs["vectors_scaling"].axes[0].lines if "(ours)" in ln.get_label()]
    assert len(ours) == 2 and len({tuple(ln.get_xdata()) for ln in ours}) == 2
    hollow = [ln for ln in figs["vectors_scaling"].axes[0].lines if ln.get_markerfacecolor() == "white"]
    assert [(round(ln.get_xdata()[0]), ln.get_ydata()[0]) for ln in hollow] == [(2, 32)]
    # history: the stored per-step losses of the picked samples
    loss_ax = figs["history"].axes[0]
    books_line = next(ln for ln in loss_ax.lines if ln.get_label().startswith("books #0, 32 tok, N=1"))
    assert list(books_line.get_ydata()) == pytest.approx([3.0 / (s + 1) for s in range(0, 320, 7)])


def test_report_cli_errors_are_one_line(tmp_path, run_cli):
    code, out, err = run_cli("report", "--db", str(tmp_path / "missing.sqlite"), "-o", str(tmp_path / "r"))
    assert code == 2 and err.strip().count("\n") == 0 and "no such results database" in err
    Store(tmp_path / "empty.sqlite").close()
    code, out, err = run_cli("report", "--db", str(tmp_path / "empty.sqlite"), "-o", str(tmp_path / "r"))
    assert code == 2 and "holds no results" in err


def test_report_cli_writes_the_page(store_path, tmp_path, run_cli):
    code, out, err = run_cli("report", "--db", str(store_path), "-o", str(tmp_path / "r"))
    assert code == 0, err
    assert (tmp_path / "r" / "index.html").is_file() and b"5 figures" in out


def test_importing_and_building_a_report_leaves_matplotlib_as_it_was(store_path, tmp_path):
    code = ("import matplotlib; matplotlib.use('svg'); import matplotlib.pyplot as plt; "
            "from cramming.reports.report import build_report; "
            f" build_report({str(store_path)!r}, {str(tmp_path / 'r')!r}); "
            "assert matplotlib.get_backend() == 'svg', matplotlib.get_backend(); assert plt.get_fignums() == []")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
