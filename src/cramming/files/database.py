"""The results database: one SQLite row per task, keyed by what ran.

A row's identity is the model's and tokenizer's fingerprints, the text source, its text seed, the sample,
the passage's length (the text is its first `length` tokens), the length, the length whose solution the try
started from (0: from the recipe's own start), the number of vectors, a digest of the recipe as run (every
setting, the step budget, the required margin, the storage form and the compute precision as resolved), the
seed and the batch size asked for (0: as many as fit in the GPU's memory; -1: not recorded, rows stored before
schema 3). The model's and the recipe's names are labels beside it: a rerun after any of those changed runs
new rows and never "resumes" onto the old ones. Each row also records its run conditions (the device kind, the
batch it was crammed in, the decoding precision of its verification; None for rows before schema 3).

Each finished batch of tasks is committed in one transaction, so a crash loses at most the batch in flight
(one task at batch size 1) and never keeps part of a batch. The identity is the primary key and rows are
inserted with INSERT OR IGNORE, so rerunning a spec, or two runs on one file at once, never duplicates a
row. WAL mode and a busy timeout let concurrent runs share the file safely.

A second table, `runs`, says what wrote the file: each `cram run` or horizon search on it, with its command
line, when it started, the commit of the cramming checkout it ran from (marked +dirty when its source had
uncommitted changes) and the versions of cramming, torch and transformers. A row was made by the last run
that started before it finished; a `cram remeasure` listed after it rewrote its measured metrics (never its
key, steps or exactness) with the code of that run.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path

from cramming.core.errors import CrammingError
from cramming.files.vector_file import vector_metadata

SCHEMA_VERSION = 3  # PRAGMA user_version; 1 (no user_version) keyed rows by recipe name only, 2 had no batch size
IDENTITY = ("model_fingerprint", "tokenizer_fingerprint", "source", "text_seed", "sample", "passage_tokens",
            "length", "warm_from", "vectors", "recipe_digest", "seed", "batch_size")
NOT_RECORDED = -1  # the batch size of a row stored before schema 3
LABELS = ("model", "recipe")
KEY = (*LABELS, *IDENTITY)  # every column of a TaskKey
METRICS = ("tokens", "ce_without_bits", "ce_with_bits", "information_gain_bits", "information_gain_nats",
           "token_gain", "accuracy_without", "accuracy_with", "exact", "diverged", "theoretical_capacity",
           "utilization", "steps", "seconds")
ROW = (*KEY, "budget", *METRICS, "finished_at")  # what rows() gives per row
# readings of a row's vectors, which `cram remeasure` may take again; the rest of METRICS is what ran
MEASURED = tuple(m for m in METRICS if m not in ("tokens", "exact", "diverged", "steps", "seconds"))
_BY_IDENTITY = " AND ".join(f"{k} = ?" for k in IDENTITY)  # WHERE clause of one row
_TEXT_COLUMNS = {"model", "recipe", "model_fingerprint", "tokenizer_fingerprint", "source", "recipe_digest"}

SCHEMA = f"""
CREATE TABLE IF NOT EXISTS results (
    {", ".join(f"{c} {'TEXT' if c in _TEXT_COLUMNS else 'INTEGER'} NOT NULL" for c in KEY)},
    recipe_settings TEXT NOT NULL,
    {", ".join(f"{m} REAL" for m in METRICS)},
    text TEXT NOT NULL,
    vector_file BLOB NOT NULL,
    history TEXT NOT NULL,
    run_conditions TEXT,
    finished_at TEXT NOT NULL DEFAULT (datetime('now')),
    PRIMARY KEY ({", ".join(IDENTITY)})
)
"""


RUNS = """
CREATE TABLE IF NOT EXISTS runs (
    started_at TEXT NOT NULL DEFAULT (datetime('now')), command TEXT NOT NULL, source_commit TEXT,
    cramming TEXT, torch TEXT, transformers TEXT
)
"""


def source_commit() -> str | None:
    """The git commit of the checkout this cramming runs from, +dirty when its source differs from it; None
    for an installed package (no checkout) or without git."""
    root = Path(__file__).resolve().parents[3]  # src/cramming/files/database.py: the checkout
    if not (root / ".git").exists():
        return None
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "--short=12", "HEAD"], capture_output=True,
                              text=True, timeout=10)
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no", "--",
                                "src"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    if head.returncode != 0:
        return None
    return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


@dataclass(frozen=True)
class TaskKey:
    """One task: its labels (model and recipe names) and its identity (what ran)."""

    model: str
    recipe: str
    model_fingerprint: str
    tokenizer_fingerprint: str
    source: str
    text_seed: int
    sample: int
    length: int
    vectors: int
    recipe_digest: str
    seed: int
    batch_size: int  # asked for: 0 as many as fit in the GPU's memory, NOT_RECORDED before schema 3
    passage_tokens: int = 0  # the passage the text is cut from; 0: a passage of `length` tokens
    warm_from: int = 0  # the length whose exact solution this try started from; 0: the recipe's own start

    def __post_init__(self) -> None:
        if not self.passage_tokens:
            object.__setattr__(self, "passage_tokens", self.length)

    def identity(self) -> tuple:
        values = asdict(self)
        return tuple(values[k] for k in IDENTITY)


def steps_run(row: dict) -> int:
    """The steps a stored row ran (its history's last step): what it cost. Not `steps`, which holds the step of
    its best vectors: the exact one, else the best before the budget, the patience rule or a divergence ended it."""
    return row["steps_run"]


def steps_to_exact(row: dict) -> int:
    """A row's steps to its exact round trip, its budget where it never came back: the censored count that medians
    and "exact within" tallies rank rows by."""
    return row["steps"] if row["exact"] else row["budget"]


class Store:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        try:
            self.db = sqlite3.connect(self.path, timeout=60, isolation_level=None)
            self.db.execute("PRAGMA busy_timeout=60000")
            old = self.db.execute("SELECT 1 FROM sqlite_master WHERE name = 'results'").fetchone()
            version = self.db.execute("PRAGMA user_version").fetchone()[0]
        except sqlite3.DatabaseError as err:
            raise CrammingError(f"{self.path} is not a usable results database ({err})") from None
        if old and version == 2:
            self._migrate_from_2()
        elif old and version != SCHEMA_VERSION:
            self.db.close()
            raise CrammingError(f"{self.path} was written by an older cramming whose rows are keyed by recipe name "
                                "only (not by the model fingerprint, the budget or the text seed); it is left as it "
                                "is: use a new results file")
        try:
            self.db.execute("PRAGMA journal_mode=WAL")
            tables = {r[0] for r in self.db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            if not {"results", "runs"} <= tables:  # a new file, or one from before the runs table; a current file
                with self.db:                      # is left byte for byte as it is until a row is written
                    self.db.execute("BEGIN IMMEDIATE")
                    self.db.execute(SCHEMA)
                    self.db.execute(RUNS)
                    self.db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        except sqlite3.DatabaseError as err:
            raise CrammingError(f"{self.path} is not a usable results database ({err})") from None

    def _migrate_from_2(self) -> None:
        """Schema 2 -> 3 in one transaction: the batch size joins the key (NOT_RECORDED for the rows there), and a
        run_conditions column (NULL for them). Every row and value is kept."""
        kept = [c for c in (*KEY, "recipe_settings", *METRICS, "text", "vector_file", "history", "finished_at")
                if c != "batch_size"]
        try:
            with self.db:
                self.db.execute("BEGIN IMMEDIATE")
                self.db.execute("ALTER TABLE results RENAME TO results_2")
                self.db.execute(SCHEMA)
                self.db.execute(f"INSERT INTO results ({', '.join(kept)}, batch_size) "
                                f"SELECT {', '.join(kept)}, {NOT_RECORDED} FROM results_2")
                self.db.execute("DROP TABLE results_2")
                self.db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        except sqlite3.DatabaseError as err:
            raise CrammingError(f"{self.path}: could not bring its rows to schema {SCHEMA_VERSION} ({err}); the "
                                "file is unchanged") from None

    def record_run(self, command: str) -> None:
        """Note that `command` is about to write rows here, with the code and library versions it runs on."""
        with self.db:
            self.db.execute("INSERT INTO runs (command, source_commit, cramming, torch, transformers) "
                            "VALUES (?, ?, ?, ?, ?)", (command, source_commit(), _version("cramming"),
                                                       _version("torch"), _version("transformers")))

    def runs(self) -> list[dict]:
        """What wrote this file, oldest first."""
        cursor = self.db.execute("SELECT * FROM runs ORDER BY started_at, rowid")
        names = [c[0] for c in cursor.description]
        return [dict(zip(names, row)) for row in cursor]

    def done(self) -> set[tuple]:
        """The identities of the stored rows."""
        return set(self.db.execute(f"SELECT {', '.join(IDENTITY)} FROM results"))

    def add(self, key: TaskKey, settings: dict, metrics: dict, text: str, vector_file: bytes, history: list,
            conditions: dict | None = None) -> bool:
        """Insert a finished task in its own transaction; False if the row was there already."""
        return self.add_batch([(key, settings, metrics, text, vector_file, history, conditions or {})]) == 1

    def add_batch(self, results: list[tuple[TaskKey, dict, dict, str, bytes, list, dict]]) -> int:
        """Insert a batch's finished tasks in one transaction, so a crash keeps all of them or none
        (a rerun then crams the same batch again) -> rows added. Each task comes with the recipe's settings
        as run, its metrics, its text, its vector file, its thinned history and its run conditions."""
        cols = (*KEY, "recipe_settings", *METRICS, "text", "vector_file", "history", "run_conditions")
        sql = f"INSERT OR IGNORE INTO results ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})"
        added = 0
        with self.db:  # BEGIN ... COMMIT (or ROLLBACK on error)
            self.db.execute("BEGIN IMMEDIATE")
            for key, settings, metrics, text, vector_file, history, conditions in results:
                values = (*(getattr(key, k) for k in KEY), json.dumps(settings, sort_keys=True),
                          *(float(metrics[m]) for m in METRICS), text, vector_file, json.dumps(history),
                          json.dumps(conditions, sort_keys=True))
                added += self.db.execute(sql, values).rowcount
        return added

    def update_metrics(self, updates: list[tuple[dict, dict]]) -> None:
        """Rewrite measured columns (MEASURED) of stored rows, in one transaction: (row key, {column: value})
        each; keys, steps, time and exactness are what ran and are refused (see remeasure.py)."""
        with self.db:
            self.db.execute("BEGIN IMMEDIATE")
            for key, metrics in updates:
                unknown = set(metrics) - set(MEASURED)
                if unknown:
                    raise CrammingError(f"not measured columns: {', '.join(sorted(unknown))}")
                assignments = ", ".join(f"{m} = ?" for m in metrics)
                self.db.execute(f"UPDATE results SET {assignments} WHERE {_BY_IDENTITY}",
                                (*(float(v) for v in metrics.values()), *(key[k] for k in IDENTITY)))

    def rows(self, *, full: bool = False) -> list[dict]:
        """Every row's key, its step budget, its metrics and when it finished, as plain values, and under
        "settings" the recipe's settings as run, under "steps_run" the steps it ran (its history's last step; `steps`
        is the step of its best vectors), under "conditions" its run conditions (None before schema 3); full: also
        its "text" and thinned "history" (never vectors)."""
        cols = (*ROW, "steps_run", "settings", "conditions", *(("text",) if full else ()))
        out = []
        order = ", ".join(("model", "source", "recipe", "vectors", "length", "text_seed", "sample", "seed"))
        computed = {"budget": "json_extract(recipe_settings, '$.max_steps')", "settings": "recipe_settings",
                    # read in Python: a diverged history holds NaN, which is not JSON
                    "steps_run": "history", "conditions": "run_conditions"}
        select = ", ".join(computed.get(c, c) for c in cols)
        for row in self.db.execute(f"SELECT {select} FROM results ORDER BY {order}"):
            d = dict(zip(cols, row))
            d["settings"] = json.loads(d["settings"])
            d["conditions"] = json.loads(d["conditions"]) if d["conditions"] else None
            history = json.loads(d.pop("steps_run"))
            d["steps_run"] = history[-1][0]  # the thinned history keeps the last step
            if full:
                d["history"] = history
            for k in ("exact", "diverged"):
                d[k] = bool(d[k])
            for k in ("tokens", "token_gain", "steps", "steps_run"):
                d[k] = int(d[k])
            out.append(d)
        return out

    def get(self, key: TaskKey) -> tuple[bool, bytes] | None:
        """(exact, vector file) of the row with this key's identity, None when it has not run."""
        row = self.db.execute(f"SELECT exact, vector_file FROM results WHERE {_BY_IDENTITY}",
                              key.identity()).fetchone()
        return (bool(row[0]), row[1]) if row else None

    def _column(self, key: dict, column: str):
        row = self.db.execute(f"SELECT {column} FROM results WHERE {_BY_IDENTITY}",
                              tuple(key[k] for k in IDENTITY)).fetchone()
        return row[0] if row else None

    def history(self, key: dict) -> list[list[float]]:
        """The thinned per-step history [(step, loss, accuracy), ...] of the row with this key."""
        row = self._column(key, "history")
        return json.loads(row) if row else []

    def settings(self, key: dict) -> dict:
        """The recipe's full settings as run (budget included) of the row with this key."""
        row = self._column(key, "recipe_settings")
        return json.loads(row) if row else {}

    def text(self, key: dict) -> str | None:
        """The text crammed in the row with this key."""
        return self._column(key, "text")

    def vector_file(self, key: dict) -> bytes | None:
        """The vector file (safetensors bytes) of the row with this key."""
        return self._column(key, "vector_file")

    def warm_start(self, key: dict) -> bytes | None:
        """The vector file the try of this key started from: the same passage's exact row at its warm_from length
        (that row's own start aside); None for a try from the recipe's own start."""
        if not key["warm_from"]:
            return None
        same = [k for k in IDENTITY if k not in ("length", "warm_from")]
        row = self.db.execute(f"SELECT vector_file FROM results WHERE exact = 1 AND length = ? AND "
                              f"{' AND '.join(f'{k} = ?' for k in same)}",
                              (key["warm_from"], *(key[k] for k in same))).fetchone()
        if row is None:
            raise CrammingError(f"{self.path}: the warm start of {key['source']} passage {key['sample']} at "
                                f"{key['length']} tokens (its exact row at {key['warm_from']}) is not stored")
        return row[0]

    def metadata(self, key: dict) -> dict[str, str]:
        """The vector file metadata of the row with this key (recipe as run, seed, ...); {} when absent."""
        data = self.vector_file(key)
        return vector_metadata(data) if data else {}

    def close(self) -> None:
        self.db.close()
