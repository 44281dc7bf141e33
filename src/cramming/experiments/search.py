"""Capacity searches over the results database: per passage, which prefix lengths to try, from which start,
and what their outcomes say. Four strategies, each a per-passage plan (next_length, warm_from, start, record)
driven by one loop (`drive`) that reads a try from the store when it ran before and crams only the missing
ones, so every search resumes after a crash (kill -9 included) and `--db` means the same for all:

- horizon: ours, below: grow from the last exact solution, then bisect; no upper bound but the passage.
- bisect: per passage, the largest exact prefix length to within `tolerance` tokens, each try crammed from the
  recipe's own start, as `cram compress` would, so whether a length fits does not depend on the lengths tried
  before. (Starting each try from the longest exact prefix's vectors moved the answer both ways under the
  default recipe: one 36-token passage failed for 2000 steps from its 24-token solution and decoded exactly
  after 549 steps from scratch; another did the reverse.)
- progressive: grow the target by `step` tokens, warm-starting from the last solution, until a length fails.
- paper-grid: the paper's. Every length of a grid (PAPER_GRID) the passage holds, from scratch; the capacity is
  `decoding_capacity`, the largest length whose mean teacher-forced accuracy is >= 0.99, one for all samples.

The horizon: the longest prefix whose greedy round trip is exact. Per passage, the target grows from the last
exact solution (8, 16, 32, 48, 64, 96, 128, ... tokens, each try warm-started from the vectors of the longest
prefix known to be exact), and after the first failure it is bisected between the last success and that
failure, each try again warm-started from the last success, until the gap is within 10% of the length (4
tokens at least). Each try has the recipe's step budget.

A warm start begins where the shorter prefix's solution is, which helps when the longer text needs little
change and hurts when that solution is a basin the longer text cannot leave within the budget: book passage
2's 32-token prefix stayed not exact for 1000 steps from its 16-token solution, yet crams from the prior in
192 (docs/findings.md, "Capacity to the limit"). So a warm-started try that fails is tried once more from the
recipe's own start before its length counts as a failure: the horizon is the longest prefix exact from either.

Every try of every strategy is a row of the results store, keyed by its length and by the length it started
from, so a search killed at any point resumes by replaying the stored tries and running only the missing ones;
in each round the open passages' tries run as one batch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Protocol

import torch

from cramming.core.errors import CrammingError
from cramming.experiments.capacity import PAPER_GRID, Capacity, decoding_capacity
from cramming.files.database import Store, TaskKey
from cramming.files.vector_file import vectors_of

GROWTH = (8, 16, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024, 1536, 2048)


def close_enough(lo: int, hi: int) -> bool:
    """Bisection stops once the gap between success and failure is within 10% of the length, 4 tokens at least."""
    return hi - lo <= max(4, math.ceil(0.1 * lo))


class Plan(Protocol):
    """One passage's search: what to try next, from which start, and what a try's outcome changes."""

    sample: int
    limit: int  # the passage's tokens: the most a search can find

    def next_length(self) -> int | None: ...  # None: the search is done
    def warm_from(self) -> int: ...  # the exact length the next try starts from; 0: the recipe's own start
    def start(self) -> torch.Tensor | None: ...  # that start's vectors
    def record(self, length: int, exact: bool, vectors: torch.Tensor) -> None: ...


@dataclass
class Horizon:
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


@dataclass
class Bisect:
    """The largest exact length to within `tolerance` tokens, every try from the recipe's own start."""

    sample: int
    limit: int
    tolerance: int = 1
    lo: int = 0
    hi: int = -1  # the shortest failing length; one past the passage until a try fails

    def __post_init__(self) -> None:
        if self.hi < 0:
            self.hi = self.limit + 1

    def next_length(self) -> int | None:
        return None if self.hi - self.lo <= self.tolerance else (self.lo + self.hi) // 2

    def warm_from(self) -> int:
        return 0

    def start(self) -> torch.Tensor | None:
        return None

    def record(self, length: int, exact: bool, vectors: torch.Tensor) -> None:
        if exact:
            self.lo = length
        else:
            self.hi = length


@dataclass
class Progressive:
    """Grow by `step` tokens from the last exact solution until a length fails (or the passage ends)."""

    sample: int
    limit: int
    step: int = 8
    held: int = 0
    held_vectors: torch.Tensor | None = None
    failed: bool = False

    def next_length(self) -> int | None:
        return None if self.failed or self.held >= self.limit else min(self.held + self.step, self.limit)

    def warm_from(self) -> int:
        return self.held

    def start(self) -> torch.Tensor | None:
        return self.held_vectors

    def record(self, length: int, exact: bool, vectors: torch.Tensor) -> None:
        if exact:
            self.held, self.held_vectors = length, vectors
        else:
            self.failed = True


@dataclass
class PaperGrid:
    """Every grid length the passage holds, from the recipe's own start, failing ones included."""

    sample: int
    limit: int
    lengths: tuple[int, ...] = PAPER_GRID
    todo: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.todo = [L for L in self.lengths if L <= self.limit]

    def next_length(self) -> int | None:
        return self.todo[0] if self.todo else None

    def warm_from(self) -> int:
        return 0

    def start(self) -> torch.Tensor | None:
        return None

    def record(self, length: int, exact: bool, vectors: torch.Tensor) -> None:
        self.todo.remove(length)


PLANS = {"horizon": Horizon, "bisect": Bisect, "progressive": Progressive, "paper-grid": PaperGrid}


def plan(strategy: str, sample: int, limit: int, *, tolerance: int = 1, step: int = 8,
         lengths: tuple[int, ...] = PAPER_GRID) -> Plan:
    """A passage's plan under a strategy, with the options that strategy takes."""
    if strategy not in PLANS:
        raise CrammingError(f"unknown strategy {strategy!r}; choose one of: {', '.join(PLANS)}")
    options = {"bisect": {"tolerance": tolerance}, "progressive": {"step": step},
               "paper-grid": {"lengths": lengths}}.get(strategy, {})
    return PLANS[strategy](sample, limit, **options)


def drive(searches: list[Plan], key_for: Callable[[Plan, int], TaskKey], store: Store,
          run: Callable[[list[TaskKey], list[torch.Tensor | None]], None],
          on_skipped: Callable[[int], None] | None = None) -> list[Plan]:
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


def summarize(rows: list[dict], n_vectors: int, strategy: str = "horizon") -> Capacity:
    """One search's tries (one model, source, text seed, passage length, vector count, recipe and seed) -> per
    sample the longest exact try, a lower bound where that is the whole passage; and, for the horizon and the
    paper's grid, the paper's decoding capacity over the lengths that every sample tried, which is the paper
    grid's capacity for every sample."""
    if strategy == "paper-grid":
        return _paper_grid(rows, n_vectors)
    samples = sorted({r["sample"] for r in rows})
    per_sample, found, tops = [], [], []
    for sample in samples:
        tries = [r for r in rows if r["sample"] == sample]
        best = max((r for r in tries if r["exact"]), key=lambda r: r["length"], default=None)
        per_sample.append(best["length"] if best else 0)
        found.append(best)
        tops.append(tries[0]["passage_tokens"])
    if strategy != "horizon":
        return Capacity(n_vectors, strategy, per_sample, found, tops)
    common = {L: [r["accuracy_with"] for r in rs] for L, rs in _common_lengths(rows).items()}
    tried = {L: sum(accs) / len(accs) for L, accs in common.items()}
    return Capacity(n_vectors, "horizon", per_sample, found, tops, tried, decoding_capacity(common))


def _common_lengths(rows: list[dict]) -> dict[int, list[dict]]:
    """length -> its tries, for the lengths every sample of the rows tried."""
    samples = {r["sample"] for r in rows}
    by_length: dict[int, list[dict]] = {}
    for r in rows:
        by_length.setdefault(r["length"], []).append(r)
    return {L: rs for L, rs in sorted(by_length.items()) if {r["sample"] for r in rs} == samples}


def _paper_grid(rows: list[dict], n_vectors: int) -> Capacity:
    """The paper's capacity, one for all samples: the largest grid length whose mean accuracy passes."""
    samples = sorted({r["sample"] for r in rows})
    common = _common_lengths(rows)
    L = decoding_capacity({L: [r["accuracy_with"] for r in rs] for L, rs in common.items()})
    at = {r["sample"]: r for r in common.get(L, [])}
    tried = {L: sum(r["accuracy_with"] for r in rs) / len(rs) for L, rs in common.items()}
    return Capacity(n_vectors, "paper-grid", [L] * len(samples), [at.get(s) for s in samples],
                    [max(common, default=0)] * len(samples), tried)
