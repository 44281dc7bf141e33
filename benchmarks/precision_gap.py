"""What cramming in bf16 costs at the finish: the steps between a sample's first full teacher-forced accuracy
under bf16 and its exact round trip, which is always checked with the model in float32.

    python benchmarks/precision_gap.py                     # the committed campaign and long-text rows
    python benchmarks/precision_gap.py results/capacity.sqlite --over 50

Under float32 a step whose argmax is right everywhere is, but for decoding's own rounding, an exact round trip;
under bf16 it gets a float32 greedy check that can fail, and the sample crams on. For every row crammed in bf16
this reads the stored history (thinned to at most 200 points, so the first step at full accuracy is known to
within steps/200 and each gap is a lower bound within that) and prints, per database: how many rows reached
full bf16 accuracy, how many spent more than --over steps from there to the end, those steps' share of all
steps, and the worst rows with how many of their stored points after it were at full accuracy (a plateau
the check keeps failing, or an oscillation that touched 1.0 once). Since bf16 and float32 take different paths,
a gap is what the failed checks cost at most, not what float32 would have saved.

    python benchmarks/precision_gap.py --rerun 4 --max-tokens 128   # the fix, measured on the worst plateaus

--rerun K: the K rows with the longest gaps that sat on a plateau (at least 5 stored points at full accuracy
after it), no longer than --max-tokens, crammed again from the same text, seed and warm start, twice in this
run: as the engine crams today (a token the float32 check found wrong stays in the loss, engine.token_weights)
and with that rule switched off (the loss before it). Results go to results/precision-gap.json.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

import torch

import cramming.core.loop as engine
from cramming import api
from cramming.core.recipes import Recipe
from cramming.files.database import Store, steps_run
from cramming.files.vector_file import vectors_of
from cramming.reports.bf16_gaps import Gap, first_full, gaps, lost, rerun_table

HERE = Path(__file__).parent
DATABASES = [HERE.parent / "results" / "capacity.sqlite", HERE.parent / "results" / "long-texts.sqlite"]


def unforced(lead, ok, forced, recipe):
    """engine.token_weights as before the fix: no token forced into the loss by a failed check."""
    return FORCED(lead, ok, torch.zeros_like(forced), recipe)


FORCED = engine.token_weights


def rerun(store: Store, g: Gap, lm: api.LoadedModel) -> dict:
    """One plateau row crammed again with and without the forced tokens -> both outcomes and gaps."""
    r = g.row
    text, warm = store.text(r), store.warm_start(r)
    out = {"database_row": {k: r[k] for k in ("recipe", "source", "sample", "length", "text_seed", "seed")},
           "stored": {"gap": g.steps, "steps_run": steps_run(r), "exact": r["exact"]}}
    for arm, weights in (("forced", FORCED), ("unforced", unforced)):
        engine.token_weights = weights
        try:
            [c] = api.compress([text], lm, n_vectors=r["vectors"], recipe=Recipe.from_dict(r["settings"]),
                               seed=r["seed"], warm_start=[vectors_of(warm) if warm else None])
        finally:
            engine.token_weights = FORCED
        full = first_full(c.history)
        ran = c.history[-1][0]
        out[arm] = {"exact": c.exact, "steps_run": ran, "full_at": full, "gap": None if full is None else ran - full}
        print(f"{r['source']} {r['sample']} @{r['length']} {arm}: {out[arm]}", file=sys.stderr, flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("databases", nargs="*", default=[str(p) for p in DATABASES])
    parser.add_argument("--over", type=int, default=20, help="a gap of more steps than this counts")
    parser.add_argument("--worst", type=int, default=8, help="rows listed per database")
    parser.add_argument("--rerun", type=int, default=0, metavar="K", help="cram the K worst plateaus again (above)")
    parser.add_argument("--max-tokens", type=int, default=128, help="--rerun: the longest rows it takes")
    parser.add_argument("--out", default=str(HERE.parent / "results" / "precision-gap.json"))
    args = parser.parse_args()
    print(f"Command: {shlex.join(['python', *sys.argv])}\n")
    if args.rerun:
        return show_reruns(args)
    print(f"| database | bf16 rows | full bf16 accuracy | gap > {args.over} steps | never exact after it | "
          "gap steps | share of all steps |")
    print("|---|---|---|---|---|---|---|")
    worst = []
    for path in args.databases:
        if not Path(path).is_file():
            sys.exit(f"error: no database at {path}")
        rows, found = gaps(Store(path))
        long, share = lost(rows, found, args.over)
        print(f"| {Path(path).name} | {len(rows)} | {len(found)} | {len(long)} | "
              f"{sum(not g.row['exact'] for g in found)} | {sum(g.steps for g in long)} | {share:.1%} |")
        worst += [(Path(path).name, g) for g in sorted(long, key=lambda g: -g.steps)[: args.worst]]
    print("\n| database | recipe (digest) | source | sample | tokens | full bf16 accuracy at | steps run | exact | "
          "gap | points at full accuracy after it |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, g in worst:
        r = g.row
        print(f"| {name} | {r['recipe']} ({r['recipe_digest'][:8]}) | {r['source']} | {r['sample']} | {r['length']} | "
              f"{g.full_at} | {steps_run(r)} | {'yes' if r['exact'] else 'no'} | {g.steps} | "
              f"{g.full_after[0]} of {g.full_after[1]} |")


def show_reruns(args: argparse.Namespace) -> None:
    """--rerun: the worst plateaus crammed again with and without the fix, one table, the results saved."""
    plateaus = []
    for path in args.databases:
        store = Store(path)
        plateaus += [(store, g) for g in gaps(store)[1]
                     if g.full_after[0] >= 5 and g.row["length"] <= args.max_tokens and g.steps > args.over]
    plateaus = sorted(plateaus, key=lambda sg: -sg[1].steps)[: args.rerun]
    lm = api.as_model(plateaus[0][1].row["model"], device="cpu")
    results = []
    for store, g in plateaus:
        results.append(rerun(store, g, lm))
        Path(args.out).write_text(json.dumps({"command": shlex.join(["python", *sys.argv]), "rows": results},
                                             indent=1) + "\n")
    print(rerun_table(results))


if __name__ == "__main__":
    main()
