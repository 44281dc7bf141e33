"""How many bits a crammed vector needs (benchmarks/bits.py certifies them): the certificates table beside a results
file's rows, its summary table, and for vectors crammed in the model's basis (rank K) the table by K and the bytes
table beside the general-purpose compressors and the model's own entropy floor."""

from __future__ import annotations

import lzma
import statistics
import zlib
from pathlib import Path

from cramming.files.database import Store

COLUMNS = ("length", "margin", "precision", "storage", "sample", "recipe_settings", "text", "exact", "steps",
           "seconds", "information_gain_bits", "min_margin", "effective_bits", "survive_bf16_storage",
           "survive_bf16_model", "noise_radius", "smallest_exact_payload", "stored_payload", "text_bytes", "d_model",
           "rank", "ce_without_bits")
ADDED = ("rank", "ce_without_bits")  # columns a file written before them lacks: added empty when it is opened


SCHEMA = f"""CREATE TABLE IF NOT EXISTS certificates ({", ".join(COLUMNS)},
    PRIMARY KEY (length, margin, precision, storage, sample, recipe_settings))"""


def open_store(path: Path) -> Store:
    """A results file (its runs table records what wrote it) with the certificates table beside its rows."""
    store = Store(path)
    store.db.execute(SCHEMA)
    present = {row[1] for row in store.db.execute("PRAGMA table_info(certificates)")}
    for column in ADDED:
        if column not in present:
            store.db.execute(f"ALTER TABLE certificates ADD COLUMN {column}")
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


def _rows(store: Store) -> list[dict]:
    cursor = store.db.execute(f"SELECT {', '.join(COLUMNS)} FROM certificates ORDER BY length, sample")
    return [dict(zip(COLUMNS, values)) for values in cursor]


def rank_name(rank: int | None) -> str:
    return "full" if rank is None else str(rank)


def rank_table(store: Store) -> str:
    """Per length and K (full: the vectors themselves), crammed without a margin in fp32 storage: exact count,
    median steps, effective bits and the smallest exact payload (medians over the exact passages)."""
    groups: dict[tuple, list[dict]] = {}
    for r in _rows(store):
        if r["margin"] == 0 and r["storage"] == "fp32":
            groups.setdefault((r["length"], r["rank"] or 10 ** 9), []).append(r)
    lines = ["| tokens | K | exact | median steps | effective bits (min-max) | smallest exact payload (bytes) "
             "| the text (UTF-8 bytes) |", "|" + "---|" * 7]
    for (length, _), rs in sorted(groups.items()):
        exact = [r for r in rs if r["exact"]]
        bits = [r["effective_bits"] for r in exact if r["effective_bits"]]
        lines.append(f"| {length} | {rank_name(rs[0]['rank'])} | {len(exact)}/{len(rs)} | "
                     f"{median([r['steps'] for r in exact])} | "
                     f"{f'{median(bits)} ({min(bits)}-{max(bits)})' if bits else '–'} | "
                     f"{median([r['smallest_exact_payload'] for r in exact if r['smallest_exact_payload']])} | "
                     f"{median([len(r['text'].encode('utf-8')) for r in rs])} |")
    return "\n".join(lines)


def bytes_table(store: Store) -> str:
    """Per length, medians over the passages: the text's UTF-8 bytes, zlib -9's and lzma's, the model's entropy
    floor (its cross-entropy of the text without vectors, in bytes: what an arithmetic coder driven by the model
    would take), the full vector's smallest exact payload, and each passage's smallest exact payload in a basis
    (over every K tried) with the K that gave it."""
    by_text: dict[tuple, list[dict]] = {}
    for r in _rows(store):
        if r["margin"] == 0 and r["storage"] == "fp32":
            by_text.setdefault((r["length"], r["text"]), []).append(r)
    lines = ["| tokens | passages | UTF-8 | zlib -9 | lzma | entropy floor | full vector, smallest exact | in a basis, "
             "smallest exact (K) |", "|" + "---|" * 8]
    for length in sorted({length for length, _ in by_text}):
        passages = [(text, rs) for (L, text), rs in by_text.items() if L == length]
        full, based, ks = [], [], []
        for _, rs in passages:
            full += [r["smallest_exact_payload"] for r in rs if r["rank"] is None and r["smallest_exact_payload"]]
            best = min(((r["smallest_exact_payload"], r["rank"]) for r in rs
                        if r["rank"] is not None and r["smallest_exact_payload"]), default=None)
            if best:
                based.append(best[0])
                ks.append(best[1])
        floors = [r["ce_without_bits"] / 8 for _, rs in passages for r in rs[:1] if r["ce_without_bits"]]
        texts = [text.encode("utf-8") for text, _ in passages]
        lines.append(f"| {length} | {len(passages)} | {median([len(t) for t in texts])} | "
                     f"{median([len(zlib.compress(t, 9)) for t in texts])} | "
                     f"{median([len(lzma.compress(t)) for t in texts])} | {median(floors, '.0f')} | "
                     f"{median(full)} ({len(full)} exact) | {median(based)} ({len(based)} exact; K "
                     f"{', '.join(sorted(set(map(str, ks)), key=int)) or '–'}) |")
    return "\n".join(lines)
