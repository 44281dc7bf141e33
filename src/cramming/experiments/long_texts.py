"""The long-text sets: which passages they hold, that they stay apart, and the grid that crams them.

10 passages of Alice's Adventures in Wonderland (`alice`) and 10 Wikipedia leads of 2025-2026 (`recent`) per
length, one vector of the default model. Recipes are chosen on the tuning set (text seed 1) and confirmed once on
the test set (text seed 10), whose passages share no text with the tuning set's at any length (check_apart).
benchmarks/long_texts.py runs them; cramming.reports.long_texts tabulates the rows.
"""

from __future__ import annotations

from cramming.core.errors import CrammingError
from cramming.experiments.runner import Spec
from cramming.model.aliases import DEFAULT_MODEL
from cramming.model.texts import load_samples

SETS = {"tuning": 1, "test": 10}  # text seed of each set
SOURCES = ("alice", "recent")
PASSAGES = 10


def check_apart(lengths: list[int], tokenizer) -> None:
    """Raise unless the test set's passages share no text with the tuning set's, at every length."""
    for source in SOURCES:
        for length in lengths:
            tuning, test = (load_samples(source, PASSAGES, length, tokenizer, seed=SETS[name]) for name in SETS)
            if any(t.shares_text(u) for t in test for u in tuning):
                raise CrammingError(f"a test passage of {source} at {length} tokens overlaps a tuning passage")


def set_spec(set_name: str, source: str, passages: list[int], length: int, recipe: str, table: dict,
             budget: int) -> Spec:
    """The grid of one recipe (a spec's [recipes.NAME] table) on some passages of one source of a set, checked."""
    if set_name not in SETS or source not in SOURCES or not all(0 <= p < PASSAGES for p in passages):
        raise CrammingError(f"a long-text grid takes a set of {', '.join(SETS)}, a source of {', '.join(SOURCES)} "
                            f"and passages 0-{PASSAGES - 1}")
    spec = Spec(models=[DEFAULT_MODEL], sources=[source], lengths=[length], recipes={recipe: table},
                samples=passages, text_seed=SETS[set_name], max_steps=budget)
    spec.check()
    return spec
