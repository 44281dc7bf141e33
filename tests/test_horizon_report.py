"""The horizon campaign's report: horizons, bounds and the paper's findings, from a real results file."""

from dataclasses import replace

import pytest

from cramming.core.recipes import RECIPES, REGISTRY
from cramming.files.database import Store, TaskKey
from cramming.reports.report import build_report

from .test_report import DEFAULT, metrics


def add_search(store: Store, source: str, vectors: int, sample: int, tries: list[tuple[int, bool]],
               gain_per_token: float, recipe=RECIPES["default"], retry: bool = True) -> None:
    """One passage's horizon search, try by try, each warm-started from the last exact length; a failed
    warm-started try is tried again from the recipe's own start (retry=False: that try has not run yet)."""
    lo = 0
    for length, exact in tries:
        for warm in ([lo, 0] if lo and not exact and retry else [lo]):
            key = TaskKey("tiny", recipe.name, "fp", "tokfp", source, 0, sample, length, vectors, recipe.digest(), 0, 1,
                          passage_tokens=512, warm_from=warm)
            row = metrics(source, sample, length, vectors, 1.0 if exact else 0.9, exact)
            row["information_gain_bits"] = gain_per_token * length
            ran = row["steps"] if exact else row["steps"] + 100  # a failed try runs past its best step
            store.add(key, recipe.to_dict(), row, "text", b"", [[0, 4.0, 0.5], [ran, 1.0, row["accuracy_with"]]])
        lo = length if exact else lo


@pytest.fixture
def campaign(tmp_path):
    path = tmp_path / "capacity.sqlite"
    store = Store(path)
    for vectors, top in ((1, 40), (2, 80), (4, 160)):  # books: horizons 40, 80, 160 -- linear in N
        for sample in (0, 1):
            add_search(store, "books", vectors, sample, [(8, True), (top, True), (top + 4, False)], 10.0)
    add_search(store, "random", 1, 0, [(8, True), (16, True), (20, False)], 25.0)  # 16 tokens, 400 bits
    add_search(store, "random", 1, 1, [(8, True), (16, True)], 25.0)  # still open: a lower bound
    store.close()
    return path


def test_horizons_findings_and_figures(campaign, tmp_path):
    report = build_report(campaign, tmp_path / "out")
    groups = {(g.source, g.vectors): g for g in report.horizons}
    books = groups[("books", 1)]
    assert books.horizons == [40, 40] and books.lower_bounds == [False, False] and books.gain == 400
    # steps run: every try to its end, a failed one (44 tokens, twice: warm, then from the start) past its best step
    assert books.tries == 8 and books.steps == 2 * (10 * (8 + 40 + 44 + 44) + 2 * 100)
    assert groups[("random", 1)].lower_bounds == [False, True] and groups[("random", 1)].mean == 16
    linear, random, constant, paper_linear, paper_sources = report.findings
    assert linear.startswith("(a)") and "slope of 1.00: holds" in linear
    assert random.startswith("(b)") and "(0.40x)" in random and "(1.00x): holds so far" in random
    assert constant.startswith("(c)") and "at most 0% from their mean" in constant
    # the same tests on the paper's own numbers, over the N our book groups span (1, 2, 4): Llama-3.2-1B's max
    # tokens double with N (512, 1024, 2048); Pythia-160M's random words gain 501 nats against books' 396
    assert paper_linear.startswith("(a) On the paper's own numbers") and "N = 1, 2, 4" in paper_linear
    assert "1.00 for Llama-3.2-1B" in paper_linear and "for 2 of 2 models" in paper_linear
    assert paper_sources.startswith("(b, c) On the paper's own numbers") and "1.27x for Pythia-160M" in paper_sources
    assert "within 25% for 5 of 10 models; random words hold fewer tokens for 9 of 10" in paper_sources
    assert report.table == []  # every group here is a horizon search
    names = {f.name for f in report.figures}
    assert {"horizon_vs_cross_entropy", "horizon_scaling", "horizon_per_model"} <= names
    assert all((tmp_path / "out" / f"{name}.png").stat().st_size > 0 for name in names)
    md = report.markdown.read_text()
    assert f"| tiny | random | 1 | {DEFAULT}, 5000 steps | ≥ 16.0 | 16 | ≥ 16 | 2 | 400 |" in md
    assert f"In all, 8 passage searches: 30 tries, {sum(g.steps for g in report.horizons):,} steps" in md


def test_a_finding_that_does_not_hold_says_so(campaign):
    store = Store(campaign)
    add_search(store, "recent", 1, 0, [(8, True), (100, True), (104, False)], 20.0)  # 2000 bits: far off
    store.close()
    report = build_report(campaign, campaign.parent / "out2")
    constant = [f for f in report.findings if f.startswith("(c)")][0]
    assert "recent 2000" in constant and "does not hold" in constant


def test_capacity_against_n_compares_the_passages_every_n_ran(campaign):
    """A passage crammed in one vector only (an easy one here, 8 tokens) would pull the mean at N = 1 and so the
    slope; finding (a) is read on the passages every N ran, and says which."""
    store = Store(campaign)
    add_search(store, "books", 1, 2, [(8, True), (12, False)], 10.0)
    store.close()
    report = build_report(campaign, campaign.parent / "out5")
    assert [g.mean for g in report.horizons if g.source == "books"] == [pytest.approx(88 / 3), 80, 160]
    linear = [f for f in report.findings if f.startswith("(a) Capacity")][0]
    assert "on the 2 passages every N ran (samples 0, 1) goes 40, 80, 160 tokens" in linear
    assert "slope of 1.00: holds" in linear
    # the figure draws each passage across the N it ran at, so the book passage that ran at N = 1 only stands
    # apart (beside the two random passages, 16 tokens in one vector)
    [scaling] = [f.figure for f in report.figures if f.name == "horizon_scaling"]
    passages = sorted(line.get_ydata().tolist() for line in scaling.axes[0].lines if line.get_label() == "_passage")
    assert passages == [[8], [16], [16], [40, 80, 160], [40, 80, 160]]


def test_a_retired_default_stays_in_the_table_and_out_of_the_findings_and_figures(campaign):
    """Rows of an earlier default (its name, an earlier version) are labelled by the version that ran; the findings
    and figures speak of the recipes as they are today."""
    earlier = replace(REGISTRY["default@6"], name="default")
    store = Store(campaign)
    add_search(store, "recent", 1, 0, [(8, True), (100, True), (104, False)], 20.0, recipe=earlier)
    store.close()
    report = build_report(campaign, campaign.parent / "out3")
    label = "default@6, 5000 steps"
    assert [(g.source, g.recipe) for g in report.horizons if g.retired] == [("recent", label)]
    assert f"| tiny | recent | 1 | {label} | 100.0 |" in report.markdown.read_text()
    assert len(report.findings) == 5 and not any("recent" in f for f in report.findings)
    legends = [t.get_text() for f in report.figures if f.name.startswith("horizon") for ax in f.figure.axes
               if ax.get_legend() for t in ax.get_legend().get_texts()]
    assert any("random" in t for t in legends) and not any("default@6" in t for t in legends)


def test_each_passage_says_where_its_search_stands(campaign):
    """A warm-started failure awaiting its retry from the recipe's start leaves the search open at that length."""
    store = Store(campaign)
    add_search(store, "recent", 1, 0, [(8, True), (64, True), (96, False)], 5.0, retry=False)
    add_search(store, "recent", 1, 1, [(8, True), (64, True), (96, False)], 5.0)
    store.close()
    report = build_report(campaign, campaign.parent / "out4")
    recent = [g for g in report.horizons if g.source == "recent"][0]
    assert [(p.horizon, p.failure, p.next_try, p.tries) for p in recent.passages] == [(64, None, 96, 3),
                                                                                     (64, 96, 80, 4)]
    assert recent.lower_bounds == [True, True]
    md = report.markdown.read_text()
    assert f"| tiny | recent | 1 | {DEFAULT}, 5000 steps | 0 | 64 | – | open: 96 next | 3 | 320 |" in md
    assert f"| tiny | recent | 1 | {DEFAULT}, 5000 steps | 1 | 64 | 96 | open: 80 next | 4 | 320 |" in md
    assert f"| tiny | books | 4 | {DEFAULT}, 5000 steps | 0 | 160 | 164 | closed | 4 | 1600 |" in md


def test_the_gain_has_the_horizons_denominator(tmp_path):
    # `paper`'s campaign row once averaged its horizon over 6 passages and its gain over the 4 with one
    path = tmp_path / "c.sqlite"
    store = Store(path)
    add_search(store, "books", 1, 0, [(8, True), (16, True), (20, False)], 10.0)  # 160 bits at 16 tokens
    add_search(store, "books", 1, 1, [(8, False)], 10.0)  # no exact prefix: horizon 0, nothing gained
    store.close()
    [group] = build_report(path, tmp_path / "out").horizons
    assert group.horizons == [16, 0] and group.mean == 8 and group.gain == 80.0


def test_one_step_horizons_beside_greedy_ones():
    """A way back's horizon is its longest exact length and the shortest length no try got back: a warm start's
    failure that a fresh try then got back is not where the search stopped."""
    from cramming.reports.one_step import horizons, table

    greedy = RECIPES["default"].to_dict()
    one_step = dict(greedy, decoder="one-step")
    row = lambda settings, length, exact, steps=100, vectors=2: {  # noqa: E731
        "source": "books", "sample": 0, "settings": settings, "length": length, "exact": exact, "steps": steps,
        "ce_without_bits": 7.0 * length, "vectors": vectors}
    rows = [row(greedy, 32, True, 60), row(greedy, 64, True, 90), row(greedy, 96, False), row(one_step, 32, True),
            row(one_step, 48, False), row(one_step, 48, True), row(one_step, 64, False),
            row(dict(one_step, shared_copy=True), 16, False, vectors=1)]
    found = horizons(rows)
    assert found[("books", 0, "greedy, 2 vectors")] == {"exact": 64, "failed": 96, "ce_bits": 448.0,
                                                       "steps": {32: 60, 64: 90}}
    assert (found[("books", 0, "one-step, 2 vectors")]["exact"], found[("books", 0, "one-step, 2 vectors")]["failed"]
            ) == (48, 64)
    lines = table(rows).splitlines()
    assert lines[0].count("|") == 6  # three ways with rows: no column for greedy in one vector
    assert "| books | 0 | none exact | 64 / 96 (448 bits) | 48 / 64 (336 bits) |" in lines
    assert "| books | 0 | –, – | 60, 90 | 100, – |" in lines
