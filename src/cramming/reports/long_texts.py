"""The long-text sets (cramming.experiments.long_texts): their tables, tallies and labels, from stored rows."""

from __future__ import annotations

import statistics

from cramming.core.recipes import RECIPES, stored
from cramming.experiments.long_texts import SETS, SOURCES
from cramming.files.database import Store, steps_to_exact
from cramming.model.aliases import DEFAULT_MODEL

WITHIN = (1500, 3000, 5000)


def long_text_rows(store: Store) -> list[dict]:
    """The stored rows of either set, each with its set's name under "set"."""
    seeds = {seed: name for name, seed in SETS.items()}
    return [dict(r, set=seeds[r["text_seed"]]) for r in store.rows()
            if r["model"] == DEFAULT_MODEL and r["vectors"] == 1 and r["text_seed"] in seeds]


def label(row: dict) -> str:
    """A row's recipe as run: its registry entry and the changes, after the name it ran under where that is its
    own ("ww4: default@7 with precision bf16")."""
    return stored(row["settings"]).label()


def recipes_in(rows: list[dict]) -> str:
    """One line saying what each recipe of the rows is."""
    return "Recipes: " + "; ".join(sorted({stored(r["settings"]).describe() for r in rows})) + "."


def tally(rows: list[dict], budget: int) -> tuple[list[str], str, str]:
    """Passages run at a budget: how many were exact within each of WITHIN up to it ("–" past it), and the median
    and largest steps, a passage not exact counting at the budget (marked >)."""
    steps = sorted(steps_to_exact(r) for r in rows)
    within = [str(sum(r["exact"] and r["steps"] <= w for r in rows)) if w <= budget else "–" for w in WITHIN]
    failed = not all(r["exact"] for r in rows)
    median = statistics.median(steps)
    return within, f"{'>' if failed and median == budget else ''}{median:g}", f"{'>' if failed else ''}{steps[-1]}"


def table(rows: list[dict]) -> str:
    """One line per (set, length, recipe as run): exact within each budget up to the one it ran with, median
    and largest steps."""
    by: dict[tuple, list[dict]] = {}
    for r in rows:
        by.setdefault((r["set"], r["length"], label(r), r["budget"]), []).append(r)
    lines = ["| set | tokens | recipe | budget | passages | " + " | ".join(f"exact within {w}" for w in WITHIN)
             + " | median steps | book / recent exact | largest steps |", "|" + "---|" * (8 + len(WITHIN))]
    for (name, length, recipe, budget), rs in sorted(by.items(), key=lambda kv: (kv[0][0] != "tuning", kv[0][1:])):
        within, median, largest = tally(rs, budget)
        book = sum(r["exact"] for r in rs if r["source"] == "alice")
        lines.append(f"| {name} | {length} | {recipe} | {budget} | {len(rs)} | " + " | ".join(within)
                     + f" | {median} | {book} / {sum(r['exact'] for r in rs) - book} | {largest} |")
    return "\n".join(lines)


def plainly(row: dict) -> str:
    """A row's recipe as its registry entry and the changes, its precision apart: "default@7", "cold@1"; with
    ", precision ..." only where the model did not compute in bf16 (README's table says bf16 once)."""
    recipe = stored(row["settings"])
    changed = recipe.overrides()
    precision = changed.pop("precision", "fp32")
    label = recipe.base + (f" with {', '.join(f'{k} {v}' for k, v in changed.items())}" if changed else "")
    return label if precision == "bf16" else f"{label}, precision {precision}"


def by_source(rows: list[dict], name: str = "test") -> str:
    """README's table: one line per (recipe, length) of a set, for each source its passages' tally (exact
    within each budget, median, slowest) at the budget they ran with."""
    by: dict[tuple, list[dict]] = {}
    for r in rows:
        if r["set"] == name:
            by.setdefault((plainly(r), r["length"]), []).append(r)
    # Today's default first, then what it is measured against (its variants, then the other named recipes).
    order = ["default", *(name for name in RECIPES if name != "default")]
    lines = ["| recipe | tokens | " + " | ".join(
        f"{source}: exact within {' / '.join(map(str, WITHIN))}, median, slowest" for source in SOURCES) + " |",
        "|" + "---|" * (2 + len(SOURCES))]
    for (recipe, length), rs in sorted(by.items(), key=lambda kv: (order.index(kv[0][0].split("@")[0]), kv[0])):
        cells = []
        for source in SOURCES:
            ss = [r for r in rs if r["source"] == source]
            if ss:
                within, median, slowest = tally(ss, max(r["budget"] for r in ss))
                cells.append(f"{' / '.join(within)} of {len(ss)}, {median}, {slowest}")
            else:
                cells.append("not run")
        lines.append(f"| {recipe} | {length} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
