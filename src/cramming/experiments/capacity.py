"""How many tokens N vectors hold, as a capacity search finds it (search.py runs the strategies), and the
paper's criterion (decoding_capacity)."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field

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
