"""How many bits a crammed vector needs (benchmarks/bits.py certifies them): the certificates table beside a results
file's rows, and its summary table."""

from __future__ import annotations

import statistics
from pathlib import Path

from cramming.files.database import Store

COLUMNS = ("length", "margin", "precision", "storage", "sample", "recipe_settings", "text", "exact", "steps",
           "seconds", "information_gain_bits", "min_margin", "effective_bits", "survive_bf16_storage",
           "survive_bf16_model", "noise_radius", "smallest_exact_payload", "stored_payload", "text_bytes", "d_model")


SCHEMA = f"""CREATE TABLE IF NOT EXISTS certificates ({", ".join(COLUMNS)},
    PRIMARY KEY (length, margin, precision, storage, sample, recipe_settings))"""


def open_store(path: Path) -> Store:
    """A results file (its runs table records what wrote it) with the certificates table beside its rows."""
    store = Store(path)
    store.db.execute(SCHEMA)
    return store


def median(values: list[float], form: str = "g") -> str:
    return format(statistics.median(values), form) if values else "–"


def table(store: Store) -> str:
    """One line per (tokens, margin, precision, storage, recipe as run) of the stored rows."""
    cursor = store.db.execute(f"SELECT {', '.join(COLUMNS)} FROM certificates ORDER BY length, margin, precision, "
                              "storage, recipe_settings, sample")
    groups: dict[tuple, list[dict]] = {}
    for values in cursor:
        r = dict(zip(COLUMNS, values))
        groups.setdefault((r["length"], r["margin"], r["precision"], r["storage"], r["recipe_settings"]), []).append(r)
    lines = ["| tokens | --margin | precision | storage | exact | median steps | wall (s) | min margin "
             "| effective bits (min-max) | survive bf16 storage | survive bf16 model | noise radius "
             "| smallest exact file / text (bytes) | utilization at 16 bits / at effective bits "
             "| the goal: file as stored smaller than the text, exact in fp32 and under a bf16 model |",
             "|" + "---|" * 15]
    for (length, margin, precision, form, _), rs in groups.items():
        exact = [r for r in rs if r["exact"]]
        bits = [r["effective_bits"] for r in exact if r["effective_bits"]]
        d = rs[0]["d_model"]
        goal = sum(r["survive_bf16_model"] and r["stored_payload"] < r["text_bytes"] for r in exact)
        effective_utilization = [r["information_gain_bits"] / (d * r["effective_bits"]) for r in exact
                                 if r["effective_bits"]]
        lines.append(
            f"| {length} | {margin:g} | {precision} | {form} | {len(exact)}/{len(rs)} | "
            f"{median([r['steps'] for r in exact])} | {max(r['seconds'] for r in rs):.0f} | "
            f"{median([r['min_margin'] for r in exact], '.2f')} | {median(bits)} ({min(bits, default='–')}-"
            f"{max(bits, default='–')}) | {sum(r['survive_bf16_storage'] for r in exact)}/{len(exact)} | "
            f"{sum(r['survive_bf16_model'] for r in exact)}/{len(exact)} | "
            f"{median([r['noise_radius'] or 0.0 for r in exact])} | "
            f"{median([r['smallest_exact_payload'] for r in exact if r['smallest_exact_payload']])} / "
            f"{median([r['text_bytes'] for r in exact])} | "
            f"{median([r['information_gain_bits'] / (d * 16) for r in exact], '.3f')} / "
            f"{median(effective_utilization, '.3f')} | {goal}/{len(rs)} |")
    return "\n".join(lines)
