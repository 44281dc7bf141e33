"""How many tokens N vectors hold: three search strategies over prefixes of fixed passages.

- grid: the paper's. Cram every sample at each length of a grid; the capacity is `decoding_capacity`, the
  largest length whose mean teacher-forced accuracy is >= 0.99, one number for all samples.
- bisect: ours. Per sample, the largest length whose greedy round trip is exact, found by bisection; each
  try crams its prefix from scratch, as `cram compress` would, so whether a length fits does not depend on
  which lengths the search tried before. (Starting each try from the vectors of the longest prefix known to
  be exact, as this search once did, moved the answer both ways under the default recipe: one 36-token
  passage failed for 2000 steps from its 24-token solution and decoded exactly after 549 steps from
  scratch; another did the reverse.)
- progressive: grow the target by a fixed number of tokens, warm-starting from the previous solution,
  until a length fails.
- horizon (horizon.py): grow from the last exact solution, then bisect, every try a stored row; no upper
  bound but the passage.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Callable

import torch

from cramming.api import Compressed, compress
from cramming.core.errors import CrammingError
from cramming.core.loop import StepInfo
from cramming.core.metrics import measure
from cramming.core.recipes import Recipe
from cramming.model.loading import LoadedModel

OnStep = Callable[[StepInfo], None]
PAPER_CRITERION = 0.99
PAPER_GRID = (8, 16, 32, 48, 64, 80, 96, 128, 160, 192, 256, 384, 512)


def decoding_capacity(accuracies: dict[int, list[float]]) -> int:
    """The paper's decoding capacity: the largest length whose mean teacher-forced accuracy over its samples
    is >= PAPER_CRITERION (0 when none is). Not the first failing length: a longer length may pass where a
    shorter one failed, and the paper reports the largest that passed. Used by `cram capacity` and reports."""
    return max((L for L, accs in accuracies.items() if statistics.mean(accs) >= PAPER_CRITERION), default=0)


@dataclass
class Capacity:
    vectors: int
    strategy: str
    per_sample: list[int]  # tokens held, per sample (grid: the same group value for each)
    measurements: list[dict | None]  # per sample, the metrics at its capacity (None where nothing fit)
    tops: list[int]  # per sample, the most the search could find (its passage, or the grid's last length tried)
    tried: dict[int, float] = field(default_factory=dict)  # length -> mean teacher-forced accuracy (grid, horizon)
    decoding: int | None = None  # horizon: the paper's decoding capacity over the lengths every sample tried

    def summary(self) -> dict:
        """The numbers, with `lower_bound` per sample where the search reached its top: the sample may hold more."""
        caps = self.per_sample
        capped = [c >= top for c, top in zip(caps, self.tops)]
        found = [m for m in self.measurements if m is not None]
        mean = lambda key: sum(m[key] for m in found) / len(found) if found else None  # noqa: E731
        lowest, highest = min(range(len(caps)), key=caps.__getitem__), max(range(len(caps)), key=caps.__getitem__)
        return {"vectors": self.vectors, "strategy": self.strategy, "capacity_mean": sum(caps) / len(caps),
                "capacity_min": caps[lowest], "capacity_max": caps[highest], "per_sample": caps,
                "lower_bound": capped, "mean_is_lower_bound": any(capped), "min_is_lower_bound": capped[lowest],
                "max_is_lower_bound": capped[highest],
                "token_gain": mean("token_gain"), "information_gain_bits": mean("information_gain_bits"),
                "utilization": mean("utilization"), "exact": sum(m["exact"] for m in found), "samples": len(caps),
                **({"accuracy_by_length": self.tried} if self.tried else {}),
                **({"decoding_capacity": self.decoding,  # a lower bound when the longest length tried passed
                    "decoding_is_lower_bound": bool(self.tried) and self.decoding >= max(self.tried)}
                   if self.decoding is not None else {})}


def _cram(lm: LoadedModel, texts: list[str], lengths: list[int], *, warm: list[torch.Tensor | None] | None = None,
          **options) -> list[Compressed]:
    """Cram each text cut to its own length (one batch); options go to compress."""
    ids = [lm.tokenizer(t, add_special_tokens=False)["input_ids"][:L] for t, L in zip(texts, lengths)]
    prefixes = [lm.tokenizer.decode(i) for i in ids]
    return compress(prefixes, lm, warm_start=warm, **options)


def grid(lm: LoadedModel, texts: list[str], *, n_vectors: int, recipe: str | Recipe = "default",
         max_steps: int | None = None, seed: int = 0, lengths: tuple[int, ...] = PAPER_GRID,
         on_step: OnStep | None = None) -> Capacity:
    """The paper's criterion over every grid length the passages are long enough for."""
    longest = min(len(lm.tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts)
    accuracies: dict[int, list[float]] = {}
    results: dict[int, list[Compressed]] = {}
    for L in (L for L in lengths if L <= longest):
        results[L] = _cram(lm, texts, [L] * len(texts), n_vectors=n_vectors, recipe=recipe, max_steps=max_steps,
                           seed=seed, on_step=on_step)
        accuracies[L] = [r.accuracy for r in results[L]]
    L = decoding_capacity(accuracies)
    found = [measure(r, lm).to_dict() for r in results[L]] if L else [None] * len(texts)
    top = max(accuracies, default=0)
    return Capacity(n_vectors, "grid", [L] * len(texts), found, [top] * len(texts),
                    {L: statistics.mean(accs) for L, accs in accuracies.items()})


def bisect(lm: LoadedModel, texts: list[str], *, n_vectors: int, recipe: str | Recipe = "default",
           max_steps: int | None = None, seed: int = 0, tolerance: int = 1, on_step: OnStep | None = None) -> Capacity:
    """Per sample, the largest exact prefix length, to within `tolerance` tokens."""
    tops = [len(lm.tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts]
    hi = [top + 1 for top in tops]  # one past each passage's length: the first length assumed to fail
    lo = [0] * len(texts)
    best: list[Compressed | None] = [None] * len(texts)
    while True:
        open_ = [i for i in range(len(texts)) if hi[i] - lo[i] > tolerance]
        if not open_:
            break
        mids = [(lo[i] + hi[i]) // 2 for i in open_]
        tries = _cram(lm, [texts[i] for i in open_], mids, n_vectors=n_vectors, recipe=recipe, max_steps=max_steps,
                      seed=seed, on_step=on_step)
        for i, mid, r in zip(open_, mids, tries):
            if r.exact:
                lo[i], best[i] = mid, r
            else:
                hi[i] = mid
    return Capacity(n_vectors, "bisect", lo, [measure(b, lm).to_dict() if b else None for b in best], tops)


def progressive(lm: LoadedModel, texts: list[str], *, n_vectors: int, recipe: str | Recipe = "default",
                max_steps: int | None = None, seed: int = 0, step: int = 8, on_step: OnStep | None = None
                ) -> Capacity:
    """Grow each sample's target by `step` tokens from its last exact solution until one fails."""
    limits = [len(lm.tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts]
    held = [0] * len(texts)
    best: list[Compressed | None] = [None] * len(texts)
    growing = [i for i in range(len(texts))]
    while growing:
        lengths = [min(held[i] + step, limits[i]) for i in growing]
        warm = [best[i].vectors if best[i] is not None else None for i in growing]
        results = _cram(lm, [texts[i] for i in growing], lengths, n_vectors=n_vectors, recipe=recipe,
                        max_steps=max_steps, seed=seed, warm=warm, on_step=on_step)
        still = []
        for i, L, r in zip(growing, lengths, results):
            if r.exact:
                held[i], best[i] = L, r
                if L < limits[i]:
                    still.append(i)
        growing = still
    return Capacity(n_vectors, "progressive", held, [measure(b, lm).to_dict() if b else None for b in best], limits)


STRATEGIES = {"grid": grid, "bisect": bisect, "progressive": progressive}


def search(strategy: str, lm: LoadedModel, texts: list[str], *, n_vectors: int, **kwargs) -> Capacity:
    if strategy not in STRATEGIES:
        raise CrammingError(f"unknown strategy {strategy!r}; choose one of: {', '.join(STRATEGIES)}")
    return STRATEGIES[strategy](lm, texts, n_vectors=n_vectors, **kwargs)
