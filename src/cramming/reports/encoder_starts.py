"""Starts that know the text (benchmarks/encoder.py measures them): the table of each start's rows."""

from __future__ import annotations

import statistics
from typing import Callable

from cramming.core.recipes import stored
from cramming.files.database import Store, steps_to_exact

# Each start crams with the model computing in bf16, as the training passages were (half a float32 step on this
# CPU); every sample still counts as exact only when float32 greedy decoding gives its text back.
STARTS = {"encoder": {"base": "default", "encoder": True, "precision": "bf16"}, "default": {"precision": "bf16"},
          "cold": {"precision": "bf16"}}


def start_of(label: str) -> str:
    """A row's start, from its label: "encoder: ridge" -> "encoder"."""
    return label.split(":")[0]


def table(rows: list[dict], store: Store, cosine: Callable[[str, int, int, str, list[dict]], str] | None = None
          ) -> str:
    """One line per (length, start as run). With `cosine` (start, length, budget, digest, rows -> a cell), also
    the median cosine between each start and the vectors its run ended with, which needs the encoder itself, not
    only the rows (benchmarks/encoder.py gives it)."""
    by: dict[tuple, list[dict]] = {}
    for r in rows:
        by.setdefault((r["length"], r["recipe"], r["recipe_digest"]), []).append(r)
    labels = {key: f"{rs[0]['recipe']} ({stored(rs[0]['settings']).label()})" for key, rs in by.items()}
    digests: dict[str, set] = {}
    for key, label in labels.items():
        digests.setdefault(label, set()).add(key[2])
    head = ["tokens", "start", "budget", "exact", "median steps", "step-0 accuracy (median)", "exact at step 0"]
    head += ["cosine start-final (median)"] if cosine is not None else []
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for (length, name, digest), rs in sorted(by.items(), key=lambda kv: (
            kv[0][0], list(STARTS).index(start_of(kv[0][1])), kv[0][1:])):
        budget = rs[0]["budget"]
        steps = [steps_to_exact(r) for r in rs]
        first = [store.history(r)[0][2] for r in rs]
        label = labels[(length, name, digest)]
        label += f" ({digest[:6]})" if len(digests[label]) > 1 else ""  # one label, two runs: which is which
        cells = [str(length), label, str(budget), f"{sum(r['exact'] for r in rs)}/{len(rs)}",
                 f"{statistics.median(steps):g}", f"{statistics.median(first):.3f}",
                 str(sum(r["exact"] and r["steps"] == 0 for r in rs))]
        if cosine is not None:
            cells.append(cosine(start_of(name), length, budget, digest, rs))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
