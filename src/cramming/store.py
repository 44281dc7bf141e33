"""The results database: one SQLite row per (model, source, sample, length, vectors, recipe, seed).

Each finished batch of tasks is committed in one transaction, so a crash loses at most the batch in flight
(one task at batch size 1) and never keeps part of a batch. The key is the primary key and rows are
inserted with INSERT OR IGNORE, so rerunning a spec, or two runs on one file at once, never duplicates a
row. WAL mode and a busy timeout let concurrent runs share the file safely.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import asdict, dataclass
from pathlib import Path

from .errors import CrammingError
from .vectors import vector_metadata

KEY = ("model", "source", "sample", "length", "vectors", "recipe", "seed")
METRICS = ("tokens", "ce_without_bits", "ce_with_bits", "information_gain_bits", "information_gain_nats",
           "token_gain", "accuracy_without", "accuracy_with", "exact", "theoretical_capacity", "utilization",
           "steps", "seconds")

SCHEMA = f"""
CREATE TABLE IF NOT EXISTS results (
    model TEXT NOT NULL, source TEXT NOT NULL, sample INTEGER NOT NULL, length INTEGER NOT NULL,
    vectors INTEGER NOT NULL, recipe TEXT NOT NULL, seed INTEGER NOT NULL,
    {", ".join(f"{m} REAL" for m in METRICS)},
    text TEXT NOT NULL,
    vector_file BLOB NOT NULL,
    history TEXT NOT NULL,
    finished_at TEXT NOT NULL DEFAULT (datetime('now')),
    PRIMARY KEY ({", ".join(KEY)})
)
"""


@dataclass(frozen=True)
class TaskKey:
    model: str
    source: str
    sample: int
    length: int
    vectors: int
    recipe: str
    seed: int

    def astuple(self) -> tuple:
        return tuple(asdict(self)[k] for k in KEY)


class Store:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        try:
            self.db = sqlite3.connect(self.path, timeout=60, isolation_level=None)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA busy_timeout=60000")
            self.db.execute(SCHEMA)
        except sqlite3.DatabaseError as err:
            raise CrammingError(f"{self.path} is not a usable results database ({err})") from None

    def done(self) -> set[tuple]:
        return set(self.db.execute(f"SELECT {', '.join(KEY)} FROM results"))

    def add(self, key: TaskKey, metrics: dict, text: str, vector_file: bytes, history: list) -> bool:
        """Insert a finished task in its own transaction; False if the row was there already."""
        return self.add_batch([(key, metrics, text, vector_file, history)]) == 1

    def add_batch(self, results: list[tuple[TaskKey, dict, str, bytes, list]]) -> int:
        """Insert a batch's finished tasks in one transaction, so a crash keeps all of them or none
        (a rerun then crams the same batch again) -> rows added."""
        cols = (*KEY, *METRICS, "text", "vector_file", "history")
        sql = f"INSERT OR IGNORE INTO results ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})"
        added = 0
        with self.db:  # BEGIN ... COMMIT (or ROLLBACK on error)
            self.db.execute("BEGIN IMMEDIATE")
            for key, metrics, text, vector_file, history in results:
                values = (*key.astuple(), *(float(metrics[m]) for m in METRICS), text, vector_file,
                          json.dumps(history))
                added += self.db.execute(sql, values).rowcount
        return added

    def rows(self) -> list[dict]:
        """Every row's key and metrics, as plain values (no vectors, no history)."""
        cols = (*KEY, *METRICS)
        out = []
        for row in self.db.execute(f"SELECT {', '.join(cols)} FROM results ORDER BY {', '.join(KEY)}"):
            d = dict(zip(cols, row))
            d["exact"] = bool(d["exact"])
            for k in ("tokens", "token_gain", "steps"):
                d[k] = int(d[k])
            out.append(d)
        return out

    def _column(self, key: dict, column: str):
        row = self.db.execute(f"SELECT {column} FROM results WHERE {' AND '.join(f'{k} = ?' for k in KEY)}",
                              tuple(key[k] for k in KEY)).fetchone()
        return row[0] if row else None

    def history(self, key: dict) -> list[list[float]]:
        """The thinned per-step history [(step, loss, accuracy), ...] of the row with this key."""
        row = self._column(key, "history")
        return json.loads(row) if row else []

    def vector_file(self, key: dict) -> bytes | None:
        """The vector file (safetensors bytes) of the row with this key."""
        return self._column(key, "vector_file")

    def metadata(self, key: dict) -> dict[str, str]:
        """The vector file metadata of the row with this key (recipe as run, seed, ...); {} when absent."""
        data = self.vector_file(key)
        return vector_metadata(data) if data else {}

    def close(self) -> None:
        self.db.close()
