"""A model's prior for crammed vectors: the mean of the vectors crammed for a few short passages.

Vectors crammed for different texts are far from random with respect to each other: on SmolLM2-135M the
`cold` recipe's solutions have norms of 46-70, a mean pairwise cosine of 0.09 and a mean of norm 21, with the
same sign on a few coordinates across every text (docs/notebook.md). A random start must first find
that shared part; a start from the mean of other texts' solutions has it at step 0.

The prior is built once per (model, number of vectors) by cramming PASSAGES book passages of TOKENS tokens,
drawn with TEXT_SEED (the benchmarks draw theirs with seed 0), with `builder()`, and kept in the cache
as safetensors. CRAMMING_PRIOR_SOURCE names another text source to draw them from (file:PATH, for a language
or domain of your own, or where PyPI cannot be reached); that is another prior, under another file name.
It is the model's, not a recipe's: every recipe that starts from a prior starts from this one, so tuning a
recipe neither rebuilds it nor leaves the shipped files behind. The default model's priors for
1, 2 and 4 vectors and Gemma-3-270M's for 1 vector (a 28-minute build on one CPU thread) ship with the package
(priors/), so that a first `cram compress` does not wait for the build.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from dataclasses import replace
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from cramming.core.atomic import atomic_output
from cramming.core.loop import cram, starting_vectors
from cramming.core.recipes import RECIPES, Recipe
from cramming.model.assets import cache_dir, safe_name
from cramming.model.loading import LoadedModel
from cramming.model.texts import load_samples

PASSAGES, TOKENS, TEXT_SEED = 16, 16, 1
# `cold`, the recipe that needs no prior, for one full cosine period: the mean is then over annealed
# solutions (its 16-token passages take at most 236 steps), and it needs a prefix token, so a recipe that
# starts from the prior must put one before its vectors too.
BUILD_STEPS = 600
# The prior's version: raise it whenever what the prior is built from changes (the builder's settings, the
# passages). The file name hashes this and the constants above, not the Recipe dataclass, so a new Recipe field
# does not silently unship the shipped priors; tests/test_prior.py checks the builder against the shipped files.
VERSION = 1
SHIPPED = Path(__file__).parents[1] / "priors"  # the package's data, beside its layers


def source() -> str:
    """The text source the prior's passages come from."""
    return os.environ.get("CRAMMING_PRIOR_SOURCE", "books")


def builder() -> Recipe:
    """The recipe the prior is crammed with."""
    return replace(RECIPES["cold"], max_steps=BUILD_STEPS)


def prior_path(lm: LoadedModel, n_vectors: int) -> Path:
    """Where this prior is cached. Its file name holds the model's fingerprint and a digest of the version and
    of what shapes it, so a shipped file under the same name is the same prior."""
    key = json.dumps([VERSION, BUILD_STEPS, n_vectors, source(), PASSAGES, TOKENS, TEXT_SEED])
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    # A model named by its directory or hub id: its last part (the fingerprint tells same-named models apart).
    name = safe_name(Path(lm.name).name)
    return cache_dir() / "priors" / f"{name}-{lm.fingerprint[:16]}-{n_vectors}v-{digest}.safetensors"


def model_prior(lm: LoadedModel, n_vectors: int, prefix_id: int | None) -> torch.Tensor:
    """The [n_vectors, d] prior of this model: read from the cache, or shipped with the package, else built
    (100-260 s on 2 CPU cores for the default model) and cached. prefix_id is the token before the vectors."""
    path = prior_path(lm, n_vectors)
    for found in (path, SHIPPED / path.name):  # looked up as the encoder is (model_encoder); one name, one prior
        if found.exists():
            return load_file(str(found))["prior"]
    building = builder()
    print(f"building the prior of {lm.name} for {n_vectors} vector(s): cramming {PASSAGES} passages, once...",
          file=sys.stderr)
    passages = load_samples(source(), PASSAGES, TOKENS, lm.tokenizer, TEXT_SEED)
    ids = [lm.tokenizer(p.text, add_special_tokens=False)["input_ids"] for p in passages]
    start = starting_vectors(building, n_vectors, lm.model.get_input_embeddings().weight, 0, len(ids))
    results = cram(lm.model, ids, start, building, prefix_id=prefix_id)
    prior = torch.stack([r.vectors for r in results]).mean(0).contiguous()
    with atomic_output(path) as tmp:
        save_file({"prior": prior}, str(tmp), metadata={
            "model": lm.name, "model_fingerprint": lm.fingerprint, "version": str(VERSION),
            "recipe": json.dumps(building.to_dict()),
            "source": source(), "passages": str(PASSAGES), "tokens": str(TOKENS), "text_seed": str(TEXT_SEED),
            "exact": str(sum(r.exact for r in results))})
    return prior
