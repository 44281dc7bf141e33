"""The Python API: everything the CLI does, as library calls.

    from cramming import compress, decompress
    [result] = compress(["The quick brown fox jumps over the lazy dog."], n_vectors=1)
    result.save("fox.safetensors")
    assert decompress("fox.safetensors") == result.text
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Sequence

import torch

from . import __version__, storage
from .decode import greedy_decode
from .encoder import model_encoder
from .engine import CramResult, StepInfo, cram, starting_vectors
from .errors import CrammingError, NotExact
from .models import DEFAULT_MODEL, LoadedModel, load_model, resolve_device
from .prior import model_prior
from .recipes import Recipe, get_recipe
from .vectors import check_compatible, load_vectors, save_vectors, sha256_ids, sha256_text


def as_model(model: str | LoadedModel, *, device: str = "auto") -> LoadedModel:
    return model if isinstance(model, LoadedModel) else load_model(model, resolve_device(device))


def check_options(texts: Sequence[str], *, n_vectors: int, max_tokens: int | None) -> None:
    """What can be checked without a model, checked before one loads (which takes seconds)."""
    if n_vectors < 1:
        raise CrammingError(f"the number of vectors must be at least 1, got {n_vectors}")
    if not texts:
        raise CrammingError("no text given")
    if any(not text for text in texts):
        raise CrammingError("the text is empty")
    if max_tokens is not None and max_tokens < 1:
        raise CrammingError(f"the number of tokens to keep must be at least 1, got {max_tokens}")


def tokenize(lm: LoadedModel, text: str, *, n_vectors: int = 1, max_tokens: int | None = None
             ) -> tuple[str, list[int]]:
    """-> (the text that will be crammed, its token ids). With max_tokens, both are cut to the first tokens.

    Raises for texts that cannot round-trip: empty, longer than the context, or not reproduced by the
    tokenizer itself.
    """
    check_options([text], n_vectors=n_vectors, max_tokens=max_tokens)
    ids = lm.tokenizer(text, add_special_tokens=False)["input_ids"]
    if max_tokens is not None:
        if len(ids) > max_tokens:
            ids = ids[:max_tokens]
            text = lm.tokenizer.decode(ids)
    if not ids:
        raise CrammingError("the text has no tokens")
    limit = lm.max_positions
    if limit is not None and len(ids) + n_vectors > limit:
        raise CrammingError(f"the text has {len(ids)} tokens; {lm.name} reads at most {limit} positions, "
                            f"so with {n_vectors} vector(s) it can take at most {limit - n_vectors} tokens "
                            f"(keep fewer of its tokens)")
    if lm.tokenizer.decode(ids) != text:
        raise CrammingError("the tokenizer does not reproduce this text (decode(encode(text)) differs), "
                            "so no round trip can be exact")
    return text, ids


def prefix_token(tokenizer, recipe: Recipe) -> int | None:
    """The token placed before the vectors: the tokenizer's BOS, else its EOS; None if the recipe uses none."""
    if not recipe.prefix_token:
        return None
    return tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id


@dataclass(kw_only=True)
class Compressed(CramResult):
    """A crammed text: the engine's result for it, and everything needed to check and reproduce its vectors."""

    text: str
    recipe: Recipe
    seed: int
    model: str
    model_fingerprint: str
    tokenizer_fingerprint: str
    prefix_id: int | None = None
    storage: str = "fp32"  # the form its file stores the vectors in (storage.py)
    path: Path | None = None

    @property
    def first_mismatch(self) -> int | None:
        """Where the greedy decode of the vectors first leaves the text's tokens (None when it never does)."""
        return next((k for k, (a, b) in enumerate(zip(self.decoded_ids, self.token_ids)) if a != b),
                    None if len(self.decoded_ids) == len(self.token_ids) else len(self.decoded_ids))

    @property
    def status(self) -> str:
        """exact, diverged (the loss turned non-finite) or not_exact (the budget or the patience ran out)."""
        return "exact" if self.exact else "diverged" if self.diverged else "not_exact"

    def metadata(self) -> dict:
        return {
            "model": self.model, "model_fingerprint": self.model_fingerprint,
            "tokenizer_fingerprint": self.tokenizer_fingerprint,
            "n_tokens": len(self.token_ids), "n_vectors": self.vectors.shape[0], "d_model": self.vectors.shape[1],
            "tokens_sha256": sha256_ids(self.token_ids), "text_sha256": sha256_text(self.text),
            "recipe": self.recipe.to_dict(), "seed": self.seed, "steps": self.steps, "exact": self.exact,
            "diverged": self.diverged, "accuracy": self.accuracy, "first_mismatch": self.first_mismatch,
            "cramming_version": __version__, "prefix_token_id": self.prefix_id, "margin": self.margin,
        }

    def save(self, path: str | Path) -> Path:
        self.path = save_vectors(path, self.vectors, self.metadata(), self.storage)
        return self.path

    def summary(self) -> dict:
        return {"tokens": len(self.token_ids), "vectors": self.vectors.shape[0], "steps": self.steps,
                "seconds": round(self.seconds, 3), "exact": self.exact, "status": self.status,
                "accuracy": self.accuracy, "loss": self.loss, "margin": self.margin, "storage": self.storage,
                "recipe": self.recipe.name,
                "path": str(self.path) if self.path else None}


def compress(
    texts: Sequence[str],
    model: str | LoadedModel = DEFAULT_MODEL,
    *,
    n_vectors: int = 1,
    recipe: str | Recipe = "default",
    max_steps: int | None = None,
    max_tokens: int | None = None,
    seed: int = 0,
    device: str = "auto",
    on_step: Callable[[StepInfo], None] | None = None,
    warm_start: list[torch.Tensor | None] | None = None,
    min_margin: float = 0.0,
    storage_form: str = "fp32",
) -> list[Compressed]:
    """Cram each text into its own n_vectors vectors, as one batch, trained through and verified from the form
    they will be stored in (storage_form: fp32, fp16, bf16, intK; storage.py). min_margin: keep cramming until
    every greedy-path logit margin is at least this (engine.cram)."""
    check_options(texts, n_vectors=n_vectors, max_tokens=max_tokens)
    storage_form = storage.parse_form(storage_form)
    recipe = get_recipe(recipe) if isinstance(recipe, str) else recipe
    if max_steps is not None:  # the vector file then records the budget the vectors were crammed with
        recipe = replace(recipe, max_steps=max_steps)
    lm = as_model(model, device=device)
    prepared = [tokenize(lm, t, n_vectors=n_vectors, max_tokens=max_tokens) for t in texts]
    prefix = prefix_token(lm.tokenizer, recipe)
    prior = model_prior(lm, n_vectors, prefix) if recipe.prior else None
    start = starting_vectors(recipe, n_vectors, lm.model.get_input_embeddings().weight, seed, len(texts), prior,
                             warm_start)
    if recipe.encoder:  # each text's own start: the common one plus what the encoder predicts from the text
        offsets = model_encoder(lm, n_vectors).offsets(lm, [ids for _, ids in prepared], prefix)
        fresh = [i for i, w in enumerate(warm_start or [None] * len(texts)) if w is None]
        start[fresh] += offsets[fresh]
    results = cram(lm.model, [ids for _, ids in prepared], start, recipe, prefix_id=prefix, on_step=on_step,
                   min_margin=min_margin, storage_form=storage_form)
    # The round trip that counts is from what the file will hold: decode each text's vectors as stored (a file
    # that is not exact then also says where its decode first goes wrong), and compare ids and bytes.
    as_stored = torch.stack([storage.stored(r.vectors, storage_form) for r in results])
    decoded = greedy_decode(lm.model, as_stored, max(len(r.token_ids) for r in results), prefix).tolist()
    out = []
    for (text, _), result, row in zip(prepared, results, decoded):
        result.decoded_ids = row[: len(result.token_ids)]
        result.exact = (result.exact and result.decoded_ids == result.token_ids
                        and lm.tokenizer.decode(result.decoded_ids) == text)
        out.append(Compressed(**vars(result), text=text, recipe=recipe, seed=seed, model=lm.name,
                              model_fingerprint=lm.fingerprint, tokenizer_fingerprint=lm.tokenizer_fingerprint,
                              prefix_id=prefix, storage=storage_form))
    return out


def info(path: str | Path) -> dict:
    """The metadata of a vector file, and its tensor's shape."""
    vectors, meta = load_vectors(path)
    return {**meta, "shape": list(vectors.shape)}


@dataclass
class Decoded:
    """What a vector file decodes to, and whether that is its text."""

    text: str
    exact: bool  # the token ids and the text match the hashes stored in the file
    n_tokens: int
    first_mismatch: int | None  # recorded when the file was saved: the first token the decode gets wrong


def decode(path: str | Path, *, model: str | LoadedModel | None = None, device: str = "auto") -> Decoded:
    """Greedy-decode a vector file, exact or not, and check the result against the hashes stored in it."""
    vectors, meta = load_vectors(path)
    lm = as_model(model if model is not None else meta["model"], device=device)
    check_compatible(meta, lm.fingerprint, lm.tokenizer_fingerprint, lm.name, path)
    ids = greedy_decode(lm.model, vectors[None], meta["n_tokens"], meta.get("prefix_token_id"))[0].tolist()
    text = lm.tokenizer.decode(ids)
    exact = sha256_ids(ids) == meta["tokens_sha256"] and sha256_text(text) == meta["text_sha256"]
    return Decoded(text, exact, len(ids), meta.get("first_mismatch"))


def decompress(path: str | Path, *, model: str | LoadedModel | None = None, device: str = "auto") -> str:
    """Decode a vector file back to its text, checked against the hashes stored in the file. A file saved from a
    run that was not exact is refused from its metadata, before any decoding (`decode` shows its best decode)."""
    _, meta = load_vectors(path)
    if meta.get("exact") is False:
        raise NotExact(f"{path} was saved from a run that was not exact (teacher-forced accuracy "
                       f"{meta.get('accuracy', math.nan):.3f}): it holds no exact text to decode")
    decoded = decode(path, model=model, device=device)
    if not decoded.exact:
        raise CrammingError(f"{path}: the decoded text does not match the stored hashes (decoded on other hardware "
                            "or another dtype than it was crammed on?)")
    return decoded.text
