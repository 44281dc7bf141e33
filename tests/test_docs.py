"""docs/results.md regenerates from the committed databases, byte for byte; the script runs on a small one."""

import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from cramming.core.recipes import DESCRIPTIONS, RECIPES
from cramming.reports.report import build_report

from .conftest import load_script

ROOT = Path(__file__).parent.parent
SMALL = Path(__file__).parent / "data" / "results"  # 7 tries of one horizon search, 3 long-text rows


def load_build():
    return load_script("docs/build.py", "docs_build")


def small_long_text_rows(build) -> list[dict]:
    store = build.Store(SMALL / "long-texts.sqlite")
    try:
        return build.long_text_rows(store)
    finally:
        store.close()


def test_results_md_is_what_the_committed_databases_give():
    done = subprocess.run([sys.executable, str(ROOT / "docs" / "build.py"), "--check"], capture_output=True,
                          text=True, cwd=ROOT / "tests")  # from another directory: the script finds its root
    assert done.returncode == 0, done.stderr


def test_the_script_builds_from_a_small_database(tmp_path):
    text, _ = load_build().build(SMALL, tmp_path)
    horizon = next(line for line in text.splitlines() if line.startswith("| smollm2-135m-instruct-q4_1 | random"))
    # the search: exact at 4, failed at 8 (its tries 8 from 0, then 4): horizon 4, one passage, 7 tries in all
    # with the other passage's 8-64 (a lower bound, its last try exact at 64)
    cells = [c.strip() for c in horizon.strip("|").split("|")]
    assert cells[4:8] == ["≥ 34.0", "4", "≥ 64", "2"] and cells[10] == "7"
    assert "not recorded" in text  # this file has no runs table entries
    # rows of the default of the time (wrong_weight 1), stored before versions, read as the version that ran
    assert "| tuning | 64 | default@6 | 3000 | 3 |" in text
    assert f"Recipes: default@6 ({DESCRIPTIONS['default@6']})." in text
    assert (tmp_path / "results" / "capacity" / "report.md").exists()


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """(the build module, results.md's text and the figures, from the committed databases)."""
    build = load_build()
    text, figures = build.build(ROOT / "results", tmp_path_factory.mktemp("built"))
    return build, text, figures


def test_the_pages_tables_and_figures_are_replaced_from_the_rows(built):
    build, results, figures = built
    findings, tables = (ROOT / "docs" / "findings.md").read_text(encoding="utf-8"), build.PAGES["docs/findings.md"]
    stale = findings.replace("| default@7 | 64 | ", "| default@7 | 64 | 0 / ", 1)  # a hand edit of a generated row
    assert stale != findings and build.page(stale, results, figures, tables) == findings
    assert build.page(findings, results, figures, tables) == findings
    quoted = re.search(r"<!-- fig:campaign -->(.*?)<!-- /fig -->", findings)
    edited = findings.replace(quoted.group(0), "<!-- fig:campaign -->35 passages, 208,459 steps<!-- /fig -->")
    assert build.page(edited, results, figures, tables) == findings  # a figure typed by hand is rewritten
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    typed = re.sub(r"(<!-- fig:test128-default -->).*?(<!-- /fig -->)", r"\g<1>18/20<\g<2>", readme)
    assert typed != readme and build.page(typed, results, figures, {}) == readme
    with pytest.raises(build.CrammingError, match="'nowhere' that no database gives"):
        build.page(readme + "<!-- fig:nowhere -->1<!-- /fig -->", results, figures, {})
    capacity = build.table_after(findings, "## Capacity to the limit")
    assert len(capacity) >= 3 and all(build.current(line) for line in capacity)  # today's recipe versions only
    assert not build.current("| smollm2 | books | 1 | default@6, 1500 steps |") and build.current("| default@7 |")
    assert len(readme.splitlines()) <= 200  # README is for users; the findings live in docs/findings.md


def test_the_by_source_table_counts_each_source_within_each_budget():
    build = load_build()
    table = build.by_source(small_long_text_rows(build), "tuning")
    # 3 tuning passages of alice, steps 545, 1408, 1761 at a 3000 budget, in float32 (stored as "auto", on a CPU)
    # under the default of the time
    row = "| default@6, precision fp32 | 64 | 2 / 3 / – of 3, 1408, 1761 | not run |"
    assert table.splitlines()[2] == row


def test_the_by_source_table_puts_todays_default_first():
    build = load_build()
    rows = small_long_text_rows(build)
    cold, default = (dict(RECIPES[name].to_dict(), precision="bf16") for name in ("cold", "default"))
    # cold's rows given first, as a table sorted by the recipes' order of definition would also print them
    rows = [dict(r, settings=cold) for r in rows] + [dict(r, settings=default) for r in rows]
    assert [line.split(" | ")[0] for line in build.by_source(rows, "tuning").splitlines()[2:]] == ["| default@7",
                                                                                                    "| cold@1"]


def markdown_tables(text: str) -> list[list[str]]:
    tables, current = [], []
    for line in text.splitlines() + [""]:
        if line.startswith("|"):
            current.append(line)
        elif current:
            tables.append(current)
            current = []
    return tables


def test_every_results_table_of_the_pages_is_read_from_committed_rows(built):
    """A results table in README or docs/findings.md is a copy of results.md's (PAGES), or each of its rows quotes
    a figure the rows give (<!-- fig -->); the table of recipe definitions holds no results. docs/results.md is
    generated whole (the --check above), and every database it reads is in git."""
    build, results, _ = built
    generated = [make(results) for tables in build.PAGES.values() for make in tables.values()]
    for name in build.PAGES:
        for table in markdown_tables((ROOT / name).read_text(encoding="utf-8")):
            if table in generated or table[0] == "| name | what it is |":
                continue
            behind = all("<!-- fig:" in row or "](docs/findings.md#" in row for row in table[2:])
            assert behind, f"{name}: a table with no rows behind it: {table[0]}"
    tracked = subprocess.run(["git", "ls-files", "results"], cwd=ROOT, capture_output=True, text=True).stdout.split()
    read = {f"results/{name}" for name in re.findall(r'"([\w-]+\.sqlite)"', (ROOT / "docs" / "build.py").read_text())}
    assert read and read <= set(tracked), read - set(tracked)


def test_no_open_horizon_is_quoted_as_closed(tmp_path):
    """Every quote of a horizon as "MEAN tokens (MIN-MAX)" or "(MIN to MAX)" in README or docs/results.md is a
    search group's, with ≥ exactly where the group's figures are lower bounds."""
    groups = [g.cells()[4:7] for g in build_report(ROOT / "results" / "capacity.sqlite", tmp_path).horizons]
    quote = re.compile(r"(≥ )?(\d+(?:\.\d)?) tokens \((≥ )?(\d+)(?:-| to )(≥ )?(\d+)")
    for page in (ROOT / "README.md", ROOT / "docs" / "findings.md", ROOT / "docs" / "results.md"):
        for m in quote.finditer(page.read_text(encoding="utf-8")):
            said = [f"{m[1] or ''}{float(m[2]):.1f}", f"{m[3] or ''}{m[4]}", f"{m[5] or ''}{m[6]}"]
            assert said in groups, f"{page.name}: {m[0]!r} is no search's figures as they stand ({groups})"


def test_every_committed_row_has_a_run_record():
    """Each results file under results/ says what wrote it: a run recorded no later than its first row."""
    for path in sorted((ROOT / "results").glob("*.sqlite")):
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            first = db.execute("SELECT min(finished_at) FROM results").fetchone()[0]
            started = db.execute("SELECT min(started_at) FROM runs").fetchone()[0]
        finally:
            db.close()
        assert first is None or (started is not None and started <= first), path.name


def test_every_committed_row_crammed_its_keys_length():
    """Passages are cut where they encode back to their tokens (texts.cut), and the worker refuses a mismatch: no
    committed row crammed more or fewer tokens than its key's length."""
    for path in sorted((ROOT / "results").glob("*.sqlite")):
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            wrong = db.execute("SELECT source, text_seed, sample, length, tokens FROM results WHERE tokens != length")
            assert wrong.fetchall() == [], path.name
        finally:
            db.close()


def test_the_docs_build_from_the_package_alone():
    # the tables and tallies the benchmarks print and the docs quote live in cramming.reports, one copy each:
    # docs/build.py imports no benchmark script
    source = (ROOT / "docs" / "build.py").read_text(encoding="utf-8")
    imported = re.findall(r"^(?:from|import) (\S+)", source, re.M)
    assert "sys.path" not in source and all(m.split(".")[0] in ("cramming", "__future__", "argparse", "json", "os",
                                                                "re", "sys", "tempfile", "pathlib") for m in imported)
