"""What cramming in bf16 costs at the finish (benchmarks/precision_gap.py): per stored row crammed in bf16, the
steps between its first full teacher-forced accuracy under bf16 and its exact round trip (checked in float32)."""

from __future__ import annotations

from dataclasses import dataclass

from cramming.files.database import Store, steps_run


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


def rerun_table(results: list[dict]) -> str:
    """The reruns as a table: per row its gap, steps run and outcome as stored, with the forced-token rule and
    without it (a gap is "–" where the rerun never reached full bf16 accuracy)."""
    lines = ["| row | tokens | stored: gap / steps run / exact | forced: gap / steps run / exact | "
             "unforced: gap / steps run / exact |", "|---|---|---|---|---|"]
    for x in results:
        r = x["database_row"]
        cells = [f"{'–' if a['gap'] is None else a['gap']} / {a['steps_run']} / {'yes' if a['exact'] else 'no'}"
                 for a in (x["stored"], x["forced"], x["unforced"])]
        lines.append(f"| {r['recipe']} {r['source']} {r['sample']} | {r['length']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
