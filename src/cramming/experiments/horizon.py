"""The exact horizon of a passage: the longest prefix whose greedy round trip is exact, with no upper bound.

Per passage, the target grows from the last exact solution (8, 16, 32, 48, 64, 96, 128, ... tokens, each try
warm-started from the vectors of the longest prefix known to be exact), and after the first failure it is
bisected between the last success and that failure, each try again warm-started from the last success, until
the gap is within 10% of the length (4 tokens at least). Each try has the recipe's step budget.

A warm start begins where the shorter prefix's solution is, which helps when the longer text needs little
change and hurts when that solution is a basin the longer text cannot leave within the budget: book passage
2's 32-token prefix stayed not exact for 1000 steps from its 16-token solution, yet crams from the prior in
174 (README, "Limits"). So a warm-started try that fails is tried once more from the recipe's own start before
its length counts as a failure: the horizon is the longest prefix exact from either start.

Every try is a row of the results store, keyed by its length and by the length it started from, so a search
killed at any point (kill -9 included) resumes by replaying the stored tries and running only the missing
ones; in each round the open passages' tries run as one batch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch

from cramming.experiments.capacity import Capacity, decoding_capacity
from cramming.files.database import Store, TaskKey
from cramming.files.vector_file import vectors_of

GROWTH = (8, 16, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024, 1536, 2048)


def close_enough(lo: int, hi: int) -> bool:
    """Bisection stops once the gap between success and failure is within 10% of the length, 4 tokens at least."""
    return hi - lo <= max(4, math.ceil(0.1 * lo))


@dataclass
class Search:
    """One passage's horizon search: the longest exact length found, the shortest failing one."""

    sample: int
    limit: int  # the passage's tokens: the most the search can find
    lo: int = 0
    hi: int | None = None
    lo_vectors: torch.Tensor | None = None  # the exact solution at lo, where the next try starts
    fresh: int | None = None  # a length whose warm-started try failed: tried next from the recipe's own start

    def warm_from(self) -> int:
        """The exact length the next try starts from; 0: the recipe's own start."""
        return 0 if self.fresh is not None else self.lo

    def start(self) -> torch.Tensor | None:
        return None if self.fresh is not None else self.lo_vectors

    def next_length(self) -> int | None:
        """The next length to try, None when the search is done."""
        if self.fresh is not None:
            return self.fresh
        if self.hi is None:
            if self.lo >= self.limit:
                return None  # the whole passage decodes: the horizon is a lower bound
            grown = next((L for L in GROWTH if L > self.lo), round(self.lo * 1.5))
            return min(grown, self.limit)
        return None if close_enough(self.lo, self.hi) else (self.lo + self.hi) // 2

    def record(self, length: int, exact: bool, vectors: torch.Tensor) -> None:
        """The outcome of the try at next_length() from warm_from()."""
        warm, self.fresh = self.warm_from() > 0, None
        if exact:
            self.lo, self.lo_vectors = length, vectors
        elif warm:
            self.fresh = length
        else:
            self.hi = length


def search(searches: list[Search], key_for: Callable[[Search, int], TaskKey], store: Store,
           run: Callable[[list[TaskKey], list[torch.Tensor | None]], None],
           on_skipped: Callable[[int], None] | None = None) -> list[Search]:
    """Drive the searches to their ends: each round, every open search's next try is read from the store if it
    ran before, else run: `run(keys, warm starts)` crams them and stores their rows."""
    while True:
        tries = [(s, key_for(s, L)) for s in searches if (L := s.next_length()) is not None]
        if not tries:
            return searches
        stored = {key: store.get(key) for _, key in tries}
        missing = [(s, key) for s, key in tries if stored[key] is None]
        if on_skipped is not None and len(missing) < len(tries):
            on_skipped(len(tries) - len(missing))
        if missing:
            run([key for _, key in missing], [s.start() for s, _ in missing])
            stored.update({key: store.get(key) for _, key in missing})
        for s, key in tries:
            exact, vector_file = stored[key]
            s.record(key.length, exact, vectors_of(vector_file))


def summarize(rows: list[dict], n_vectors: int) -> Capacity:
    """One horizon search's tries (one model, source, text seed, passage length, vector count, recipe and seed)
    -> per sample its exact horizon (the longest exact try), a lower bound where that is the whole passage; and,
    apart from it, the paper's decoding capacity over the lengths that every sample tried."""
    samples = sorted({r["sample"] for r in rows})
    per_sample, found, tops = [], [], []
    for sample in samples:
        tries = [r for r in rows if r["sample"] == sample]
        best = max((r for r in tries if r["exact"]), key=lambda r: r["length"], default=None)
        per_sample.append(best["length"] if best else 0)
        found.append(best)
        tops.append(tries[0]["passage_tokens"])
    by_length: dict[int, list[dict]] = {}
    for r in rows:
        by_length.setdefault(r["length"], []).append(r)
    common = {L: [r["accuracy_with"] for r in rs] for L, rs in by_length.items()
              if {r["sample"] for r in rs} == set(samples)}
    tried = {L: sum(accs) / len(accs) for L, accs in sorted(common.items())}
    return Capacity(n_vectors, "horizon", per_sample, found, tops, tried, decoding_capacity(common))
