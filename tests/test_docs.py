"""docs/results.md regenerates from the committed databases, byte for byte; the script runs on a small one."""

import subprocess
import sys
from pathlib import Path

from cramming.recipes import RECIPES

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
    text = load_build().build(SMALL, tmp_path)
    horizon = next(line for line in text.splitlines() if line.startswith("| smollm2-135m-instruct-q4_1 | random"))
    # the search: exact at 4, failed at 8 (its tries 8 from 0, then 4): horizon 4, one passage, 7 tries in all
    # with the other passage's 8-64 (a lower bound, its last try exact at 64)
    cells = [c.strip() for c in horizon.strip("|").split("|")]
    assert cells[4:8] == ["≥ 34.0", "4", "≥ 64", "2"] and cells[10] == "7"
    assert "not recorded" in text  # this file has no runs table entries
    # rows of the default of the time (wrong_weight 1) are labelled as they ran, and said what they are
    assert "| tuning | 64 | default (ran with wrong_weight 1.0) | 3000 | 3 |" in text
    assert "Recipes: default (ran with wrong_weight 1.0): default with wrong_weight 1.0." in text
    assert (tmp_path / "results" / "capacity" / "report.md").exists()


def test_readme_tables_are_replaced_from_results_md():
    build = load_build()
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    results = (ROOT / "docs" / "results.md").read_text(encoding="utf-8")
    stale = readme.replace("| default | 64 | ", "| default | 64 | 0 / ", 1)  # a hand edit of a generated row
    assert stale != readme and build.readme(stale, results) == readme
    assert build.readme(readme, results) == readme
    capacity = build.table_after(readme, "### Capacity to the limit")
    assert len(capacity) >= 3 and not any("ran with" in line for line in capacity)  # today's recipes only


def test_the_by_source_table_counts_each_source_within_each_budget():
    build = load_build()
    table = build.by_source(small_long_text_rows(build), "tuning")
    # 3 tuning passages of alice, steps 545, 1408, 1761 at a 3000 budget, in float32 under the default of the time
    row = "| default with wrong_weight 1.0, precision auto | 64 | 2 / 3 / – of 3, 1408, 1761 | not run |"
    assert table.splitlines()[2] == row


def test_the_by_source_table_puts_todays_default_first():
    build = load_build()
    rows = small_long_text_rows(build)
    cold, default = (dict(RECIPES[name].to_dict(), precision="bf16") for name in ("cold", "default"))
    # cold's rows given first, as a table sorted by the recipes' order of definition would also print them
    rows = [dict(r, settings=cold) for r in rows] + [dict(r, settings=default) for r in rows]
    assert [line.split(" | ")[0] for line in build.by_source(rows, "tuning").splitlines()[2:]] == ["| default",
                                                                                                    "| cold"]
