"""Recipes side by side: steps and seconds to an exact round trip on book text, 1 vector.

    python benchmarks/recipes.py --quick              # 2 samples at 16 and 32 tokens, 600-step budget
    python benchmarks/recipes.py                      # 5 samples at 16, 32 and 64 tokens, 5000 steps (hours)
    python benchmarks/recipes.py --recipes default    # run only some recipes; the table shows all stored
    python benchmarks/recipes.py --quick --variant 'lr1=lr:0.1;schedule:cosine' --recipes lr1 --mine lr1  # a variant

Each (recipe, length, sample) is one row of a results database (benchmarks/results/recipes-*.sqlite by
default), so an interrupted run resumes where it stopped and the table can be printed again with --table.
Every sample is crammed alone (batch 1), so seconds per step are comparable across recipes. A sample that
does not reach an exact round trip within the budget counts at the budget.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import statistics
import sys
from pathlib import Path

import torch

from cramming.engine import RECIPES, Recipe
from cramming.runner import Spec, run_local
from cramming.store import Store

HERE = Path(__file__).parent
MODES = {  # lengths, samples, step budget
    "quick": ([16, 32], 2, 600),
    "full": ([16, 32, 64], 5, 5000),
}


def table(rows: list[dict], budget: int, mine: str, anchors: tuple[str, ...]) -> str:
    """Markdown table: one line per (length, recipe), ratios of `mine` to each anchor on its lines."""
    by = {}
    for r in rows:
        by.setdefault((r["length"], r["recipe"]), []).append(r)
    lines = ["| tokens | recipe | exact | median steps | max steps | median s/sample | s/step | "
             + " | ".join(f"steps {mine}/{a}" for a in anchors) + " |",
             "|" + "---|" * (7 + len(anchors))]
    for length in sorted({k[0] for k in by}):
        medians = {}
        for recipe in sorted({k[1] for k in by if k[0] == length}, key=lambda r: (r == mine, r)):
            rs = by[(length, recipe)]
            steps = [r["steps"] if r["exact"] else budget for r in rs]  # a failure counts at the budget
            medians[recipe] = statistics.median(steps)
            ratios = [f"{medians[recipe] / medians[a]:.2f}" if recipe == mine and a in medians else ""
                      for a in anchors]
            per_step = sum(r["seconds"] for r in rs) / max(1, sum(r["steps"] for r in rs))
            lines.append(f"| {length} | {recipe} | {sum(r['exact'] for r in rs)}/{len(rs)} | {medians[recipe]:g} | "
                         f"{max(steps)} | {statistics.median(r['seconds'] for r in rs):.1f} | {per_step:.3f} | "
                         + " | ".join(ratios) + " |")
    return "\n".join(lines)


def variant(text: str) -> Recipe:
    """NAME=field:value;... -> the default recipe with those fields changed, registered under NAME.
    Values are JSON (0.1, true, null, [0.9,0.99]); anything else is a string (cosine)."""
    name, _, changes = text.partition("=")
    fields = {}
    for change in filter(None, changes.split(";")):
        key, _, value = change.partition(":")
        try:
            fields[key] = json.loads(value)
        except json.JSONDecodeError:
            fields[key] = value
        if isinstance(fields[key], list):
            fields[key] = tuple(fields[key])
    RECIPES[name] = dataclasses.replace(RECIPES["default"], name=name, **fields)
    return RECIPES[name]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a few samples at 16 and 32 tokens (~20 min)")
    parser.add_argument("--recipes", default="paper,progressive,default", help="comma-separated recipe names")
    parser.add_argument("--mine", default="default", help="the recipe compared against the anchors")
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--db", help="results database (default: benchmarks/results/recipes-MODE.sqlite)")
    parser.add_argument("--table", action="store_true", help="print the table of stored rows, run nothing")
    parser.add_argument("--variant", action="append", default=[], metavar="NAME=FIELD:VALUE;...",
                        help="register a variant of the default recipe under NAME (repeatable)")
    parser.add_argument("--batch-size", type=int, default=1, help="samples crammed together (timings then differ)")
    args = parser.parse_args()
    for text in args.variant:
        variant(text)

    mode = "quick" if args.quick else "full"
    lengths, samples, budget = MODES[mode]
    recipes = args.recipes.split(",")
    db = Path(args.db) if args.db else HERE / "results" / f"recipes-{mode}.sqlite"
    db.parent.mkdir(parents=True, exist_ok=True)
    store = Store(db)
    if not args.table:
        torch.manual_seed(0)
        spec = Spec(models=[args.model], sources=["books"], lengths=lengths, vectors=[1], recipes=recipes,
                    samples=samples, max_steps=budget)
        run_local(spec, store, "cpu", batch_size=args.batch_size, on_task=lambda k, m: print(
            f"{k.recipe:>12} {k.length:>3} tokens sample {k.sample}: exact={m['exact']} steps={m['steps']} "
            f"{m['seconds']:.1f} s", file=sys.stderr, flush=True))
    rows = [r for r in store.rows() if r["model"] == args.model and r["length"] in lengths and r["vectors"] == 1]
    anchors = tuple(a for a in ("paper", "progressive") if a != args.mine)
    print(f"Book text, 1 vector, {args.model}, {samples} samples per length, step budget {budget} for every "
          f"recipe ({'quick mode; paper publishes 5000' if budget < 5000 else 'paper as published'}); "
          f"batch 1, float32, {platform.machine()} CPU with {torch.get_num_threads()} threads.")
    print(f"Command: python benchmarks/recipes.py{' --quick' if args.quick else ''}\n")
    print(table(rows, budget, args.mine, anchors))
    print("\nRecipes: " + "; ".join(f"{name}: {RECIPES[name]}" for name in sorted({r['recipe'] for r in rows})
                                     if name in RECIPES))


if __name__ == "__main__":
    main()
