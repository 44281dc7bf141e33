"""Recipes side by side: steps and seconds to an exact round trip on book text, 1 vector.

    python benchmarks/recipes.py --quick              # 2 samples at 16 and 32 tokens, 600-step budget
    python benchmarks/recipes.py                      # 5 samples at 16, 32 and 64 tokens, 5000 steps (hours)
    python benchmarks/recipes.py --recipes default    # run only some recipes; the table shows all stored
    python benchmarks/recipes.py --recipes paper,progressive --samples 3 --lengths 32,64 \\
        --budget paper=2000 --budget progressive=2000 --batch-size 3   # the anchors, cut to fit the run time
    python benchmarks/recipes.py --samples 3 --table  # the table of the first 3 samples of every recipe
    python benchmarks/recipes.py --quick --variant lr1=default --set lr1.lr=0.1 --recipes lr1 --mine lr1  # a variant

Each (recipe as run, length, sample) is one row of a results database (benchmarks/results/recipes-*.sqlite by
default), so an interrupted run resumes where it stopped and the table can be printed again with --table.
Every row is keyed by the recipe's settings with the step budget it ran with, so another budget makes other
rows (shown as RECIPE@BUDGET where a recipe has several); a sample that does not reach an exact round trip
within its budget counts at that budget. A cut budget makes our ratio to `paper` an upper bound
(its learning rate is constant, so more steps only extend the run); `progressive` spreads its cosine over its
budget, so a cut one is another run. At batch 1 (the default) seconds per step compare across recipes; with
--batch-size k, a sample's seconds are the wall time of its batch. The accuracy column is each sample's
teacher-forced accuracy with its best vectors (1.00 when exact).
"""

from __future__ import annotations

import argparse
import platform
import shlex
import sys
from pathlib import Path

import torch

from cramming.core.errors import CrammingError
from cramming.core.recipes import RECIPES
from cramming.experiments.runner import Spec, recipe_tables, run_local, run_ray
from cramming.files.database import Store
from cramming.model.aliases import DEFAULT_MODEL
from cramming.reports.recipes import table

HERE = Path(__file__).parent
MODES = {  # lengths, samples, step budget
    "quick": ([16, 32], 2, 600),
    "full": ([16, 32, 64], 5, 5000),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a few samples at 16 and 32 tokens (~20 min)")
    parser.add_argument("--recipes", default="paper,progressive,default", help="comma-separated recipe names")
    parser.add_argument("--mine", default="default", help="the recipe compared against the anchors")
    parser.add_argument("--model", default=DEFAULT_MODEL, help="the model's name as rows store it")
    parser.add_argument("--db", help="results database (default: benchmarks/results/recipes-MODE.sqlite)")
    parser.add_argument("--table", action="store_true", help="print the table of stored rows, run nothing")
    parser.add_argument("--variant", action="append", default=[], metavar="NAME=BASE",
                        help="a variant of recipe BASE under NAME, its changes from --set (repeatable)")
    parser.add_argument("--set", dest="settings", action="append", default=[], metavar="NAME.FIELD=VALUE",
                        help="change a field of a --variant (repeatable; values are JSON where they parse)")
    parser.add_argument("--executor", choices=("local", "ray"), default="local",
                        help="ray: the same runs on a local Ray instance's workers")
    parser.add_argument("--batch-size", type=int, default=1, help="samples crammed together (timings then differ)")
    parser.add_argument("--samples", type=int, help="samples per length (default: the mode's); the first ones")
    parser.add_argument("--lengths", type=lambda text: [int(n) for n in text.split(",")],
                        help="comma-separated token lengths (default: the mode's)")
    parser.add_argument("--budget", action="append", default=[], metavar="RECIPE=STEPS",
                        help="a recipe's step budget, below the mode's when run time forces it (repeatable)")
    args = parser.parse_args()
    try:
        tables = recipe_tables(args.variant, args.settings)
    except CrammingError as e:
        sys.exit(f"error: {e}")

    mode = "quick" if args.quick else "full"
    lengths, samples, budget = MODES[mode]
    samples = args.samples or samples
    lengths = args.lengths or lengths
    recipes = args.recipes.split(",")
    budgets = {name: budget for name in recipes}
    for text in args.budget:
        name, _, steps = text.partition("=")
        if name not in budgets or not steps.isdigit():
            sys.exit(f"--budget takes RECIPE=STEPS for a recipe in --recipes, got {text!r}")
        budgets[name] = int(steps)
    db = Path(args.db) if args.db else HERE / "results" / f"recipes-{mode}.sqlite"
    db.parent.mkdir(parents=True, exist_ok=True)
    store = Store(db)

    def stored() -> list[dict]:
        rows = [r for r in store.rows() if r["model"] == args.model and r["source"] == "books"
                and r["length"] in lengths and r["sample"] < samples and r["vectors"] == 1 and r["seed"] == 0]
        for r in rows:
            r["as_run"] = store.settings(r)
            if len({(o["budget"], o["recipe_digest"]) for o in rows if o["recipe"] == r["recipe"]}) > 1:
                r["recipe"] = f"{r['recipe']}@{r['budget']}"  # never one line for two runs
        return rows

    if not args.table:
        torch.manual_seed(0)
        for length in lengths:
            for name in recipes:
                spec = Spec(models=[args.model], sources=["books"], lengths=[length], vectors=[1],
                            recipes={name: tables.get(name, {})}, samples=samples, max_steps=budgets[name])
                try:
                    spec.check()
                except CrammingError as e:
                    sys.exit(f"error: {e}")
                run = run_ray if args.executor == "ray" else run_local
                run(spec, store, device="cpu", batch_size=args.batch_size, on_task=lambda k, m: print(
                    f"{k.recipe:>12} {k.length:>3} tokens sample {k.sample}: exact={m['exact']} steps={m['steps']} "
                    f"{m['seconds']:.1f} s", file=sys.stderr, flush=True))
    rows = stored()
    anchors = tuple(a for a in ("paper", "progressive") if a != args.mine)
    published = {name: RECIPES[name].max_steps for name in anchors}
    cut = sorted({f"{r['recipe']} {r['budget']}" for r in rows if r["budget"] < published.get(r["recipe"], 0)})
    print(f"Book text, 1 vector, {args.model}, up to {samples} samples per length; step budgets in the table"
          f"{' (below the published 5000 for run time: ' + ', '.join(cut) + ')' if cut else ''}; "
          f"float32, {platform.machine()} CPU.")
    print(f"Command: {shlex.join(['python', *sys.argv])}\n")
    print(table(rows, args.mine, anchors))
    as_run = {r["recipe"]: {k: v for k, v in r["as_run"].items() if k not in ("name", "max_steps")} for r in rows}
    print("\nRecipes: " + "; ".join(f"{name}: {fields}" for name, fields in sorted(as_run.items())))


if __name__ == "__main__":
    main()
