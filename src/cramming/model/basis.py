"""A model's shared basis for n vectors: the mean of crammed solutions and an ordered orthonormal basis of the
[n * d] space, so that a text's vectors can be crammed and stored as K coefficients (recipe field `rank`,
core/basis.py).

Built once per (model, n): the default recipe (in bf16) crams PASSAGES book passages of TOKENS tokens, drawn with
TEXT_SEED (no measured set draws with it), from the model's prior; the mean is their exact solutions' mean and the
leading directions their principal ones (an SVD of the solutions around that mean), most variance first; the
directions the solutions do not span are completed by seeded random orthonormal ones, so every K up to n * d has a
basis. Cached as safetensors under a name holding the model's fingerprint and a digest of how it was built; the
default model's one-vector basis ships with the package (bases/), so a first `--rank` does not wait for the build.

A file crammed in it records a hash of the basis itself (basis_hash) and K, and is read back with that very basis
or refused: an SVD on another machine is another basis, so reading never builds one.
"""

from __future__ import annotations

import hashlib
import json
import sys
from dataclasses import replace
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from cramming.core.atomic import atomic_output
from cramming.core.basis import Basis, basis_hash
from cramming.core.errors import CrammingError
from cramming.core.loop import cram, starting_vectors
from cramming.core.recipes import RECIPES
from cramming.model.assets import cache_dir, safe_name
from cramming.model.loading import LoadedModel
from cramming.model.prior import model_prior, source
from cramming.model.texts import load_samples

PASSAGES, TOKENS, TEXT_SEED, STEPS = 64, 32, 2, 1000
VERSION = 1  # raise it whenever how the basis is built changes
SHIPPED = Path(__file__).parents[1] / "bases"


def builder():
    """The recipe the basis' solutions are crammed with: the default, the model in bf16, STEPS steps at most."""
    return replace(RECIPES["default"], precision="bf16", max_steps=STEPS)


def basis_path(model_name: str, fingerprint: str, n_vectors: int) -> Path:
    """Where a model's basis for n vectors is cached (the same name as the shipped file)."""
    key = json.dumps([VERSION, n_vectors, source(), PASSAGES, TOKENS, TEXT_SEED, STEPS])
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    name = safe_name(Path(model_name).name)
    return cache_dir() / "bases" / f"{name}-{fingerprint[:16]}-{n_vectors}v-{digest}.safetensors"


def found_basis(model_name: str, fingerprint: str, n_vectors: int) -> Basis | None:
    """The model's basis from the cache, else shipped with the package; None when neither has it."""
    path = basis_path(model_name, fingerprint, n_vectors)
    for found in (path, SHIPPED / path.name):
        if found.exists():
            tensors = load_file(str(found))
            return Basis(tensors["mean"], tensors["components"], basis_hash(tensors["mean"], tensors["components"]))
    return None


def model_basis(lm: LoadedModel, n_vectors: int, prefix_id: int | None, rank: int,
                expected: str | None = None) -> Basis:
    """The model's basis for n vectors cut to its first `rank` directions: found, else built (with progress lines)
    and cached. expected: the basis_hash a file recorded; reading it, nothing is built and another is refused."""
    basis = found_basis(lm.name, lm.fingerprint, n_vectors)
    if basis is None and expected is None:
        basis = _built(lm, n_vectors, prefix_id)
    if expected is not None and (basis is None or basis.digest != expected):
        raise CrammingError(f"the file was crammed in a basis ({expected}) that this cramming does not have for "
                            f"{lm.name} ({basis.digest if basis is not None else 'none built'}): it cannot be read "
                            "in another one")
    if not 1 <= rank <= basis.rank:
        raise CrammingError(f"rank must be between 1 and {basis.rank} for {n_vectors} vector(s) of {lm.name}, "
                            f"got {rank}")
    return basis.cut(rank)


def _built(lm: LoadedModel, n_vectors: int, prefix_id: int | None) -> Basis:
    mean, components, exact = build(lm, n_vectors, prefix_id)
    with atomic_output(basis_path(lm.name, lm.fingerprint, n_vectors)) as tmp:
        save_file({"mean": mean, "components": components}, str(tmp), metadata={
            "model": lm.name, "model_fingerprint": lm.fingerprint, "version": str(VERSION),
            "recipe": json.dumps(builder().to_dict()), "source": source(), "passages": str(PASSAGES),
            "tokens": str(TOKENS), "text_seed": str(TEXT_SEED), "exact": str(exact)})
    return Basis(mean, components, basis_hash(mean, components))


def build(lm: LoadedModel, n_vectors: int, prefix_id: int | None) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Cram the passages and take their solutions' basis -> (mean [n, d], components [n * d, n * d], exact count)."""
    recipe = builder()
    print(f"building the basis of {lm.name} for {n_vectors} vector(s): cramming {PASSAGES} passages of {TOKENS} "
          f"tokens, once...", file=sys.stderr)
    passages = load_samples(source(), PASSAGES, TOKENS, lm.tokenizer, TEXT_SEED)
    ids = [lm.tokenizer(p.text, add_special_tokens=False)["input_ids"] for p in passages]
    prior = model_prior(lm, n_vectors, prefix_id)
    embedding = lm.model.get_input_embeddings().weight
    solutions = []
    for i in range(0, len(ids), 16):  # in batches of 16, a line each
        batch = ids[i: i + 16]
        start = starting_vectors(recipe, n_vectors, embedding, i, len(batch), prior)
        solutions += [r.vectors for r in cram(lm.model, batch, start, recipe, prefix_id=prefix_id) if r.exact]
        print(f"  {i + len(batch)}/{len(ids)} passages crammed, {len(solutions)} exact", file=sys.stderr, flush=True)
    if len(solutions) < 2:
        raise CrammingError(f"only {len(solutions)} of the basis' passages crammed exact: no basis to build")
    flat = torch.stack(solutions).flatten(1).double()
    mean = flat.mean(0)
    leading = torch.linalg.svd(flat - mean, full_matrices=False)[2][: len(solutions) - 1]
    return mean.float().view(n_vectors, -1).contiguous(), completed(leading).float().contiguous(), len(solutions)


def completed(leading: torch.Tensor) -> torch.Tensor:
    """[k, D] orthonormal rows -> [D, D]: them first, then seeded random orthonormal directions orthogonal to them."""
    k, D = leading.shape
    drawn = torch.randn(D, D - k, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    drawn -= leading.T @ (leading @ drawn)  # outside their span
    return torch.cat([leading, torch.linalg.qr(drawn)[0].T])
