"""The Python API: everything the CLI does, as library calls.

    from cramming import compress, decompress
    [result] = compress(["The quick brown fox jumps over the lazy dog."], n_vectors=1)
    result.save("fox.safetensors")
    assert decompress("fox.safetensors") == result.text
"""

from __future__ import annotations

import logging
import math
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Sequence

import torch

from cramming.core import forms, storage
from cramming.core.basis import Basis
from cramming.core.decode import Expected, Reading, sha256_ids, sha256_text, verify
from cramming.core.errors import CrammingError, NotExact
from cramming.core.inputs import check_options
from cramming.core.loop import CramResult, StepInfo, cram, starting_vectors
from cramming.core.metrics import Measurement, gains
from cramming.core.precision import compute
from cramming.core.progress import PlainProgress
from cramming.core.recipes import Recipe, get_recipe
from cramming.core.threads import use_threads
from cramming.core.version import __version__
from cramming.files.vector_file import check_compatible, load_vectors, save_vectors
from cramming.model.aliases import DEFAULT_MODEL, measured_horizon
from cramming.model.basis import model_basis
from cramming.model.copy_vector import copy_hash, shared_copy
from cramming.model.encoder import model_encoder
from cramming.model.loading import LoadedModel, load_model, resolve_device
from cramming.model.prior import model_prior

log = logging.getLogger("cramming")  # what a run is about to do, and warnings; the CLI prints it on stderr


def as_model(model: str | LoadedModel, *, device: str = "auto") -> LoadedModel:
    return model if isinstance(model, LoadedModel) else load_model(model, resolve_device(device))


def file_model(meta: dict, model: str | LoadedModel | None, device: str, path: str | Path) -> LoadedModel:
    """The model a vector file is read with: the one given, else the one its metadata names."""
    if model is not None:
        return as_model(model, device=device)
    try:
        return as_model(meta["model"], device=device)
    except CrammingError as err:
        raise CrammingError(f"{path} names model {meta['model']!r}, which does not load here ({err}); give the "
                            "model (--model, or model= in Python)") from None


@contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """torch's CPU threads set to `threads` for the block, then as they were (None: left as they are)."""
    if threads is None:
        yield
        return
    before = torch.get_num_threads()
    use_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def warn_past_horizon(lm: LoadedModel, n_tokens: int, n_vectors: int) -> None:
    """A warning when a text is longer than the longest text, of any source, that n_vectors vectors of this model
    held exactly in our measurements (README, capacity): cramming it will most likely end not exact."""
    horizon = measured_horizon(lm.name)
    if horizon is not None and n_tokens > horizon * n_vectors:
        log.warning(f"{n_tokens} tokens into {n_vectors} vector(s): the longest text one vector of {lm.name} held "
                    f"exactly in our measurements is {horizon} tokens, so this will most likely not come back "
                    "exact; use more --vectors (capacity grows about linearly) or keep fewer --tokens")


def tokenize(lm: LoadedModel, text: str, *, n_vectors: int = 1, max_tokens: int | None = None,
             prefix: bool = False) -> tuple[str, list[int]]:
    """-> (the text that will be crammed, its token ids). With max_tokens, both are cut to the first tokens.
    prefix: a prefix token goes before the vectors (the recipe's), and takes a position too.

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
    limit, before = lm.max_positions, n_vectors + prefix
    if limit is not None and len(ids) + before > limit:
        raise CrammingError(f"the text has {len(ids)} tokens; {lm.name} reads at most {limit} positions, "
                            f"so with {n_vectors} vector(s){' and the prefix token' if prefix else ''} it can take "
                            f"at most {limit - before} tokens (keep fewer of its tokens)")
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
    # What else decided the outcome beside the recipe as run: the device kind, the batch size and the decoding
    # precision of the verification.
    conditions: dict = field(default_factory=dict)
    # What the model adds to the stored vectors: its basis (recipe.rank), its shared copied vector (shared_copy).
    reading: Reading = field(default_factory=Reading)
    path: Path | None = None

    @property
    def storage(self) -> str:
        """The form its file stores the vectors in (storage.py): the recipe's."""
        return self.recipe.storage

    @property
    def first_mismatch(self) -> int | None:
        """Where the greedy decode of the vectors first leaves the text's tokens (None when it never does)."""
        return next((k for k, (a, b) in enumerate(zip(self.decoded_ids, self.token_ids)) if a != b),
                    None if len(self.decoded_ids) == len(self.token_ids) else len(self.decoded_ids))

    @property
    def status(self) -> str:
        """exact, diverged (the loss turned non-finite) or not_exact (the budget or the patience ran out)."""
        return "exact" if self.exact else "diverged" if self.diverged else "not_exact"

    @property
    def shape(self) -> tuple[int, int]:
        """[n, d]: the text's own vectors as the model reads them (a basis' coefficients expanded)."""
        n, d = self.reading.vectors(self.vectors).shape
        return n, d

    def metadata(self) -> dict:
        basis, copy = self.reading.basis, self.reading.copy
        return {
            "model": self.model, "model_fingerprint": self.model_fingerprint,
            "tokenizer_fingerprint": self.tokenizer_fingerprint,
            "n_tokens": len(self.token_ids), "n_vectors": self.shape[0], "d_model": self.shape[1],
            "tokens_sha256": sha256_ids(self.token_ids), "text_sha256": sha256_text(self.text),
            "recipe": self.recipe.to_dict(), "seed": self.seed, "steps": self.steps, "steps_run": self.steps_run,
            "exact": self.exact, "diverged": self.diverged, "accuracy": self.accuracy,
            "first_mismatch": self.first_mismatch, "cramming_version": __version__, "prefix_token_id": self.prefix_id,
            "path_margin": self.path_margin, "run_conditions": self.conditions, "restarts": self.restarts,
            **({"shared_copy": copy_hash(copy)} if copy is not None else {}),
            **({"basis": basis.digest, "rank": basis.rank} if basis is not None else {}),
        }

    def save(self, path: str | Path) -> Path:
        self.path = save_vectors(path, self.vectors, self.metadata(), self.storage)
        return self.path

    def summary(self) -> dict:
        return {"tokens": len(self.token_ids), "vectors": self.shape[0], "steps": self.steps,
                "steps_run": self.steps_run, "seconds": round(self.seconds, 3), "exact": self.exact,
                "status": self.status, "accuracy": self.accuracy, "loss": self.loss, "path_margin": self.path_margin,
                "storage": self.storage, "recipe": self.recipe.name, "path": str(self.path) if self.path else None}


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
    min_margin: float | None = None,
    storage_form: str | None = None,
    threads: int | None = None,
    progress: bool = False,
) -> list[Compressed]:
    """Cram each text into its own n_vectors vectors, as one batch, trained through and verified from the form
    they will be stored in (storage_form: fp32, fp16, bf16, intK; storage.py). min_margin: keep cramming until
    every greedy-path logit margin is at least this. Both are the recipe's fields (required_margin, storage):
    given here, they change the recipe as run, which rows and files record. threads: torch's CPU threads for this call
    (None: as set; on a busy machine 1 can be many times faster than the default). progress: plain progress
    lines on stderr (on_step is the callback for your own)."""
    recipe = get_recipe(recipe) if isinstance(recipe, str) else recipe
    check_options(texts, n_vectors=n_vectors, max_tokens=max_tokens, decoder=recipe.decoder,
                  shared_copy=recipe.shared_copy)
    if progress:
        shown, theirs = PlainProgress(), on_step
        on_step = shown if theirs is None else lambda s: (shown(s), theirs(s))  # noqa: E731
    with torch_threads(threads):
        return _compress(texts, model, n_vectors=n_vectors, recipe=recipe, max_steps=max_steps,
                         max_tokens=max_tokens, seed=seed, device=device, on_step=on_step, warm_start=warm_start,
                         min_margin=min_margin, storage_form=storage_form)


def _compress(texts: Sequence[str], model: str | LoadedModel, *, n_vectors: int, recipe: Recipe,
              max_steps: int | None, max_tokens: int | None, seed: int, device: str,
              on_step: Callable[[StepInfo], None] | None, warm_start: list[torch.Tensor | None] | None,
              min_margin: float | None, storage_form: str | None) -> list[Compressed]:
    given = {"max_steps": max_steps, "required_margin": min_margin, "storage": storage_form}
    # the vector file then records the budget, margin and storage form the vectors were crammed with
    recipe = recipe.override({k: v for k, v in given.items() if v is not None}, name=recipe.name)
    lm = as_model(model, device=device)
    recipe = recipe.resolved(lm.device.type)
    prefix = prefix_token(lm.tokenizer, recipe)
    prepared = [tokenize(lm, t, n_vectors=n_vectors, max_tokens=max_tokens, prefix=prefix is not None)
                for t in texts]
    longest = max(len(ids) for _, ids in prepared)
    warn_past_horizon(lm, longest, n_vectors)
    log.info(f"cramming {len(texts)} text(s) of up to {longest} tokens into {n_vectors} vector(s) each, "
             f"{recipe.name} at most {recipe.max_steps} steps, {torch.get_num_threads()} thread(s)")
    reading = Reading(model_basis(lm, n_vectors, prefix, recipe.rank) if recipe.rank else None,
                      shared_copy(lm, prefix) if recipe.shared_copy else None)
    start = starts(lm, recipe, [ids for _, ids in prepared], n_vectors, seed, warm_start, reading.basis)
    results = cram(lm.model, [ids for _, ids in prepared], start, recipe, prefix_id=prefix, on_step=on_step,
                   reading=reading)
    conditions = {"device": lm.device.type, "batch_size": len(texts), "decoding_precision": "fp32",
                  "compute": compute(lm.device, recipe.bf16)}
    # The round trip that counts is from what the file will hold: each text's vectors as stored, decoded alone (a
    # file that is not exact then also says where its decode first goes wrong), ids and bytes compared.
    out = []
    for (text, ids), result in zip(prepared, results):
        check = verify(lm.model, reading(storage.stored(result.vectors, recipe.storage)),
                       Expected.of(ids, text), prefix, lm.tokenizer, decoder=recipe.decoder)
        result.decoded_ids, result.exact = check.decoded_ids, result.exact and check.exact
        out.append(Compressed(**vars(result), text=text, recipe=recipe, seed=seed, model=lm.name,
                              model_fingerprint=lm.fingerprint, tokenizer_fingerprint=lm.tokenizer_fingerprint,
                              prefix_id=prefix, conditions=conditions, reading=reading))
    return out


def starts(lm: LoadedModel, recipe: Recipe, token_ids: list[list[int]], n_vectors: int, seed: int = 0,
           warm_start: list[torch.Tensor | None] | None = None, basis: Basis | None = None) -> torch.Tensor:
    """[B, n, d] where the recipe starts cramming each text: a warm start where one is given, else the recipe's
    seeded init, plus the model's prior (recipe.prior), plus what the model's encoder predicts from the text
    (recipe.encoder). In a basis, [B, 1, K]: the coefficients of the nearest point to that start, and a warm start
    is the coefficients a file of the recipe stores (a shorter prefix's, say)."""
    prefix = prefix_token(lm.tokenizer, recipe)
    prior = model_prior(lm, n_vectors, prefix) if recipe.prior else None
    start = starting_vectors(recipe, n_vectors, lm.model.get_input_embeddings().weight, seed, len(token_ids), prior,
                             None if basis else warm_start)
    fresh = [i for i, w in enumerate(warm_start or [None] * len(token_ids)) if w is None]
    if recipe.encoder:  # each text's own start: the common one plus what the encoder predicts from the text
        offsets = model_encoder(lm, n_vectors).offsets(lm, token_ids, prefix)
        start[fresh] += offsets[fresh]
    if basis is None:
        return start
    start = basis.project(start)
    for i, w in enumerate(warm_start or []):
        if w is None:
            continue
        if w.shape != start[i].shape:
            raise CrammingError(f"warm starts in a basis of rank {basis.rank} must have shape {list(start[i].shape)}")
        start[i] = w.float().cpu()
    return start


def info(path: str | Path) -> dict:
    """The metadata of a vector file, its vectors' shape [n, d], and payload_bytes: what its stored tensors take (the
    vectors, or their coefficients in the model's basis, in their storage form; the basis and a shared copy, which
    the model holds, are not in the file)."""
    stored, meta = load_vectors(path)
    return {**meta, "shape": [meta["n_vectors"], meta["d_model"]] if "rank" in meta else list(stored.shape),
            "payload_bytes": forms.payload_bytes(*stored.shape, meta["storage"])}


@dataclass
class Decoded:
    """What a vector file decodes to, and whether that is its text."""

    text: str
    exact: bool  # the token ids and the text match the hashes stored in the file
    n_tokens: int
    first_mismatch: int | None  # recorded when the file was saved: the first token the decode gets wrong
    ids: list[int]  # the decoded token ids


def file_decoder(meta: dict) -> str:
    """How a vector file's text comes back: its recipe's decoder (greedy for files from before there were two)."""
    return meta.get("recipe", {}).get("decoder", "greedy")


def file_reading(meta: dict, lm: LoadedModel) -> Reading:
    """What the model adds to a vector file's stored tensor when reading it: its basis where the file stores
    coefficients, its shared copied vector where the file's text comes back one-step with it; each the model's very
    one whose hash the file records."""
    prefix = meta.get("prefix_token_id")
    return Reading(model_basis(lm, meta["n_vectors"], prefix, meta["rank"], meta["basis"]) if "basis" in meta else None,
                   shared_copy(lm, prefix, meta["shared_copy"]) if "shared_copy" in meta else None)


def _read(path: str | Path, model: str | LoadedModel | None, device: str
          ) -> tuple[torch.Tensor, dict, LoadedModel, Reading, Decoded]:
    """A vector file's stored tensor, metadata, model and reading, and its decode checked against its hashes."""
    stored, meta = load_vectors(path)
    lm = file_model(meta, model, device, path)
    check_compatible(meta, lm.fingerprint, lm.tokenizer_fingerprint, lm.name, path)
    reading = file_reading(meta, lm)
    bf16 = meta.get("run_conditions", {}).get("decoding_precision") == "bf16"  # the precision it was verified in
    check = verify(lm.model, reading(stored), Expected.of_file(meta),
                   meta.get("prefix_token_id"), lm.tokenizer, bf16=bf16, decoder=file_decoder(meta))
    return stored, meta, lm, reading, Decoded(check.decoded_text, check.exact, len(check.decoded_ids),
                                              meta.get("first_mismatch"), check.decoded_ids)


def decode(path: str | Path, *, model: str | LoadedModel | None = None, device: str = "auto") -> Decoded:
    """Greedy-decode a vector file, exact or not, and check the result against the hashes stored in it."""
    return _read(path, model, device)[4]


def measure_file(path: str | Path, *, model: str | LoadedModel | None = None, device: str = "auto"
                 ) -> Measurement:
    """The paper's metrics of a vector file without cramming again: its text read back from the vectors, checked
    against the file's hashes, and scored with and without them (`seconds` is not recorded in a file: None)."""
    stored, meta, lm, reading, decoded = _read(path, model, device)
    if not decoded.exact:
        raise CrammingError(f"{path} does not decode to its text, so its text cannot be read from it; measure it "
                            "from the text instead")
    return Measurement(tokens=len(decoded.ids), vectors=meta["n_vectors"], exact=True, diverged=False,
                       steps=meta["steps"], seconds=None,
                       **gains(decoded.ids, stored, meta.get("prefix_token_id"), lm, file_decoder(meta), reading))


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
