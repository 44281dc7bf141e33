"""Training a model's encoder (encoder.py): cram training passages, then fit the head to their solutions.

The passages are crammed as a grid of the `runner` (book and recent passages of several lengths, text seed
TEXT_SEED, the `default` recipe from its common start) into a results file in the cache, so a training run that
is killed resumes where it stopped: only the head's fit, which takes seconds, runs again. Only exact solutions
are fit. The passages drawn here must stay apart from those an encoder is measured on (benchmarks/encoder.py
checks that it evaluates on none of them).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Callable

import torch

from cramming.api import prefix_token, starts
from cramming.core.errors import CrammingError
from cramming.core.recipes import RECIPES
from cramming.experiments.encoder_plan import TEXT_SEED, Training
from cramming.experiments.runner import run_local
from cramming.files.database import Store
from cramming.files.vector_file import vectors_of
from cramming.model.encoder import Encoder, encoder_path, features, fit_end_to_end, fit_ridge
from cramming.model.loading import LoadedModel


def training_store(lm: LoadedModel, n_vectors: int) -> Path:
    """The results file of an encoder's training passages, beside the encoder in the cache."""
    return encoder_path(lm, n_vectors).with_suffix(".training.sqlite")


def common_start(lm: LoadedModel, n_vectors: int) -> torch.Tensor:
    """[n, d] where `default` starts every text with seed 0: the prior plus the seed's noise."""
    return starts(lm, RECIPES["default"], [[]], n_vectors)[0]  # one text: the default reads none of it


def solutions(lm: LoadedModel, store: Store, n_vectors: int) -> tuple[list[list[int]], torch.Tensor]:
    """The exact training solutions in a store -> (their texts' token ids, their vectors [N, n, d])."""
    rows = [r for r in store.rows() if r["exact"] and r["vectors"] == n_vectors and r["text_seed"] == TEXT_SEED
            and r["model_fingerprint"] == lm.fingerprint]
    if len(rows) < 10:
        raise CrammingError(f"only {len(rows)} exact training solutions; an encoder needs at least 10")
    ids = [lm.tokenizer(store.text(r), add_special_tokens=False)["input_ids"] for r in rows]
    return ids, torch.stack([vectors_of(store.vector_file(r)) for r in rows])


def cramming_seconds(store: Store, batch_size: int) -> float:
    """The wall time its training passages took to cram: per batch (batch_size passages of one source and
    length, in sample order, as train_encoder runs them), the time its last passage finished."""
    groups: dict[tuple, list[dict]] = {}
    for r in store.rows():
        groups.setdefault((r["source"], r["length"], r["sample"] // batch_size), []).append(r)
    return sum(max(r["seconds"] for r in rows) for rows in groups.values())


def train_encoder(lm: LoadedModel, n_vectors: int = 1, training: Training = Training(), *,
                  store_path: Path | None = None, out: Path | None = None,
                  on_task: Callable | None = None, on_step: Callable[[int, float], None] | None = None) -> Encoder:
    """Cram the training passages (resuming what the store holds), fit the head, save the encoder where
    model_encoder finds it (or to `out`) -> the encoder."""
    store_path = store_path or training_store(lm, n_vectors)
    store_path.parent.mkdir(parents=True, exist_ok=True)
    store = Store(store_path)
    spec = replace(training.spec(lm.name), vectors=[n_vectors])
    spec.check()
    run_local(spec, store, device=str(lm.device), on_task=on_task, batch_size=training.batch_size)
    ids, vectors = solutions(lm, store, n_vectors)
    start = common_start(lm, n_vectors)
    prefix = prefix_token(lm.tokenizer, RECIPES["default"])
    x = features(lm, ids, training.layer, prefix)
    encoder = fit_ridge(lm, x, vectors - start, layer=training.layer)
    if training.end_to_end_steps:
        encoder = fit_end_to_end(lm, encoder, x, ids, start, prefix_id=prefix, steps=training.end_to_end_steps,
                                 lr=training.end_to_end_lr, on_step=on_step)
    encoder.about.update(sources=list(training.sources), lengths=list(training.lengths),
                         passages=training.passages, text_seed=TEXT_SEED, max_steps=training.max_steps,
                         precision=training.precision, settings=training.settings,
                         cramming_seconds=round(cramming_seconds(store, training.batch_size), 2))
    encoder.save(out or encoder_path(lm, n_vectors))
    return encoder
