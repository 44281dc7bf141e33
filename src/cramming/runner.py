"""Experiment grids: a TOML spec -> tasks -> an executor -> the results store.

    models = ["smollm2-135m"]
    sources = ["books", "random"]
    lengths = [16, 32]
    vectors = [1, 2]
    recipes = ["default"]
    samples = 2
    seeds = [0]
    max_steps = 2000      # optional: the recipes' own budgets otherwise
    text_seed = 0         # optional: which passages each source gives

Finished rows are skipped, so a rerun resumes where a crash (kill -9 included) left off.
"""

from __future__ import annotations

import itertools
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Callable, Iterator

from . import api
from .engine import get_recipe
from .errors import CrammingError
from .models import LoadedModel
from .store import Store, TaskKey
from .texts import load_samples
from .vectors import vector_bytes

HISTORY_POINTS = 200  # per-step history kept per row, evenly thinned to at most this many points


@dataclass(frozen=True)
class Spec:
    models: list[str]
    sources: list[str]
    lengths: list[int]
    vectors: list[int] = field(default_factory=lambda: [1])
    recipes: list[str] = field(default_factory=lambda: ["default"])
    samples: int = 1
    seeds: list[int] = field(default_factory=lambda: [0])
    max_steps: int | None = None
    text_seed: int = 0

    @classmethod
    def from_toml(cls, path: str | Path) -> Spec:
        try:
            data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise CrammingError(f"no such spec file: {path}") from None
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
            raise CrammingError(f"{path} is not valid TOML ({err})") from None
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise CrammingError(f"{path}: unknown key(s) {', '.join(sorted(unknown))}; "
                                f"known: {', '.join(sorted(known))}")
        try:
            spec = cls(**data)
        except TypeError as err:
            raise CrammingError(f"{path}: {err}") from None
        spec.check()
        return spec

    def check(self) -> None:
        for name in ("models", "sources", "lengths", "vectors", "recipes", "seeds"):
            value = getattr(self, name)
            if not isinstance(value, list) or not value:
                raise CrammingError(f"spec: {name} must be a non-empty list")
        if any(not isinstance(x, int) or x < 1 for x in self.lengths + self.vectors) or self.samples < 1:
            raise CrammingError("spec: lengths, vectors and samples must be positive integers")
        for recipe in self.recipes:
            get_recipe(recipe)

    def tasks(self) -> Iterator[TaskKey]:
        for model, source, length, n, recipe, seed in itertools.product(
                self.models, self.sources, self.lengths, self.vectors, self.recipes, self.seeds):
            for sample in range(self.samples):
                yield TaskKey(model, source, sample, length, n, recipe, seed)


def thin(history: list, points: int = HISTORY_POINTS) -> list:
    """Evenly spaced entries of a per-step history, the last one always kept."""
    if len(history) <= points:
        return list(history)
    stride = len(history) / points
    return [history[int(i * stride)] for i in range(points - 1)] + [history[-1]]


def run_task(key: TaskKey, text: str, lm: LoadedModel, max_steps: int | None) -> tuple[dict, bytes, list]:
    """Cram one text and measure it -> (metrics, vector file bytes, thinned history)."""
    [compressed] = api.compress([text], lm, key.vectors, key.recipe, max_steps, None, key.seed)
    metrics = api.measure(compressed, lm).to_dict()
    return metrics, vector_bytes(compressed.vectors, compressed.metadata()), thin(compressed.result.history)


def run_local(spec: Spec, store: Store, device: str = "auto",
              on_task: Callable[[TaskKey, dict | None], None] | None = None) -> int:
    """Run the spec's unfinished tasks in this process, each committed as it finishes -> rows added."""
    done, added = store.done(), 0
    todo = [k for k in spec.tasks() if k.astuple() not in done]
    for model in spec.models:
        mine = [k for k in todo if k.model == model]
        if not mine:
            continue
        lm = api.as_model(model, device)  # loaded once per model, not per task
        texts: dict[tuple[str, int], list[str]] = {}
        for key in mine:
            if (key.source, key.length) not in texts:
                samples = load_samples(key.source, spec.samples, key.length, lm.tokenizer, spec.text_seed)
                texts[(key.source, key.length)] = [s.text for s in samples]
            text = texts[(key.source, key.length)][key.sample]
            metrics, blob, history = run_task(key, text, lm, spec.max_steps)
            added += store.add(key, metrics, text, blob, history)
            if on_task is not None:
                on_task(key, metrics)
    return added
