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
"""

from __future__ import annotations

import argparse
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

from cramming.store import Store, steps_run

HERE = Path(__file__).parent
DATABASES = [HERE.parent / "results" / "capacity.sqlite", HERE.parent / "results" / "long-texts.sqlite"]


@dataclass
class Gap:
    row: dict
    full_at: int  # the first stored step with full teacher-forced accuracy under bf16
    full_after: tuple[int, int]  # (stored points at full accuracy, stored points) from full_at on

    @property
    def steps(self) -> int:
        """Steps from full bf16 accuracy to the end: the exact round trip, or the budget where it never came."""
        return steps_run(self.row) - self.full_at


def first_full(history: list[list[float]]) -> int | None:
    """The first stored step whose teacher-forced accuracy is 1, None if there is none."""
    return next((int(step) for step, _, accuracy in history if accuracy == 1.0), None)


def gaps(store: Store) -> tuple[list[dict], list[Gap]]:
    """(the rows crammed in bf16, a Gap for each of them that reached full accuracy under bf16)."""
    rows = [r for r in store.rows() if r["settings"].get("precision") == "bf16"]
    out = []
    for r in rows:
        history = store.history(r)
        at = first_full(history)
        if at is not None:
            after = [accuracy for step, _, accuracy in history if step >= at]
            out.append(Gap(r, at, (sum(a == 1.0 for a in after), len(after))))
    return rows, out


def lost(rows: list[dict], found: list[Gap], over: int) -> tuple[list[Gap], float]:
    """(the gaps of more than `over` steps, their steps' share of all steps the rows ran)."""
    long = [g for g in found if g.steps > over]
    return long, sum(g.steps for g in long) / max(sum(steps_run(r) for r in rows), 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("databases", nargs="*", default=[str(p) for p in DATABASES])
    parser.add_argument("--over", type=int, default=20, help="a gap of more steps than this counts")
    parser.add_argument("--worst", type=int, default=8, help="rows listed per database")
    args = parser.parse_args()
    print(f"Command: {shlex.join(['python', *sys.argv])}\n")
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


if __name__ == "__main__":
    main()
