"""The recipe comparison (benchmarks/recipes.py runs it): steps to exact of one recipe beside the published anchors."""

from __future__ import annotations

import statistics

from cramming.files.database import steps_to_exact


def table(rows: list[dict], mine: str, anchors: tuple[str, ...]) -> str:
    """Markdown table: one line per (length, recipe), ratios of `mine` to each anchor on its lines.
    Each row carries the step budget it ran with; a sample that failed counts at that budget."""
    by = {}
    for r in rows:
        by.setdefault((r["length"], r["recipe"]), []).append(r)
    lines = ["| tokens | recipe | budget | exact | median steps | max steps | accuracy | median s/sample | s/step | "
             + " | ".join(f"steps {mine}/{a}" for a in anchors) + " |",
             "|" + "---|" * (9 + len(anchors))]
    for length in sorted({k[0] for k in by}):
        medians = {}
        for recipe in sorted({k[1] for k in by if k[0] == length}, key=lambda r: (r == mine, r)):
            rs = by[(length, recipe)]
            steps = [steps_to_exact(r) for r in rs]
            medians[recipe] = statistics.median(steps)
            ratios = [f"{medians[recipe] / medians[a]:.2f}" if recipe == mine and a in medians else ""
                      for a in anchors]
            per_step = sum(r["seconds"] for r in rs) / max(1, sum(r["steps"] for r in rs))
            accuracies = "/".join(f"{r['accuracy_with']:.2f}" for r in sorted(rs, key=lambda r: r["sample"]))
            budgets = "/".join(str(b) for b in sorted({r["budget"] for r in rs}))
            lines.append(f"| {length} | {recipe} | {budgets} | {sum(r['exact'] for r in rs)}/{len(rs)} | "
                         f"{medians[recipe]:g} | {max(steps)} | {accuracies} | "
                         f"{statistics.median(r['seconds'] for r in rs):.1f} | "
                         f"{per_step:.3f} | " + " | ".join(ratios) + " |")
    return "\n".join(lines)
